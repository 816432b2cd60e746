/// An append-only store of events, in streams, with one global order.
///
/// Every event belongs to one stream (``StreamID``) and has a version in it (0, 1, 2, …) and a
/// position in the store's global log (0, 1, 2, … across all streams, in append order). An
/// append writes one or more events to one stream atomically, if the stream is at the version
/// the caller expects (``ExpectedVersion``); otherwise it fails with
/// ``EventStoreError/Code/wrongExpectedVersion`` and the actual version, and writes nothing.
///
/// ``InMemoryEventStore`` keeps events in memory, for tests and samples; ``FileEventStore`` keeps
/// them durably in a directory. To write your own, implement the requirements below (with
/// ``EventStoreRules`` for the argument checks and read ranges Keel's stores share) and run the
/// conformance checks in KeelTesting (`EventStoreConformance`) against it; the subscriptions
/// (``subscribe(from:pageSize:)`` and ``subscribe(to:from:pageSize:)``) are built on the
/// requirements and need no code of their own.
///
/// Every method may be called from any task, concurrently.
public protocol EventStore: Sendable {
    /// Appends `events` to the end of `stream`, atomically, if the stream satisfies `expected`.
    ///
    /// Either every event is written (with consecutive versions and consecutive global
    /// positions) or none is. Appending to a deleted stream writes it again: its versions go on
    /// from where they were, and the events from before the deletion stay hidden. An empty
    /// `events` checks `expected` and writes nothing.
    /// - Parameters:
    ///   - events: The events, in order.
    ///   - stream: The stream.
    ///   - expected: What the stream's last version must be.
    /// - Returns: The stream's version and the positions written.
    /// - Throws: ``EventStoreError`` with ``EventStoreError/Code/wrongExpectedVersion`` on a
    ///   conflict, ``EventStoreError/Code/invalidArgument`` for an empty stream name or event
    ///   type or a schema version below 1, or a store-specific code.
    @discardableResult
    func append(
        _ events: [EventData],
        to stream: StreamID,
        expecting expected: ExpectedVersion
    ) async throws(EventStoreError) -> AppendResult

    /// Reads up to `limit` events of `stream`, starting at `version`, in `direction`.
    ///
    /// Reading forwards returns versions `version, version + 1, …`; backwards,
    /// `version, version - 1, …`, where a `version` beyond the last one (such as `UInt64.max`)
    /// starts at the last event. Events hidden by the stream's ``StreamMetadata`` are skipped. A
    /// stream that was never written reads as empty.
    /// - Parameters:
    ///   - stream: The stream.
    ///   - version: The first version to return.
    ///   - direction: Forwards or backwards.
    ///   - limit: The most events to return, at least 1.
    /// - Returns: The events, in reading order.
    /// - Throws: ``EventStoreError`` with ``EventStoreError/Code/streamDeleted`` when the stream
    ///   was deleted, ``EventStoreError/Code/invalidArgument`` for a limit below 1.
    func readStream(
        _ stream: StreamID,
        from version: UInt64,
        direction: ReadDirection,
        limit: Int
    ) async throws(EventStoreError) -> [RecordedEvent]

    /// Reads up to `limit` events of every stream in global order, starting at `position`.
    /// - Parameters:
    ///   - position: The first position to return.
    ///   - limit: The most events to return, at least 1.
    /// - Returns: The events with positions `position, position + 1, …`.
    /// - Throws: ``EventStoreError`` with ``EventStoreError/Code/invalidArgument`` for a limit
    ///   below 1.
    func readAll(from position: UInt64, limit: Int) async throws(EventStoreError) -> [RecordedEvent]

    /// The last version of `stream`: `nil` when it holds no events or was deleted.
    /// - Parameter stream: The stream.
    /// - Returns: The version.
    func streamVersion(_ stream: StreamID) async throws(EventStoreError) -> UInt64?

    /// The position the next appended event will get: the number of events in the store.
    func headPosition() async throws(EventStoreError) -> UInt64

    /// Soft-deletes `stream`, if it satisfies `expected`: reading it then fails with
    /// ``EventStoreError/Code/streamDeleted`` until it is appended to again. Its events stay in
    /// the global log.
    /// - Parameters:
    ///   - stream: The stream.
    ///   - expected: What the stream's last version must be.
    /// - Throws: ``EventStoreError`` with ``EventStoreError/Code/wrongExpectedVersion`` on a
    ///   conflict.
    func deleteStream(_ stream: StreamID, expecting expected: ExpectedVersion) async throws(EventStoreError)

    /// Replaces the metadata of `stream` (its read bounds).
    /// - Parameters:
    ///   - metadata: The new metadata.
    ///   - stream: The stream.
    /// - Throws: ``EventStoreError`` with ``EventStoreError/Code/invalidArgument`` for a
    ///   `maxCount` below 1.
    func setStreamMetadata(_ metadata: StreamMetadata, for stream: StreamID) async throws(EventStoreError)

    /// The metadata of `stream`; empty for a stream that has none.
    /// - Parameter stream: The stream.
    /// - Returns: The metadata.
    func streamMetadata(for stream: StreamID) async throws(EventStoreError) -> StreamMetadata

    /// Suspends until ``headPosition()`` is greater than `head` — that is, until the store holds
    /// an event at position `head` — or until the calling task is cancelled or the store is
    /// closed; returns at once if it already is. Subscriptions use it to wait for new events
    /// without polling.
    /// - Parameter head: The head position to wait beyond.
    func waitForHead(beyond head: UInt64) async
}

extension EventStore {
    /// Appends one event to `stream`, if the stream satisfies `expected`.
    /// - Parameters:
    ///   - event: The event.
    ///   - stream: The stream.
    ///   - expected: What the stream's last version must be; default ``ExpectedVersion/any``.
    /// - Returns: The stream's version and the position written.
    /// - Throws: As ``append(_:to:expecting:)``.
    @discardableResult
    public func append(
        _ event: EventData,
        to stream: StreamID,
        expecting expected: ExpectedVersion = .any
    ) async throws(EventStoreError) -> AppendResult {
        try await self.append([event], to: stream, expecting: expected)
    }

    /// Reads every visible event of `stream`, forwards from its first version.
    /// - Parameter stream: The stream.
    /// - Returns: The events, oldest first.
    /// - Throws: As ``readStream(_:from:direction:limit:)``.
    public func readStream(_ stream: StreamID) async throws(EventStoreError) -> [RecordedEvent] {
        try await self.readStream(stream, from: 0, direction: .forwards, limit: .max)
    }

    /// Events of every stream in global order, from `position`: first those already stored
    /// (catch-up), then each new one as it is appended (live), with no gap and no duplicate at the
    /// switch.
    ///
    /// The sequence reads the store in pages of `pageSize` events and waits with
    /// ``waitForHead(beyond:)`` when it has read everything; it never holds more than one page.
    /// It ends when the iterating task is cancelled, and throws the store's errors.
    /// - Parameters:
    ///   - position: The first position to deliver; 0 (the default) replays everything.
    ///   - pageSize: Events per read, at least 1.
    /// - Returns: The subscription.
    public func subscribe(from position: UInt64 = 0, pageSize: Int = 256) -> EventStoreSubscription {
        EventStoreSubscription(store: self, target: .all(from: position), pageSize: pageSize)
    }

    /// Events of one stream, from `version`: first those already stored, then each new one as it
    /// is appended, with no gap and no duplicate at the switch.
    ///
    /// The sequence ends when the iterating task is cancelled; it throws
    /// ``EventStoreError/Code/streamDeleted`` if the stream is deleted.
    /// - Parameters:
    ///   - stream: The stream.
    ///   - version: The first version to deliver; 0 (the default) replays the stream.
    ///   - pageSize: Events per read, at least 1.
    /// - Returns: The subscription.
    public func subscribe(
        to stream: StreamID,
        from version: UInt64 = 0,
        pageSize: Int = 256
    ) -> EventStoreSubscription {
        EventStoreSubscription(store: self, target: .stream(stream, from: version), pageSize: pageSize)
    }
}

/// A catch-up subscription to an ``EventStore``: the stored events from a starting point, then the
/// new ones as they are appended.
///
/// Made by ``EventStore/subscribe(from:pageSize:)`` or ``EventStore/subscribe(to:from:pageSize:)``.
/// Each iterator reads on its own and keeps its own place, so one subscription value can be
/// iterated by several tasks, each getting every event. Events arrive in position order (version
/// order for a stream). Iteration ends when the task is cancelled.
public struct EventStoreSubscription: AsyncSequence, Sendable {
    /// The events.
    public typealias Element = RecordedEvent
    /// The store's errors.
    public typealias Failure = EventStoreError

    enum Target: Sendable {
        case all(from: UInt64)
        case stream(StreamID, from: UInt64)
    }

    let store: any EventStore
    let target: Target
    let pageSize: Int

    /// Makes an iterator that starts at the subscription's starting point.
    /// - Returns: The iterator.
    public func makeAsyncIterator() -> Iterator {
        Iterator(store: self.store, target: self.target, pageSize: Swift.max(1, self.pageSize))
    }

    /// Reads pages from the store and waits for new events when it has read them all.
    public struct Iterator: AsyncIteratorProtocol {
        let store: any EventStore
        let target: Target
        let pageSize: Int
        /// The next global position (all) or version (stream) to deliver.
        private var cursor: UInt64
        private var page: [RecordedEvent] = []
        private var index = 0

        init(store: any EventStore, target: Target, pageSize: Int) {
            self.store = store
            self.target = target
            self.pageSize = pageSize
            switch target {
            case .all(let position): self.cursor = position
            case .stream(_, let version): self.cursor = version
            }
        }

        /// The next event, waiting for one to be appended if need be; `nil` once the task is
        /// cancelled.
        /// - Parameter actor: The caller's isolation.
        /// - Returns: The event.
        /// - Throws: The store's errors.
        public mutating func next(
            isolation actor: isolated (any Actor)?
        ) async throws(EventStoreError) -> RecordedEvent? {
            while true {
                if self.index < self.page.count {
                    let event = self.page[self.index]
                    self.index += 1
                    switch self.target {
                    case .all: self.cursor = event.position + 1
                    case .stream: self.cursor = event.version + 1
                    }
                    return event
                }
                if Task.isCancelled { return nil }
                self.page = []
                self.index = 0
                switch self.target {
                case .all:
                    let head = try await self.store.headPosition()
                    let page = try await self.store.readAll(from: self.cursor, limit: self.pageSize)
                    if page.isEmpty {
                        // Nothing visible at `cursor` or after it up to `head`. In a store that
                        // shows every position, `cursor >= head` here; a store that hides some
                        // positions from this reader (a per-service view) moves the cursor past
                        // them, so the wait below cannot return at once forever.
                        self.cursor = Swift.max(self.cursor, head)
                        await self.store.waitForHead(beyond: self.cursor)
                        continue
                    }
                    self.page = page
                case .stream(let stream, _):
                    // Read the head first: an append after this point moves it, so the wait
                    // below cannot miss an event the read did not see.
                    let head = try await self.store.headPosition()
                    let page = try await self.store.readStream(
                        stream,
                        from: self.cursor,
                        direction: .forwards,
                        limit: self.pageSize
                    )
                    if page.isEmpty {
                        await self.store.waitForHead(beyond: head)
                        continue
                    }
                    self.page = page
                }
            }
        }

        /// The next event; see ``next(isolation:)``.
        /// - Returns: The event.
        /// - Throws: The store's errors.
        public mutating func next() async throws(EventStoreError) -> RecordedEvent? {
            try await self.next(isolation: #isolation)
        }
    }
}
