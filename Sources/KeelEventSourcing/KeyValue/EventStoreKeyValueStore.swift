import KeelCore

/// A ``KeyValueStore`` kept durably in an ``EventStore``: one stream per namespace, one event per
/// committed batch.
///
/// Service state belongs in a ``StateStore`` (``FileStateStore``) beside the event log, which
/// reclaims space and does not wake projections; this store remains for stores written by
/// earlier versions, and ``migrate(namespace:from:to:)`` moves a namespace out of it.
///
/// The namespace's entries live in memory; the stream `keel.kv-<namespace>` is their log. Each
/// ``commit(_:)`` appends its batch as one event (type `keel.kv.batch`), so the batch is exactly
/// as atomic and as durable as an append to the underlying store: with a ``FileEventStore`` it
/// is on disk when `commit` returns, and a crash either keeps it whole or loses it whole.
/// ``open(store:namespace:configuration:random:wallClock:)`` reads the stream back into memory.
///
/// **Compaction.** Every ``Configuration/compactionThreshold`` batches the store appends a
/// snapshot of the whole map (type `keel.kv.snapshot`) and sets the stream's
/// ``StreamMetadata/truncateBefore`` to it, so that opening reads the latest snapshot and the
/// batches after it, not the whole history. (The older events stay in the store's global log;
/// the event store does not reclaim their space.) A snapshot is one event, so the whole map must
/// fit in one record of the underlying store (16 MiB by default for ``FileEventStore``).
///
/// **Concurrency.** Reads are answered from memory. Commits from many tasks are queued and
/// written in rounds: the commits that arrive while one append is in flight go out together in
/// the next append (one event each, still one append), so concurrent writers share the store's
/// round trips. Each append expects the stream's version this instance last wrote: a second
/// writer of the same namespace (in this process or another) makes the loser fail with
/// ``KeyValueStoreError/Code/conflict``. Keep one instance per namespace.
///
/// ```swift
/// let store = try FileEventStore(directory: path)
/// let settings = try await EventStoreKeyValueStore.open(store: store, namespace: "settings")
/// try await settings.put(Array("dark".utf8), forKey: "theme")
/// ```
public actor EventStoreKeyValueStore: KeyValueStore {
    /// How a store compacts.
    public struct Configuration: Sendable {
        /// Append a snapshot after this many batches since the last one; `nil` never compacts on
        /// its own (``compact()`` still does). At least 1; default 1,000.
        public var compactionThreshold: Int? = 1_000

        /// The default configuration.
        public init() {}
    }

    /// The namespace.
    public nonisolated let namespace: String
    /// The stream that holds the namespace: `keel.kv-<namespace>`.
    public nonisolated let stream: StreamID
    /// The configuration.
    public nonisolated let configuration: Configuration

    private let store: any EventStore
    private let random: RandomSource
    private let wallClock: WallClock
    private var entries: [String: [UInt8]]
    /// The stream's last version, as this instance last read or wrote it.
    private var version: UInt64?
    private var batchesSinceSnapshot: Int

    /// Commits waiting for the next round, in arrival order.
    private var queue: [(id: UInt64, batch: KeyValueBatch)] = []
    /// Callers whose batch another caller is writing.
    private var parked: [UInt64: CheckedContinuation<Result<Void, KeyValueStoreError>, Never>] = [:]
    private var nextID: UInt64 = 0
    private var isWriting = false
    /// ``compact()`` calls waiting for the writer to finish.
    private var idleWaiters: [CheckedContinuation<Void, Never>] = []

    private init(
        store: any EventStore,
        namespace: String,
        configuration: Configuration,
        random: RandomSource,
        wallClock: WallClock,
        entries: [String: [UInt8]],
        version: UInt64?,
        batchesSinceSnapshot: Int
    ) {
        self.store = store
        self.namespace = namespace
        self.stream = Self.stream(for: namespace)
        self.configuration = configuration
        self.random = random
        self.wallClock = wallClock
        self.entries = entries
        self.version = version
        self.batchesSinceSnapshot = batchesSinceSnapshot
    }

    /// The category of every namespace's stream, `keel.kv`: projections skip its events.
    public static let streamCategory = "keel.kv"

    /// The stream that holds `namespace`.
    /// - Parameter namespace: A namespace.
    /// - Returns: `keel.kv-<namespace>`.
    public static func stream(for namespace: String) -> StreamID {
        StreamID("\(streamCategory)-\(namespace)")
    }

    /// Opens `namespace` in `store`: reads its latest snapshot and the batches after it into
    /// memory.
    ///
    /// Opening costs one read of the stream's visible part: with compaction, at most
    /// ``Configuration/compactionThreshold`` batches after one snapshot.
    /// - Parameters:
    ///   - store: The event store that holds the namespace.
    ///   - namespace: The namespace; not empty.
    ///   - configuration: How to compact.
    ///   - random: The source of the ids of the events it appends. By default a new source seeded
    ///     from the system's generator; pass a seeded one so that a run repeats.
    ///   - wallClock: The time of day stamped on the events it appends; the system's by default.
    /// - Returns: The store, holding every batch committed before.
    /// - Throws: ``KeyValueStoreError`` with ``KeyValueStoreError/Code/storeFailed`` when the
    ///   read fails, or ``KeyValueStoreError/Code/corrupted`` for an event that is not a batch or
    ///   a snapshot.
    public static func open(
        store: any EventStore,
        namespace: String,
        configuration: Configuration = Configuration(),
        random: RandomSource = RandomSource(),
        wallClock: WallClock = .system
    ) async throws(KeyValueStoreError) -> EventStoreKeyValueStore {
        precondition(!namespace.isEmpty, "a key-value namespace must not be empty")
        precondition((configuration.compactionThreshold ?? 1) >= 1, "compactionThreshold must be at least 1")
        let stream = Self.stream(for: namespace)
        let events: [RecordedEvent]
        let version: UInt64?
        do {
            version = try await store.streamVersion(stream)
            events = version == nil ? [] : try await store.readStream(stream)
        } catch {
            throw KeyValueStoreError(
                code: .storeFailed,
                namespace: namespace,
                message: "cannot read stream \(stream)",
                cause: error
            )
        }
        var entries: [String: [UInt8]] = [:]
        var batchesSinceSnapshot = 0
        for event in events {
            guard let operations = KeyValueRecord.decode(event.payload),
                event.type == KeyValueRecord.batchType || event.type == KeyValueRecord.snapshotType
            else {
                throw KeyValueStoreError(
                    code: .corrupted,
                    namespace: namespace,
                    message: "event \(event.version) of \(stream) (type \(event.type)) is not a key-value record"
                )
            }
            if event.type == KeyValueRecord.snapshotType {
                entries = [:]
                batchesSinceSnapshot = 0
            } else {
                batchesSinceSnapshot += 1
            }
            KeyValueBatch(operations).apply(to: &entries)
        }
        return EventStoreKeyValueStore(
            store: store,
            namespace: namespace,
            configuration: configuration,
            random: random,
            wallClock: wallClock,
            entries: entries,
            version: version,
            batchesSinceSnapshot: batchesSinceSnapshot
        )
    }

    /// Moves `namespace`, as an earlier version kept it in `store`, into `target`, and deletes
    /// its stream: the one-shot migration from key-value streams in the event log to a
    /// ``StateStore``.
    ///
    /// When the stream exists and `target` is empty, the namespace's entries (its latest
    /// snapshot and the batches after it) are committed to `target` in one commit; then the stream
    /// is soft-deleted, so that the next call finds nothing to do. A crash between the two leaves
    /// the entries in `target` and the stream in place: the next call sees a `target` that is not
    /// empty and only deletes the stream. Call it before anything writes to `target`. The old
    /// events stay in the event log (the file event store does not reclaim space); projections
    /// skip them.
    /// - Parameters:
    ///   - namespace: The namespace in `store` (its stream is `keel.kv-<namespace>`).
    ///   - store: The event store that holds it.
    ///   - target: Where its entries go.
    /// - Returns: How many entries were moved (0 when there was nothing to move).
    /// - Throws: ``KeyValueStoreError``: what ``open(store:namespace:configuration:random:wallClock:)`` and
    ///   `target`'s commit throw, or ``KeyValueStoreError/Code/storeFailed`` when the stream
    ///   cannot be deleted.
    @discardableResult
    public static func migrate(
        namespace: String,
        from store: any EventStore,
        to target: some KeyValueStore
    ) async throws(KeyValueStoreError) -> Int {
        let stream = Self.stream(for: namespace)
        let version: UInt64?
        do {
            version = try await store.streamVersion(stream)
        } catch {
            throw KeyValueStoreError(
                code: .storeFailed,
                namespace: namespace,
                message: "cannot read \(stream)",
                cause: error
            )
        }
        guard let version else { return 0 }
        var moved = 0
        if await target.keys(withPrefix: "").isEmpty {
            var configuration = Configuration()
            configuration.compactionThreshold = nil
            // Only read: it appends nothing, so it draws no ids and reads no time.
            let old = try await Self.open(
                store: store,
                namespace: namespace,
                configuration: configuration,
                random: RandomSource(seed: 0),
                wallClock: .fixed(nanosecondsSinceEpoch: 0)
            )
            var batch = KeyValueBatch()
            for (key, value) in await old.entries.sorted(by: { $0.key < $1.key }) {
                batch.put(value, forKey: key)
            }
            try await target.commit(batch)
            moved = batch.operations.count
        }
        do {
            try await store.deleteStream(stream, expecting: .exactly(version))
        } catch {
            throw KeyValueStoreError(
                code: .storeFailed,
                namespace: namespace,
                message: "moved \(moved) entries, but cannot delete \(stream)",
                cause: error
            )
        }
        return moved
    }

    // MARK: Reads

    /// The value under `key`, from memory; see ``KeyValueStore/value(forKey:)``.
    /// - Parameter key: The key.
    /// - Returns: The value, or `nil`.
    public func value(forKey key: String) -> [UInt8]? {
        self.entries[key]
    }

    /// The keys starting with `prefix`, sorted; see ``KeyValueStore/keys(withPrefix:)``.
    /// - Parameter prefix: The prefix.
    /// - Returns: The keys.
    public func keys(withPrefix prefix: String) -> [String] {
        self.entries.keys.filter { $0.hasPrefix(prefix) }.sorted()
    }

    /// The number of keys.
    public var count: Int { self.entries.count }

    // MARK: Writes

    /// Appends `batch` as one event and applies it; see ``KeyValueStore/commit(_:)``.
    ///
    /// The call suspends until the append that carries the batch has returned. It is not
    /// cancellable: once called, the batch is either written or fails with the store's error,
    /// whatever happens to the calling task, so that a caller never wonders whether a cancelled
    /// commit landed.
    /// - Parameter batch: The writes.
    /// - Throws: ``KeyValueStoreError`` with ``KeyValueStoreError/Code/conflict`` when another
    ///   writer appended to the stream, or ``KeyValueStoreError/Code/storeFailed``.
    public func commit(_ batch: KeyValueBatch) async throws(KeyValueStoreError) {
        if batch.isEmpty { return }
        let id = self.nextID
        self.nextID += 1
        self.queue.append((id, batch))
        if self.isWriting {
            // The writer in flight takes this batch in its next round and resumes us.
            let result = await withCheckedContinuation { continuation in
                self.parked[id] = continuation
            }
            try result.get()
            return
        }
        // Nobody is writing: this caller writes rounds until the queue is empty.
        self.isWriting = true
        let own = await self.drainQueue(ownID: id)
        self.finishWriting()
        guard let own else { preconditionFailure("commit \(id) of \(self.namespace) was not written") }
        try own.get()
    }

    /// Appends a snapshot of the whole map now and hides the events before it from reads of the
    /// stream, so that the next ``open(store:namespace:configuration:random:wallClock:)`` starts from it.
    ///
    /// Waits for the commits in flight to finish first; commits that arrive meanwhile wait for
    /// the snapshot. Like ``commit(_:)``, it is not cancellable.
    /// - Throws: ``KeyValueStoreError``.
    public func compact() async throws(KeyValueStoreError) {
        while self.isWriting {
            await withCheckedContinuation { continuation in
                self.idleWaiters.append(continuation)
            }
        }
        self.isWriting = true
        let result: Result<Void, KeyValueStoreError>
        do {
            try await self.writeSnapshot()
            result = .success(())
        } catch {
            result = .failure(error)
        }
        _ = await self.drainQueue(ownID: nil)
        self.finishWriting()
        try result.get()
    }

    /// Writes rounds until the queue is empty, resuming every parked commit with its round's
    /// result; returns the result of `ownID`'s round.
    private func drainQueue(ownID: UInt64?) async -> Result<Void, KeyValueStoreError>? {
        var own: Result<Void, KeyValueStoreError>?
        while !self.queue.isEmpty {
            let round = self.queue
            self.queue = []
            let result = await self.write(round.map(\.batch))
            for entry in round {
                if entry.id == ownID {
                    own = result
                } else if let continuation = self.parked.removeValue(forKey: entry.id) {
                    continuation.resume(returning: result)
                } else {
                    preconditionFailure("commit \(entry.id) of \(self.namespace) was queued but not parked")
                }
            }
        }
        return own
    }

    private func finishWriting() {
        self.isWriting = false
        let waiters = self.idleWaiters
        self.idleWaiters = []
        for waiter in waiters {
            waiter.resume()
        }
    }

    /// Appends `batches` (one event each) in one append and applies them.
    private func write(_ batches: [KeyValueBatch]) async -> Result<Void, KeyValueStoreError> {
        let events = batches.map { self.event(KeyValueRecord.batchType, KeyValueRecord.encode($0.operations)) }
        do {
            let result = try await self.store.append(events, to: self.stream, expecting: self.expectation)
            self.version = result.streamVersion
        } catch {
            return .failure(self.error(error))
        }
        for batch in batches {
            batch.apply(to: &self.entries)
        }
        self.batchesSinceSnapshot += batches.count
        if let threshold = self.configuration.compactionThreshold, self.batchesSinceSnapshot >= threshold {
            // The batches are durable already; a failed snapshot only leaves open longer.
            try? await self.writeSnapshot()
        }
        return .success(())
    }

    private func writeSnapshot() async throws(KeyValueStoreError) {
        let operations = self.entries.sorted { $0.key < $1.key }.map { KeyValueBatch.Operation.put(key: $0, value: $1) }
        let event = self.event(KeyValueRecord.snapshotType, KeyValueRecord.encode(operations))
        do {
            let result = try await self.store.append([event], to: self.stream, expecting: self.expectation)
            self.version = result.streamVersion
            self.batchesSinceSnapshot = 0
            if let snapshotVersion = result.streamVersion {
                // Not atomic with the append, and need not be: a snapshot replaces the map when
                // read, so reading from an older version gives the same entries.
                try await self.store.setStreamMetadata(
                    StreamMetadata(truncateBefore: snapshotVersion),
                    for: self.stream
                )
            }
        } catch {
            throw self.error(error)
        }
    }

    private var expectation: ExpectedVersion {
        self.version.map { .exactly($0) } ?? .noStream
    }

    private func event(_ type: String, _ payload: [UInt8]) -> EventData {
        let time = self.wallClock.nanosecondsSinceEpoch()
        return EventData(
            type: type,
            metadata: EventMetadata(id: EventID.random(using: self.random), time: time),
            payload: payload
        )
    }

    private func error(_ error: EventStoreError) -> KeyValueStoreError {
        if error.code == .wrongExpectedVersion {
            return KeyValueStoreError(
                code: .conflict,
                namespace: self.namespace,
                message: "another writer appended to \(self.stream); open the namespace again",
                cause: error
            )
        }
        return KeyValueStoreError(
            code: .storeFailed,
            namespace: self.namespace,
            message: "cannot append to \(self.stream)",
            cause: error
        )
    }
}
