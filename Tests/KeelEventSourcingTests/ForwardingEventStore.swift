import KeelEventSourcing

/// A test store wrapped around another: every requirement forwards to ``base`` unless the
/// wrapper implements it (to record calls, fail on demand, or hide events).
protocol ForwardingEventStore: EventStore {
    var base: any EventStore { get }
}

extension ForwardingEventStore {
    @discardableResult
    func append(
        _ events: [EventData],
        to stream: StreamID,
        expecting expected: ExpectedVersion
    ) async throws(EventStoreError) -> AppendResult {
        try await self.base.append(events, to: stream, expecting: expected)
    }

    func readStream(
        _ stream: StreamID,
        from version: UInt64,
        direction: ReadDirection,
        limit: Int
    ) async throws(EventStoreError) -> [RecordedEvent] {
        try await self.base.readStream(stream, from: version, direction: direction, limit: limit)
    }

    func readAll(from position: UInt64, limit: Int) async throws(EventStoreError) -> [RecordedEvent] {
        try await self.base.readAll(from: position, limit: limit)
    }

    func streamVersion(_ stream: StreamID) async throws(EventStoreError) -> UInt64? {
        try await self.base.streamVersion(stream)
    }

    func headPosition() async throws(EventStoreError) -> UInt64 {
        try await self.base.headPosition()
    }

    func deleteStream(_ stream: StreamID, expecting expected: ExpectedVersion) async throws(EventStoreError) {
        try await self.base.deleteStream(stream, expecting: expected)
    }

    func setStreamMetadata(_ metadata: StreamMetadata, for stream: StreamID) async throws(EventStoreError) {
        try await self.base.setStreamMetadata(metadata, for: stream)
    }

    func streamMetadata(for stream: StreamID) async throws(EventStoreError) -> StreamMetadata {
        try await self.base.streamMetadata(for: stream)
    }

    func waitForHead(beyond head: UInt64) async {
        await self.base.waitForHead(beyond: head)
    }
}
