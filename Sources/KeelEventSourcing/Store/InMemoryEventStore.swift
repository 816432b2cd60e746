import KeelCore
import Synchronization

/// An ``EventStore`` that keeps everything in memory: for tests, samples and caches.
///
/// It has every behaviour of the durable store (expected versions, stream metadata, soft
/// deletion, catch-up subscriptions) and none of its durability: the events live as long as the
/// value. All state sits behind one short lock that is never held across a suspension; appends
/// and reads never suspend, and a subscription waiting for new events parks a continuation that
/// the next append resumes.
///
/// ```swift
/// let store = InMemoryEventStore()
/// try await store.append(registered, to: "user-42", expecting: .noStream)
/// for try await event in store.subscribe(from: 0) { … }
/// ```
public final class InMemoryEventStore: EventStore {
    private struct Stream {
        /// The global position of each version; index = version. Versions never restart, even
        /// after a deletion, so this covers every version the stream ever had.
        var positions: [UInt64] = []
        var isDeleted = false
        var metadata = StreamMetadata()

        var lastVersion: UInt64? {
            self.positions.isEmpty ? nil : UInt64(self.positions.count - 1)
        }

        /// The last version as an expectation sees it: a deleted stream has none.
        var currentVersion: UInt64? {
            self.isDeleted ? nil : self.lastVersion
        }
    }

    private struct State {
        var log: [RecordedEvent] = []
        var streams: [StreamID: Stream] = [:]
        var waiters: [UInt64: (head: UInt64, continuation: CheckedContinuation<Void, Never>)] = [:]
        var nextWaiterID: UInt64 = 0

        /// Takes the waiters that `log.count` now satisfies.
        mutating func takeSatisfiedWaiters() -> [CheckedContinuation<Void, Never>] {
            let head = UInt64(self.log.count)
            var ready: [CheckedContinuation<Void, Never>] = []
            for (id, waiter) in self.waiters where head > waiter.head {
                ready.append(waiter.continuation)
                self.waiters[id] = nil
            }
            return ready
        }
    }

    private let state = Lock(State())

    /// Makes an empty store.
    public init() {}

    /// Makes a store that already holds `events`, appended in order with ``ExpectedVersion/any``
    /// (a fixture for tests).
    /// - Parameter events: The streams and events to start with.
    public convenience init(events: [(StreamID, EventData)]) {
        self.init()
        self.state.withLock { state in
            for (stream, event) in events {
                Self.write([event], to: stream, in: &state)
            }
        }
    }

    // MARK: EventStore

    /// Appends `events` to `stream` atomically if it satisfies `expected`; see
    /// ``EventStore/append(_:to:expecting:)``.
    /// - Parameters:
    ///   - events: The events.
    ///   - stream: The stream.
    ///   - expected: What the stream's last version must be.
    /// - Returns: Where the events landed.
    /// - Throws: ``EventStoreError``.
    @discardableResult
    public func append(
        _ events: [EventData],
        to stream: StreamID,
        expecting expected: ExpectedVersion
    ) async throws(EventStoreError) -> AppendResult {
        try EventStoreRules.validate(events, stream: stream)
        let (result, ready) = try self.state.withLock {
            state throws(EventStoreError) -> (AppendResult, [CheckedContinuation<Void, Never>]) in
            let current = state.streams[stream]?.currentVersion
            guard expected.isSatisfied(by: current) else {
                throw EventStoreError.wrongExpectedVersion(stream, expected: expected, actual: current)
            }
            let result = Self.write(events, to: stream, in: &state)
            return (result, state.takeSatisfiedWaiters())
        }
        for continuation in ready { continuation.resume() }
        return result
    }

    /// Reads `stream`; see ``EventStore/readStream(_:from:direction:limit:)``.
    /// - Parameters:
    ///   - stream: The stream.
    ///   - version: The first version to return.
    ///   - direction: Forwards or backwards.
    ///   - limit: The most events to return.
    /// - Returns: The events in reading order.
    /// - Throws: ``EventStoreError``.
    public func readStream(
        _ stream: StreamID,
        from version: UInt64,
        direction: ReadDirection,
        limit: Int
    ) async throws(EventStoreError) -> [RecordedEvent] {
        guard limit >= 1 else {
            throw EventStoreError(code: .invalidArgument, stream: stream, message: "limit \(limit) is below 1")
        }
        return try self.state.withLock { state throws(EventStoreError) -> [RecordedEvent] in
            guard let entry = state.streams[stream] else { return [] }
            guard !entry.isDeleted else {
                throw EventStoreError(code: .streamDeleted, stream: stream, message: "the stream was deleted")
            }
            guard let last = entry.lastVersion else { return [] }
            let range = EventStoreRules.visibleVersions(
                first: entry.metadata.firstVisibleVersion(last: last),
                last: last,
                from: version,
                direction: direction,
                limit: limit
            )
            return range.map { state.log[Int(entry.positions[Int($0)])] }
        }
    }

    /// Reads the global log; see ``EventStore/readAll(from:limit:)``.
    /// - Parameters:
    ///   - position: The first position to return.
    ///   - limit: The most events to return.
    /// - Returns: The events in position order.
    /// - Throws: ``EventStoreError``.
    public func readAll(from position: UInt64, limit: Int) async throws(EventStoreError) -> [RecordedEvent] {
        guard limit >= 1 else {
            throw EventStoreError(code: .invalidArgument, message: "limit \(limit) is below 1")
        }
        return self.state.withLock { state in
            let count = UInt64(state.log.count)
            guard position < count else { return [] }
            let end = position + min(UInt64(limit), count - position)
            return Array(state.log[Int(position)..<Int(end)])
        }
    }

    /// The last version of `stream`; see ``EventStore/streamVersion(_:)``.
    /// - Parameter stream: The stream.
    /// - Returns: The version, or `nil`.
    public func streamVersion(_ stream: StreamID) async throws(EventStoreError) -> UInt64? {
        self.state.withLock { $0.streams[stream]?.currentVersion }
    }

    /// The number of events in the store.
    /// - Returns: The next position.
    public func headPosition() async throws(EventStoreError) -> UInt64 {
        self.state.withLock { UInt64($0.log.count) }
    }

    /// Soft-deletes `stream`; see ``EventStore/deleteStream(_:expecting:)``.
    /// - Parameters:
    ///   - stream: The stream.
    ///   - expected: What the stream's last version must be.
    /// - Throws: ``EventStoreError``.
    public func deleteStream(_ stream: StreamID, expecting expected: ExpectedVersion) async throws(EventStoreError) {
        try self.state.withLock { state throws(EventStoreError) in
            let current = state.streams[stream]?.currentVersion
            guard expected.isSatisfied(by: current) else {
                throw EventStoreError.wrongExpectedVersion(stream, expected: expected, actual: current)
            }
            guard var entry = state.streams[stream], let last = entry.lastVersion else { return }
            entry.isDeleted = true
            entry.metadata.truncateBefore = last + 1
            state.streams[stream] = entry
        }
    }

    /// Replaces the metadata of `stream`; see ``EventStore/setStreamMetadata(_:for:)``.
    /// - Parameters:
    ///   - metadata: The new metadata.
    ///   - stream: The stream.
    /// - Throws: ``EventStoreError``.
    public func setStreamMetadata(_ metadata: StreamMetadata, for stream: StreamID) async throws(EventStoreError) {
        try EventStoreRules.validate(metadata, stream: stream)
        self.state.withLock { state in
            state.streams[stream, default: Stream()].metadata = metadata
        }
    }

    /// The metadata of `stream`; see ``EventStore/streamMetadata(for:)``.
    /// - Parameter stream: The stream.
    /// - Returns: The metadata.
    public func streamMetadata(for stream: StreamID) async throws(EventStoreError) -> StreamMetadata {
        self.state.withLock { $0.streams[stream]?.metadata ?? StreamMetadata() }
    }

    /// Waits until the store holds more than `head` events; see
    /// ``EventStore/waitForHead(beyond:)``.
    /// - Parameter head: The head position to wait beyond.
    public func waitForHead(beyond head: UInt64) async {
        let id = self.state.withLock { state in
            defer { state.nextWaiterID += 1 }
            return state.nextWaiterID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = self.state.withLock { state -> Bool in
                    // Checked under the lock: a cancellation either happened before (and is
                    // seen here) or its handler runs after the registration and removes it.
                    if UInt64(state.log.count) > head || Task.isCancelled { return true }
                    state.waiters[id] = (head, continuation)
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = self.state.withLock { $0.waiters.removeValue(forKey: id) }
            waiter?.continuation.resume()
        }
    }

    // MARK: Internals

    @discardableResult
    private static func write(_ events: [EventData], to stream: StreamID, in state: inout State) -> AppendResult {
        var entry = state.streams[stream] ?? Stream()
        let firstPosition = UInt64(state.log.count)
        for event in events {
            let version = UInt64(entry.positions.count)
            let position = UInt64(state.log.count)
            state.log.append(RecordedEvent(stream: stream, version: version, position: position, data: event))
            entry.positions.append(position)
        }
        if !events.isEmpty { entry.isDeleted = false }
        state.streams[stream] = entry
        return AppendResult(
            streamVersion: entry.currentVersion,
            positions: firstPosition..<UInt64(state.log.count)
        )
    }
}
