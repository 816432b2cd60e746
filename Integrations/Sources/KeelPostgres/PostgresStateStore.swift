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

    /// Opens the state store in `schema`, creating its table the first time, and reads the table
    /// into memory.
    /// - Parameters:
    ///   - client: The connection pool; run it (`client.run()`) in a task you own for as long as
    ///     the store is used.
    ///   - schema: The PostgreSQL schema: letters, digits and underscores, starting with a letter
    ///     or an underscore; default `keel`.
    ///   - logger: Where postgres-nio logs the store's queries.
    /// - Returns: The store.
    /// - Throws: ``/KeelEventSourcing/KeyValueStoreError`` with
    ///   ``/KeelEventSourcing/KeyValueStoreError/Code/invalidNamespace`` for a schema name that is
    ///   not a plain identifier, or ``/KeelEventSourcing/KeyValueStoreError/Code/storeFailed`` when
    ///   the server cannot be reached or refuses.
    public static func open(
        client: PostgresClient,
        schema: String = "keel",
        logger: Logger = Logger(label: "keel.postgres.state")
    ) async throws(KeyValueStoreError) -> PostgresStateStore {
        guard PostgresIdentifier.isPlain(schema) else {
            throw KeyValueStoreError(
                code: .invalidNamespace,
                namespace: schema,
                message: "a PostgreSQL schema name must be letters, digits and underscores, not starting with a digit"
            )
        }
        let store = PostgresStateStore(client: client, table: "\"\(schema)\".keel_state", logger: logger)
        do {
            try await client.withConnection { connection in
                try await connection.query(
                    PostgresQuery(unsafeSQL: "CREATE SCHEMA IF NOT EXISTS \"\(schema)\""),
                    logger: logger
                )
                try await connection.query(
                    PostgresQuery(
                        unsafeSQL: """
                            CREATE TABLE IF NOT EXISTS \(store.table) (
                                namespace text NOT NULL,
                                key text NOT NULL,
                                value bytea NOT NULL,
                                PRIMARY KEY (namespace, key)
                            )
                            """
                    ),
                    logger: logger
                )
            }
        } catch {
            throw Self.failure(error, doing: "create the state table", namespace: "")
        }
        let namespaces = try await store.readTable()
        store.state.withLock { $0.namespaces = namespaces }
        return store
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
    /// finished. Does not close the client.
    public func close() async {
        let tail = self.state.withLock { state -> Task<Result<Void, KeyValueStoreError>, Never>? in
            state.isClosed = true
            return state.tail
        }
        _ = await tail?.value
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

/// PostgreSQL identifiers that Keel puts in its SQL.
enum PostgresIdentifier {
    /// Whether `name` is a plain identifier: ASCII letters, digits and underscores, not starting
    /// with a digit, at most 63 bytes; such a name needs no escaping inside double quotes.
    static func isPlain(_ name: String) -> Bool {
        guard let first = name.utf8.first, name.utf8.count <= 63,
            !(UInt8(ascii: "0")...UInt8(ascii: "9")).contains(first)
        else { return false }
        return name.utf8.allSatisfy { byte in
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte)
                || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
                || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || byte == UInt8(ascii: "_")
        }
    }
}
