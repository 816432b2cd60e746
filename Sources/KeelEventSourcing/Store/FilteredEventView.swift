/// A read view of a store that shows only the events `isIncluded` accepts in the global log; the
/// host uses it to feed a durable subscription the events of one type from every namespace, and
/// nothing else (in particular not the key-value streams its own checkpoints are written to).
///
/// Appends, stream reads and metadata go to the base store unchanged.
package struct FilteredEventView: EventStore {
    let base: any EventStore
    let isIncluded: @Sendable (RecordedEvent) -> Bool

    package init(base: any EventStore, isIncluded: @escaping @Sendable (RecordedEvent) -> Bool) {
        self.base = base
        self.isIncluded = isIncluded
    }

    package func append(
        _ events: [EventData],
        to stream: StreamID,
        expecting expected: ExpectedVersion
    ) async throws(EventStoreError) -> AppendResult {
        try await self.base.append(events, to: stream, expecting: expected)
    }

    package func readStream(
        _ stream: StreamID,
        from version: UInt64,
        direction: ReadDirection,
        limit: Int
    ) async throws(EventStoreError) -> [RecordedEvent] {
        try await self.base.readStream(stream, from: version, direction: direction, limit: limit)
    }

    /// The accepted events from `position`, skipping the others (reads the base log page by page).
    package func readAll(from position: UInt64, limit: Int) async throws(EventStoreError) -> [RecordedEvent] {
        guard limit >= 1 else {
            throw EventStoreError(code: .invalidArgument, message: "limit \(limit) is below 1")
        }
        return try await self.base.collect(from: position, limit: limit) { self.isIncluded($0) ? $0 : nil }
    }

    package func streamVersion(_ stream: StreamID) async throws(EventStoreError) -> UInt64? {
        try await self.base.streamVersion(stream)
    }

    package func headPosition() async throws(EventStoreError) -> UInt64 {
        try await self.base.headPosition()
    }

    package func deleteStream(_ stream: StreamID, expecting expected: ExpectedVersion) async throws(EventStoreError) {
        try await self.base.deleteStream(stream, expecting: expected)
    }

    package func setStreamMetadata(_ metadata: StreamMetadata, for stream: StreamID) async throws(EventStoreError) {
        try await self.base.setStreamMetadata(metadata, for: stream)
    }

    package func streamMetadata(for stream: StreamID) async throws(EventStoreError) -> StreamMetadata {
        try await self.base.streamMetadata(for: stream)
    }

    package func waitForHead(beyond head: UInt64) async {
        await self.base.waitForHead(beyond: head)
    }
}

extension EventStore {
    /// Reads the global log from `position` page by page and keeps what `transform` returns,
    /// until `limit` events are kept or the log ends: the read of a view that shows only part of
    /// the log (``NamespacedEventStore``, ``FilteredEventView``).
    package func collect(
        from position: UInt64,
        limit: Int,
        _ transform: (RecordedEvent) -> RecordedEvent?
    ) async throws(EventStoreError) -> [RecordedEvent] {
        var result: [RecordedEvent] = []
        var cursor = position
        let page = Swift.max(256, Swift.min(limit, 4_096))
        while result.count < limit {
            let events = try await self.readAll(from: cursor, limit: page)
            guard let last = events.last else { break }
            for event in events {
                guard let kept = transform(event) else { continue }
                result.append(kept)
                if result.count == limit { break }
            }
            cursor = last.position + 1
        }
        return result
    }
}
