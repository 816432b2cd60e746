import KeelEventSourcing

/// A test store wrapped around another: every requirement forwards to ``base`` unless the
/// wrapper implements it (to record calls, fail on demand, signal, or hide events).
///
/// For the package's own tests and test tools; a wrapper states only what it changes.
package protocol ForwardingEventStore: EventStore {
    /// The store every call that the wrapper does not implement goes to.
    var base: any EventStore { get }
}

extension ForwardingEventStore {
    @discardableResult
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

    package func readAll(from position: UInt64, limit: Int) async throws(EventStoreError) -> [RecordedEvent] {
        try await self.base.readAll(from: position, limit: limit)
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
