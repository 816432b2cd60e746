import Foundation
import KeelCore
import KeelEventSourcing
import Logging
import PostgresNIO
import Synchronization

/// An ``EventStore`` on PostgreSQL: events in a table of one schema, shared by every process that
/// opens that schema, in one gap-free global order.
///
/// ``open(configuration:)`` connects, creates the schema's tables or migrates them (once, even
/// when several processes open the schema at the same moment), and starts the store's two
/// background tasks: the writer and the listener. ``close()`` stops them. Between the two, every
/// method may be called from any task, concurrently.
///
/// ```swift
/// let store = try await PostgresEventStore.open(
///     configuration: .init(host: "127.0.0.1", username: "postgres", database: "shop")
/// )
/// try await store.append(registered, to: "user-42", expecting: .noStream)
/// for try await event in store.subscribe(from: 0) { … }
/// await store.close()
/// ```
///
/// ## Global order across processes
///
/// Positions are contiguous (0, 1, 2, …) and become visible in order, even with writers in other
/// processes: every statement that writes events updates the schema's one-row head table, takes
/// its positions from it and moves it, and holds the head's row lock until it commits, so
/// commits that write events are serialised in position order. A reader never sees position
/// `n + 1` before `n`.
///
/// ## Group commit
///
/// Appends join a queue; one writer task takes every append queued while the previous batch
/// was committing (up to ``Configuration/maxBatchEvents`` events) and writes them at once. A
/// batch reads the head and its streams' last versions (one statement, no lock), checks each
/// append's expected version on its own — a conflicting append fails alone with the stream's
/// actual version, and the others go on — and writes the accepted events, the streams and the
/// head in one statement that commits by itself, on condition that the head is still as read:
/// every append and every deletion, in any process, moves the head's position or its
/// generation, so an unchanged head means the checks still hold. When it has moved, the batch
/// goes again in a transaction that locks the head before it reads. Two round trips per batch,
/// or one when the writer already knows the head and every stream of the batch (it keeps them as
/// of its own last commit, and the same condition catches a copy another writer made stale); the
/// head's lock is held for one statement, not across round trips.
///
/// An append is acknowledged only after its batch committed; when a batch fails — a lost
/// connection, a server restart, a commit whose outcome is unknown — each of its appends throws
/// ``EventStoreError/Code/io``, and some of them may have been written: read the stream before
/// retrying one that expected a version.
///
/// ## Waiting for events
///
/// ``waitForHead(beyond:)``, on which subscriptions are built, does not poll. Each commit
/// notifies the new head on a channel named after the schema (`NOTIFY`, delivered when the
/// transaction commits); the listener task keeps one connection listening on it and wakes the
/// waiters whose head has been passed. When that connection fails, the listener connects again
/// after a backoff (``Configuration/listenerBackoff``) and reads the head from the table, since a
/// notification sent while it was not listening is lost.
///
/// ## Failures
///
/// Errors of the server or the connection are ``EventStoreError/Code/io`` errors whose message
/// carries the server's text. The store recovers by itself once the server is back: the pool
/// opens new connections and the listener listens again; the store need not be reopened.
public final class PostgresEventStore: EventStore {
    let client: PostgresClient
    private let ownsClient: Bool
    /// The listener's own client, with one connection, always the store's: the listener holds its
    /// connection for as long as it listens, so it does not take it from the pool that serves
    /// appends and reads (whose size then means what it says, and which may be the caller's).
    let listenerClient: PostgresClient
    let configuration: Configuration
    let schema: PostgresSchema
    let logger: Logger
    let state = Mutex(State())
    /// The task that runs the client (when the store made it), the writer and the listener. Set
    /// once, by ``start(client:ownsClient:configuration:)``; ``close()`` ends and awaits it.
    private let background = Mutex<Task<Void, Never>?>(nil)
    private let migrationsApplied = Mutex(0)
    private let clock: any Clock<Duration> = ContinuousClock()
    private let batchCounter: (any TelemetryCounter)?
    private let batchSizes: (any TelemetryHistogram)?
    private let failedBatchCounter: (any TelemetryCounter)?

    private init(client: PostgresClient, ownsClient: Bool, configuration: Configuration) {
        self.client = client
        self.ownsClient = ownsClient
        var listenerConfiguration = configuration.clientConfiguration
        listenerConfiguration.options.maximumConnections = 1
        self.listenerClient = PostgresClient(
            configuration: listenerConfiguration,
            backgroundLogger: configuration.logger
                ?? Logger(label: "keel.postgres", factory: { _ in SwiftLogNoOpLogHandler() })
        )
        self.configuration = configuration
        self.schema = PostgresSchema(name: configuration.schema)
        self.logger =
            configuration.logger ?? Logger(label: "keel.postgres", factory: { _ in SwiftLogNoOpLogHandler() })
        let dimensions = [("schema", configuration.schema)]
        let telemetry = configuration.telemetry
        self.batchCounter = telemetry?.makeCounter(label: "keel_postgres_commits_total", dimensions: dimensions)
        self.batchSizes = telemetry?.makeHistogram(label: "keel_postgres_commit_appends", dimensions: dimensions)
        self.failedBatchCounter = telemetry?.makeCounter(
            label: "keel_postgres_failed_commits_total",
            dimensions: dimensions
        )
    }

    // MARK: Lifecycle

    /// Connects to the server in `configuration`, migrates the schema, and starts the store.
    ///
    /// The store makes its own ``PostgresClient`` (a pool of at most
    /// ``Configuration/poolSize`` connections) and runs it until ``close()``; its listener has a
    /// connection of its own beside the pool. Creating the schema
    /// or migrating it happens here, each migration in a transaction that holds an advisory lock
    /// on the schema, so two processes opening a new schema at once do not race; a schema that is
    /// already current is left alone.
    ///
    /// Suspends until the schema is ready. Call ``close()`` when done: the store's tasks run
    /// until then.
    /// - Parameter configuration: Where to connect and how the store works.
    /// - Returns: The open store.
    /// - Throws: ``EventStoreError``: ``EventStoreError/Code/invalidArgument`` for a configuration
    ///   that breaks its documented rules, ``EventStoreError/Code/io`` when the server cannot be
    ///   reached or refuses, ``EventStoreError/Code/corrupted`` with a
    ///   ``PostgresSchemaVersionError`` cause when the schema is newer than this build.
    public static func open(configuration: Configuration) async throws(EventStoreError) -> PostgresEventStore {
        try configuration.validate()
        let client = PostgresClient(
            configuration: configuration.clientConfiguration,
            backgroundLogger: configuration.logger
                ?? Logger(label: "keel.postgres", factory: { _ in SwiftLogNoOpLogHandler() })
        )
        return try await Self.start(client: client, ownsClient: true, configuration: configuration)
    }

    /// Opens a store on a client that you run, migrating the schema as
    /// ``open(configuration:)`` does.
    ///
    /// The store uses `client` for appends and reads, and neither runs it nor shuts it down: run
    /// its `run()` in a task you own, before this call and until after ``close()``. The store's
    /// listener does not take a connection from `client`: it opens one of its own with the
    /// connection fields of `configuration` (host, port, user, password, database, TLS), which
    /// must name the same server and database; ``Configuration/poolSize`` is ignored.
    /// - Parameters:
    ///   - client: The client, running.
    ///   - configuration: The schema and the store's settings.
    /// - Returns: The open store.
    /// - Throws: As ``open(configuration:)``.
    public static func open(
        client: PostgresClient,
        configuration: Configuration
    ) async throws(EventStoreError) -> PostgresEventStore {
        try configuration.validate()
        return try await Self.start(client: client, ownsClient: false, configuration: configuration)
    }

    /// Opens a store, runs `body` with it, and closes it, whether `body` returns or throws.
    /// - Parameters:
    ///   - configuration: Where to connect and how the store works.
    ///   - body: What to do with the store.
    /// - Returns: What `body` returns.
    /// - Throws: What ``open(configuration:)`` or `body` throws.
    public static func withStore<Value>(
        configuration: Configuration,
        _ body: (PostgresEventStore) async throws -> Value
    ) async throws -> Value {
        let store = try await Self.open(configuration: configuration)
        do {
            let result = try await body(store)
            await store.close()
            return result
        } catch {
            await store.close()
            throw error
        }
    }

    private static func start(
        client: PostgresClient,
        ownsClient: Bool,
        configuration: Configuration
    ) async throws(EventStoreError) -> PostgresEventStore {
        let store = PostgresEventStore(client: client, ownsClient: ownsClient, configuration: configuration)
        let started = await withCheckedContinuation { (startup: CheckedContinuation<EventStoreError?, Never>) in
            // Unstructured on purpose: the store's work outlives this call. Its owner is the store:
            // `close()` ends it (the writer returns, the group is cancelled) and awaits it.
            let task = Task { await store.runBackground(startup: startup) }
            store.background.withLock { $0 = task }
        }
        if let error = started {
            await store.close()
            throw error
        }
        return store
    }

    /// The store's background work: the client (when the store made it), then the migrations,
    /// then the listener and the writer, until the writer finishes (the store closed).
    private func runBackground(startup: CheckedContinuation<EventStoreError?, Never>) async {
        await withDiscardingTaskGroup { group in
            if self.ownsClient {
                group.addTask { await self.client.run() }
            }
            group.addTask { await self.listenerClient.run() }
            do throws(EventStoreError) {
                try await self.migrateWithinTimeout()
                let head = try await self.headPosition()
                self.observe(head: head)
            } catch {
                startup.resume(returning: error)
                group.cancelAll()
                return
            }
            startup.resume(returning: nil)
            group.addTask { await self.runListener() }
            await self.runWriter()
            group.cancelAll()
        }
    }

    /// Runs ``migrate()``, giving up after ``Configuration/openTimeout`` (the pool keeps trying
    /// to connect to an unreachable server for a minute before it fails a request).
    private func migrateWithinTimeout() async throws(EventStoreError) {
        let timeout = self.configuration.openTimeout
        let outcome = await withTaskGroup(of: EventStoreError??.self) { group in
            group.addTask {
                do throws(EventStoreError) {
                    try await self.migrate()
                    return .some(nil)
                } catch {
                    return .some(error)
                }
            }
            group.addTask {
                do {
                    try await self.sleep(for: timeout)
                } catch {
                    return nil
                }
                return .some(
                    EventStoreError(
                        code: .io,
                        message: "could not reach the PostgreSQL server at \(self.configuration.host):"
                            + "\(self.configuration.port) and migrate schema \(self.configuration.schema) "
                            + "within \(timeout)"
                    )
                )
            }
            defer { group.cancelAll() }
            while let result = await group.next() {
                if let result { return result }
            }
            return nil
        }
        if let error = outcome { throw error }
    }

    /// Closes the store: queued appends that the writer has not started fail with
    /// ``EventStoreError/Code/closed``, a batch being committed finishes (its appenders learn its
    /// outcome), every ``waitForHead(beyond:)`` returns, and then the writer, the listener and the
    /// client the store made stop. Suspends until they have.
    ///
    /// Every call after `close()` throws ``EventStoreError/Code/closed``; ``waitForHead(beyond:)``
    /// returns at once. Closing twice is harmless.
    public func close() async {
        let (failed, resumed) = self.state.withLock { $0.close() }
        for pending in failed { pending.continuation.resume(returning: .failure(Self.closedError)) }
        for continuation in resumed { continuation.resume() }
        let task = self.background.withLock { $0 }
        await task?.value
    }

    /// How many migrations this store applied when it opened (0 when the schema was current).
    package var appliedMigrations: Int {
        self.migrationsApplied.withLock { $0 }
    }

    /// What the writer has done so far.
    package var statistics: Statistics {
        self.state.withLock { $0.statistics }
    }

    /// Suspends until `condition` holds for the writer's ``statistics``, checked after each
    /// change; for tests.
    /// - Parameter condition: The condition.
    package func waitForStatistics(_ condition: @escaping @Sendable (Statistics) -> Bool) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let parked = self.state.withLock { $0.parkStatisticsWaiter(condition, continuation) }
            if !parked { continuation.resume() }
        }
    }

    // MARK: EventStore

    /// Appends `events` to `stream` atomically if it satisfies `expected`; see
    /// ``EventStore/append(_:to:expecting:)``.
    ///
    /// The append joins the writer's queue and is written in the next group commit. It suspends
    /// until that transaction committed or failed; cancelling the calling task does not withdraw
    /// it, so that the caller learns whether it was written.
    /// - Parameters:
    ///   - events: The events.
    ///   - stream: The stream.
    ///   - expected: What the stream's last version must be.
    /// - Returns: Where the events landed.
    /// - Throws: ``EventStoreError``: ``EventStoreError/Code/wrongExpectedVersion``,
    ///   ``EventStoreError/Code/invalidArgument``, ``EventStoreError/Code/closed``, or
    ///   ``EventStoreError/Code/io`` when the transaction failed or its outcome is unknown.
    @discardableResult
    public func append(
        _ events: [EventData],
        to stream: StreamID,
        expecting expected: ExpectedVersion
    ) async throws(EventStoreError) -> AppendResult {
        try EventStoreRules.validate(events, stream: stream)
        let result = await withCheckedContinuation {
            (continuation: CheckedContinuation<Result<AppendResult, EventStoreError>, Never>) in
            let pending = PendingAppend(events: events, stream: stream, expected: expected, continuation: continuation)
            switch self.state.withLock({ $0.enqueue(pending) }) {
            case .closed:
                continuation.resume(returning: .failure(Self.closedError))
            case .enqueued(let writer, let waiters):
                writer?.resume()
                for waiter in waiters { waiter.resume() }
            }
        }
        return try result.get()
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
        try self.checkOpen()
        do {
            guard let entry = try await self.streamState(stream) else { return [] }
            guard !entry.isDeleted else {
                throw EventStoreError(code: .streamDeleted, stream: stream, message: "the stream was deleted")
            }
            guard let last = entry.lastVersion else { return [] }
            let first = entry.metadata.firstVisibleVersion(last: last)
            guard
                let range = EventStoreRules.versionRange(
                    first: first,
                    last: last,
                    from: version,
                    direction: direction,
                    limit: limit
                )
            else { return [] }
            var binds = PostgresBindings()
            binds.append(stream.name)
            binds.append(Int64(range.lowerBound))
            binds.append(Int64(range.upperBound))
            binds.append(Int64(clamping: limit))
            let sql = self.schema.readStream(ascending: direction == .forwards)
            return try await self.readEvents(PostgresQuery(unsafeSQL: sql, binds: binds))
        } catch {
            throw self.storeError(error, during: "reading the stream", stream: stream)
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
        try self.checkOpen()
        guard position <= UInt64(Int64.max) else { return [] }
        var binds = PostgresBindings()
        binds.append(Int64(position))
        binds.append(Int64(clamping: limit))
        do {
            return try await self.readEvents(PostgresQuery(unsafeSQL: self.schema.readAll, binds: binds))
        } catch {
            throw self.storeError(error, during: "reading the log")
        }
    }

    /// The last version of `stream`; see ``EventStore/streamVersion(_:)``.
    /// - Parameter stream: The stream.
    /// - Returns: The version, or `nil`.
    /// - Throws: ``EventStoreError``.
    public func streamVersion(_ stream: StreamID) async throws(EventStoreError) -> UInt64? {
        try self.checkOpen()
        do {
            guard let entry = try await self.streamState(stream), !entry.isDeleted else { return nil }
            return entry.lastVersion
        } catch {
            throw self.storeError(error, during: "reading the stream's version", stream: stream)
        }
    }

    /// The number of events in the store, read from the server.
    /// - Returns: The next position.
    /// - Throws: ``EventStoreError``.
    public func headPosition() async throws(EventStoreError) -> UInt64 {
        try self.checkOpen()
        do {
            let position = try await self.withConnection { connection in
                let rows = try await connection.checkedQuery(
                    PostgresQuery(unsafeSQL: self.schema.readHead),
                    logger: self.logger
                )
                var head: Int64?
                for try await position in rows.decode(Int64.self) { head = position }
                try Task.checkCancellation()
                guard let head else { throw ConnectionClosedError() }
                return UInt64(head)
            }
            self.observe(head: position)
            return position
        } catch {
            throw self.storeError(error, during: "reading the head")
        }
    }

    /// Soft-deletes `stream`; see ``EventStore/deleteStream(_:expecting:)``.
    ///
    /// Runs in a transaction of its own that holds the head lock, so that it is ordered with
    /// every append of every process.
    /// - Parameters:
    ///   - stream: The stream.
    ///   - expected: What the stream's last version must be.
    /// - Throws: ``EventStoreError``.
    public func deleteStream(_ stream: StreamID, expecting expected: ExpectedVersion) async throws(EventStoreError) {
        try self.checkOpen()
        let schema = self.schema
        let logger = self.logger
        do {
            try await self.withConnection { connection in
                try await Self.transaction(on: connection, logger: logger) { connection in
                    try await connection.checkedQuery(PostgresQuery(unsafeSQL: schema.lockHead), logger: logger)
                    var binds = PostgresBindings()
                    binds.append(stream.name)
                    let rows = try await connection.checkedQuery(
                        PostgresQuery(unsafeSQL: schema.readStreamState, binds: binds),
                        logger: logger
                    )
                    var entry: StreamState?
                    for try await row in rows.decode((Int64?, Bool, Int64?, Int64?).self) {
                        entry = StreamState(row)
                    }
                    let current = entry.flatMap { $0.isDeleted ? nil : $0.lastVersion }
                    guard expected.isSatisfied(by: current) else {
                        throw EventStoreError.wrongExpectedVersion(stream, expected: expected, actual: current)
                    }
                    guard let last = entry?.lastVersion else { return }
                    binds.append(Int64(last + 1))
                    try await connection.checkedQuery(
                        PostgresQuery(unsafeSQL: schema.markDeleted, binds: binds),
                        logger: logger
                    )
                    try await connection.checkedQuery(PostgresQuery(unsafeSQL: schema.moveGeneration), logger: logger)
                }
            }
        } catch {
            throw self.storeError(error, during: "deleting the stream", stream: stream)
        }
    }

    /// Replaces the metadata of `stream`; see ``EventStore/setStreamMetadata(_:for:)``.
    /// - Parameters:
    ///   - metadata: The new metadata.
    ///   - stream: The stream.
    /// - Throws: ``EventStoreError``.
    public func setStreamMetadata(_ metadata: StreamMetadata, for stream: StreamID) async throws(EventStoreError) {
        try EventStoreRules.validate(metadata, stream: stream)
        try self.checkOpen()
        var binds = PostgresBindings()
        binds.append(stream.name)
        binds.append(metadata.maxCount.map { Int64($0) })
        binds.append(metadata.truncateBefore.map { Int64(clamping: $0) })
        do {
            let query = PostgresQuery(unsafeSQL: self.schema.writeMetadata, binds: binds)
            _ = try await self.withConnection { connection in
                try await connection.checkedQuery(query, logger: self.logger)
            }
        } catch {
            throw self.storeError(error, during: "writing the stream's metadata", stream: stream)
        }
    }

    /// The metadata of `stream`; see ``EventStore/streamMetadata(for:)``.
    /// - Parameter stream: The stream.
    /// - Returns: The metadata.
    /// - Throws: ``EventStoreError``.
    public func streamMetadata(for stream: StreamID) async throws(EventStoreError) -> StreamMetadata {
        try self.checkOpen()
        do {
            return try await self.streamState(stream)?.metadata ?? StreamMetadata()
        } catch {
            throw self.storeError(error, during: "reading the stream's metadata", stream: stream)
        }
    }

    /// Waits until the store holds more than `head` events; see
    /// ``EventStore/waitForHead(beyond:)``.
    ///
    /// Parks until a commit of this store or a notification from another process (or a read of
    /// the head) shows a head beyond `head`. Returns promptly when the calling task is cancelled
    /// (before or while it waits) or the store is closed.
    /// - Parameter head: The head position to wait beyond.
    public func waitForHead(beyond head: UInt64) async {
        let id = self.state.withLock { $0.makeWaiterID() }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                // Checked under the lock: a cancellation either happened before (and is seen here)
                // or its handler runs after the registration and removes it.
                let parked = self.state.withLock {
                    $0.parkHeadWaiter(id: id, beyond: head, continuation, isCancelled: Task.isCancelled)
                }
                if !parked { continuation.resume() }
            }
        } onCancel: {
            let waiter = self.state.withLock { $0.removeHeadWaiter(id: id) }
            waiter?.resume()
        }
    }

    // MARK: Internals

    /// Raises the known head and wakes the waiters it satisfies.
    func observe(head: UInt64) {
        let ready = self.state.withLock { $0.observe(head: head) }
        for waiter in ready { waiter.resume() }
    }

    private func checkOpen() throws(EventStoreError) {
        if self.state.withLock({ $0.isClosed }) { throw Self.closedError }
    }

    /// A stream's row: its last version, whether it is deleted, its metadata.
    struct StreamState {
        var lastVersion: UInt64?
        var isDeleted: Bool
        var metadata: StreamMetadata

        init(_ row: (Int64?, Bool, Int64?, Int64?)) {
            self.lastVersion = row.0.map { UInt64($0) }
            self.isDeleted = row.1
            self.metadata = StreamMetadata(
                maxCount: row.2.map { Int(clamping: $0) },
                truncateBefore: row.3.map { UInt64($0) }
            )
        }
    }

    private func streamState(_ stream: StreamID) async throws -> StreamState? {
        var binds = PostgresBindings()
        binds.append(stream.name)
        let query = PostgresQuery(unsafeSQL: self.schema.readStreamState, binds: binds)
        return try await self.withConnection { connection in
            let rows = try await connection.checkedQuery(query, logger: self.logger)
            var entry: StreamState?
            for try await row in rows.decode((Int64?, Bool, Int64?, Int64?).self) {
                entry = StreamState(row)
            }
            try Task.checkCancellation()
            return entry
        }
    }

    private func readEvents(_ query: PostgresQuery) async throws -> [RecordedEvent] {
        try await self.withConnection { connection in
            let rows = try await connection.checkedQuery(query, logger: self.logger)
            let decoder = JSONDecoder()
            var events: [RecordedEvent] = []
            for try await row in rows {
                events.append(try EventRows.decode(row, decoder: decoder))
            }
            try Task.checkCancellation()
            return events
        }
    }

    /// Thrown by ``transaction(on:logger:_:)`` when `COMMIT` failed: whether the transaction
    /// was written is unknown.
    struct CommitOutcomeUnknown: Error {
        let underlying: any Error
    }

    /// Runs `body` in a transaction on `connection`: `BEGIN`, the body, `COMMIT`; `ROLLBACK` when
    /// the body throws.
    /// - Throws: What the body throws, or ``CommitOutcomeUnknown`` when `COMMIT` failed.
    static func transaction<Value: Sendable>(
        on connection: PostgresConnection,
        logger: Logger,
        _ body: (PostgresConnection) async throws -> Value
    ) async throws -> Value {
        try await connection.checkedQuery("BEGIN", logger: logger)
        let result: Value
        do {
            result = try await body(connection)
        } catch {
            // The connection may be gone; the server rolls back a transaction whose connection
            // closed, so a failed ROLLBACK loses nothing.
            _ = try? await connection.checkedQuery("ROLLBACK", logger: logger)
            throw error
        }
        do {
            try await connection.checkedQuery("COMMIT", logger: logger)
        } catch {
            throw CommitOutcomeUnknown(underlying: error)
        }
        return result
    }

    /// Records a committed or failed batch in the store's telemetry.
    func record(batchOf appends: Int, committed: Bool, failed: Bool) {
        if committed {
            self.batchCounter?.increment(by: 1)
            self.batchSizes?.record(Double(appends))
        }
        if failed { self.failedBatchCounter?.increment(by: 1) }
    }

    func recordMigrations(_ count: Int) {
        self.migrationsApplied.withLock { $0 += count }
    }

    func sleep(for delay: Duration) async throws {
        try await self.clock.sleep(for: delay)
    }
}
