import KeelCore
import KeelEventSourcing
import Logging
import NIOCore
import PostgresNIO
import Synchronization

/// A ``/KeelEventSourcing/StateStore`` in PostgreSQL: services' key-value state, read models and
/// durable subscriptions' checkpoints in one table, beside a ``PostgresEventStore``'s events.
///
/// Reads never suspend (the protocol's reads are synchronous): the store loads its table into
/// memory when it opens and keeps that copy as it commits, so a read is a dictionary lookup. Each
/// ``commit(_:)`` is one transaction: every namespace's batch lands, or none does. Commits are
/// written one after another in the order they were called, and a commit goes on to its end even
/// when its caller is cancelled, so its caller learns whether it landed.
///
/// The copy in memory is this store's: run each namespace's writer in one process. Two hosts that
/// share the store (``/Keel/StorageLocation/stores(events:state:name:)``) each run their own
/// services, so their namespaces never overlap; a store does not see another process's commits
/// until it opens again.
///
/// ```swift
/// let client = PostgresClient(configuration: configuration)
/// // run `client.run()` in a task you own, for as long as the stores are used
/// let state = try await PostgresStateStore.open(client: client)
/// try await state.namespace("settings").put(Array("dark".utf8), forKey: "theme")
/// ```
public final class PostgresStateStore: StateStore, Sendable {
    private struct State {
        var namespaces: [String: [String: [UInt8]]] = [:]
        var isClosed = false
        /// The last commit, which the next one waits for.
        var tail: Task<Result<Void, KeyValueStoreError>, Never>?
        /// Whether a commit failed with an unknown outcome, so the copy may differ from the
        /// table until it is read again.
        var isStale = false
        /// The task that runs the client, when the store made the client; ``close()`` ends it.
        var clientTask: Task<Void, Never>?
    }

    private let client: PostgresClient
    private let table: String
    private let logger: Logger
    private let state = Mutex(State())

    private init(client: PostgresClient, table: String, logger: Logger) {
        self.client = client
        self.table = table
        self.logger = logger
    }

    /// Opens the state store in `schema`, creating or migrating the schema's tables the first time
    /// (the same versioned migrations as ``PostgresEventStore``'s), and reads the state table into
    /// memory.
    /// - Parameters:
    ///   - client: The connection pool; run it (`client.run()`) in a task you own for as long as
    ///     the store is used.
    ///   - schema: The PostgreSQL schema, the event store's: lowercase letters, digits and
    ///     underscores, starting with a letter or an underscore, at most 48 characters; default
    ///     `keel`.
    ///   - logger: Where postgres-nio logs the store's queries.
    /// - Returns: The store.
    /// - Throws: ``/KeelEventSourcing/KeyValueStoreError`` with
    ///   ``/KeelEventSourcing/KeyValueStoreError/Code/invalidNamespace`` for a schema name that
    ///   breaks those rules, ``/KeelEventSourcing/KeyValueStoreError/Code/corrupted`` with a
    ///   ``PostgresSchemaVersionError`` cause for a schema newer than this build, or
    ///   ``/KeelEventSourcing/KeyValueStoreError/Code/storeFailed`` when the server cannot be
    ///   reached or refuses.
    public static func open(
        client: PostgresClient,
        schema: String = "keel",
        logger: Logger = Logger(label: "keel.postgres.state")
    ) async throws(KeyValueStoreError) -> PostgresStateStore {
        guard PostgresSchema.isValidName(schema) else {
            throw KeyValueStoreError(
                code: .invalidNamespace,
                namespace: schema,
                message: "schema name \"\(schema)\" is not a lowercase identifier of at most 48 characters"
            )
        }
        let store = PostgresStateStore(client: client, table: "\"\(schema)\".keel_state", logger: logger)
        do {
            _ = try await PostgresEventStore.migrate(
                schema: PostgresSchema(name: schema),
                named: schema,
                client: client,
                logger: logger
            )
        } catch let error as PostgresSchemaVersionError {
            throw KeyValueStoreError(code: .corrupted, namespace: "", message: error.description, cause: error)
        } catch {
            throw Self.failure(error, doing: "migrate schema \(schema)", namespace: "")
        }
        let namespaces = try await store.readTable()
        store.state.withLock { $0.namespaces = namespaces }
        return store
    }

    /// Opens the state store with a client of its own, made from `configuration`'s connection
    /// fields and schema, as ``open(client:schema:logger:)`` does; ``close()`` stops the client.
    ///
    /// ```swift
    /// let state = try await PostgresStateStore.open(configuration: .init(username: "shop", database: "shop"))
    /// // …
    /// await state.close()   // after the host that uses it has shut down
    /// ```
    /// - Parameter configuration: Where to connect (host, port, user, password, database, TLS,
    ///   ``PostgresEventStore/Configuration/poolSize``) and the schema.
    /// - Returns: The store.
    /// - Throws: As ``open(client:schema:logger:)``.
    public static func open(
        configuration: PostgresEventStore.Configuration
    ) async throws(KeyValueStoreError) -> PostgresStateStore {
        let logger =
            configuration.logger ?? Logger(label: "keel.postgres.state", factory: { _ in SwiftLogNoOpLogHandler() })
        let client = PostgresClient(configuration: configuration.clientConfiguration, backgroundLogger: logger)
        let task = Task { await client.run() }
        do {
            let store = try await Self.open(client: client, schema: configuration.schema, logger: logger)
            store.state.withLock { $0.clientTask = task }
            return store
        } catch {
            task.cancel()
            await task.value
            throw error
        }
    }

    /// The value under `key` in `namespace`, from the copy in memory; see
    /// ``/KeelEventSourcing/StateStore/value(forKey:in:)``.
    /// - Parameters:
    ///   - key: The key.
    ///   - namespace: The namespace.
    /// - Returns: The value, or `nil`.
    /// - Throws: ``/KeelEventSourcing/KeyValueStoreError`` with
    ///   ``/KeelEventSourcing/KeyValueStoreError/Code/closed`` after ``close()``.
    public func value(forKey key: String, in namespace: String) throws(KeyValueStoreError) -> [UInt8]? {
        try self.state.withLock { state throws(KeyValueStoreError) in
            guard !state.isClosed else {
                throw KeyValueStoreError(code: .closed, namespace: namespace, message: "the state store is closed")
            }
            return state.namespaces[namespace]?[key]
        }
    }

    /// The keys of `namespace` starting with `prefix`, sorted; see
    /// ``/KeelEventSourcing/StateStore/keys(withPrefix:in:)``.
    /// - Parameters:
    ///   - prefix: The prefix.
    ///   - namespace: The namespace.
    /// - Returns: The keys.
    public func keys(withPrefix prefix: String, in namespace: String) -> [String] {
        let keys = self.state.withLock { $0.namespaces[namespace].map { Array($0.keys) } ?? [] }
        return keys.filter { $0.hasPrefix(prefix) }.sorted()
    }

    /// The namespaces that hold a key, sorted.
    /// - Returns: The namespaces.
    public func namespaces() -> [String] {
        self.state.withLock { state in state.namespaces.filter { !$0.value.isEmpty }.keys.sorted() }
    }

    /// Writes `changes` in one transaction, after every commit called before it; see
    /// ``/KeelEventSourcing/StateStore/commit(_:)``.
    ///
    /// When the transaction's outcome is unknown (the connection broke during `COMMIT`), the
    /// commit throws and the store reads its table again before the next commit, so that its
    /// copy matches what the server holds.
    /// - Parameter changes: The writes.
    /// - Throws: ``/KeelEventSourcing/KeyValueStoreError`` with
    ///   ``/KeelEventSourcing/KeyValueStoreError/Code/closed`` after ``close()``, or
    ///   ``/KeelEventSourcing/KeyValueStoreError/Code/storeFailed`` with the server's error.
    public func commit(_ changes: StateChanges) async throws(KeyValueStoreError) {
        let namespace = changes.batches.first?.namespace ?? ""
        let queued = self.state.withLock { state -> Task<Result<Void, KeyValueStoreError>, Never>? in
            guard !state.isClosed else { return nil }
            let previous = state.tail
            // Not the caller's child: a commit goes on when its caller is cancelled. The chain of
            // tails owns it; `close()` awaits the chain.
            let task = Task { () -> Result<Void, KeyValueStoreError> in
                _ = await previous?.value
                do throws(KeyValueStoreError) {
                    try await self.write(changes)
                    return .success(())
                } catch {
                    return .failure(error)
                }
            }
            state.tail = task
            return task
        }
        guard let queued else {
            throw KeyValueStoreError(code: .closed, namespace: namespace, message: "the state store is closed")
        }
        try await queued.value.get()
    }

    /// Refuses later reads of values and commits with
    /// ``/KeelEventSourcing/KeyValueStoreError/Code/closed`` once the commits already called have
    /// finished. Stops the client only when the store made it (``open(configuration:)``).
    public func close() async {
        let tail = self.state.withLock { state -> Task<Result<Void, KeyValueStoreError>, Never>? in
            state.isClosed = true
            return state.tail
        }
        _ = await tail?.value
        let clientTask = self.state.withLock { state -> Task<Void, Never>? in
            defer { state.clientTask = nil }
            return state.clientTask
        }
        clientTask?.cancel()
        await clientTask?.value
    }

    /// Writes one commit; on the chain, never two at once.
    private func write(_ changes: StateChanges) async throws(KeyValueStoreError) {
        let namespace = changes.batches.first?.namespace ?? ""
        if self.state.withLock({ $0.isStale }) {
            let namespaces = try await self.readTable()
            self.state.withLock {
                $0.namespaces = namespaces
                $0.isStale = false
            }
        }
        guard !changes.isEmpty else { return }
        do {
            try await self.client.withTransaction(logger: self.logger) { connection in
                for (namespace, batch) in changes.batches {
                    for operation in batch.operations {
                        try await connection.query(self.query(operation, in: namespace), logger: self.logger)
                    }
                }
            }
        } catch {
            // The transaction may or may not have landed: read the table before the next commit.
            self.state.withLock { $0.isStale = true }
            throw Self.failure(error, doing: "commit", namespace: namespace)
        }
        self.state.withLock { state in
            for (namespace, batch) in changes.batches {
                var entries = state.namespaces[namespace] ?? [:]
                Self.apply(batch, to: &entries)
                state.namespaces[namespace] = entries.isEmpty ? nil : entries
            }
        }
    }

    private func query(_ operation: KeyValueBatch.Operation, in namespace: String) -> PostgresQuery {
        var bindings = PostgresBindings()
        bindings.append(namespace)
        switch operation {
        case .put(let key, let value):
            bindings.append(key)
            bindings.append(ByteBuffer(bytes: value))
            return PostgresQuery(
                unsafeSQL: """
                    INSERT INTO \(self.table) (namespace, key, value) VALUES ($1, $2, $3)
                    ON CONFLICT (namespace, key) DO UPDATE SET value = EXCLUDED.value
                    """,
                binds: bindings
            )
        case .delete(let key):
            bindings.append(key)
            return PostgresQuery(
                unsafeSQL: "DELETE FROM \(self.table) WHERE namespace = $1 AND key = $2",
                binds: bindings
            )
        case .deleteAll(let prefix):
            bindings.append(prefix)
            // `left(…)` rather than LIKE: a prefix may hold `%` and `_`.
            return PostgresQuery(
                unsafeSQL: "DELETE FROM \(self.table) WHERE namespace = $1 AND left(key, length($2)) = $2",
                binds: bindings
            )
        }
    }

    private static func apply(_ batch: KeyValueBatch, to entries: inout [String: [UInt8]]) {
        for operation in batch.operations {
            switch operation {
            case .put(let key, let value): entries[key] = value
            case .delete(let key): entries[key] = nil
            case .deleteAll(let prefix):
                entries = prefix.isEmpty ? [:] : entries.filter { !$0.key.hasPrefix(prefix) }
            }
        }
    }

    private func readTable() async throws(KeyValueStoreError) -> [String: [String: [UInt8]]] {
        do {
            var namespaces: [String: [String: [UInt8]]] = [:]
            let rows = try await self.client.query(
                PostgresQuery(unsafeSQL: "SELECT namespace, key, value FROM \(self.table)"),
                logger: self.logger
            )
            for try await (namespace, key, value) in rows.decode((String, String, ByteBuffer).self) {
                namespaces[namespace, default: [:]][key] = Array(value.readableBytesView)
            }
            return namespaces
        } catch {
            throw Self.failure(error, doing: "read the state table", namespace: "")
        }
    }

    private static func failure(_ error: any Error, doing what: String, namespace: String) -> KeyValueStoreError {
        KeyValueStoreError(
            code: .storeFailed,
            namespace: namespace,
            message: "PostgreSQL: could not \(what): \(String(reflecting: error))",
            cause: error
        )
    }
}
