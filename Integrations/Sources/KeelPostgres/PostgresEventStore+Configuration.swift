import KeelCore
import KeelEventSourcing
import Logging
import PostgresNIO

extension PostgresEventStore {
    /// Where a ``PostgresEventStore`` keeps its events and how it works.
    ///
    /// ```swift
    /// var configuration = PostgresEventStore.Configuration(host: "db.internal", username: "shop", database: "shop")
    /// configuration.password = secret
    /// configuration.schema = "orders"
    /// let store = try await PostgresEventStore.open(configuration: configuration)
    /// ```
    public struct Configuration: Sendable {
        /// The server's host name or address. Default `127.0.0.1`.
        public var host: String
        /// The server's port. Default 5432.
        public var port: Int
        /// The user to connect as.
        public var username: String
        /// The user's password; `nil` for none (trust or peer authentication).
        public var password: String?
        /// The database; `nil` for the user's default database.
        public var database: String?
        /// Whether to use TLS. Default ``PostgresClient/Configuration/TLS/disable``: set
        /// `.prefer(…)` or `.require(…)` for a server that is not on this machine.
        public var tls: PostgresClient.Configuration.TLS
        /// The PostgreSQL schema that holds the store's tables, created on first use. Default
        /// `keel`. A lowercase letter or `_`, then up to 47 lowercase letters, digits or `_`.
        ///
        /// Every store on one schema shares one event log: two processes that open the same
        /// schema append to the same streams and see one global order.
        public var schema: String
        /// The most connections the store's pool opens for appends and reads (when the store
        /// makes its own client). Default 10; at least 1. The writer uses one at a time; the
        /// listener's connection is not part of the pool.
        public var poolSize: Int
        /// The most events one group commit writes in one transaction. Default 512; at least 1.
        /// A single append larger than this is written alone.
        public var maxBatchEvents: Int
        /// How long the store waits before listening again after its listening connection
        /// failed (the server restarted, the network dropped). Default exponential from 50 ms to
        /// 5 s, with jitter; it restarts from the first delay after each successful connection.
        public var listenerBackoff: Backoff
        /// How long ``PostgresEventStore/open(configuration:)`` tries to reach the server and
        /// migrate the schema before it gives up with ``EventStoreError/Code/io``. Default 30 s.
        public var openTimeout: Duration
        /// Where the store records its metrics (batches committed and their sizes); `nil`
        /// records nothing.
        public var telemetry: (any Telemetry)?
        /// Where the store logs (the listener's reconnections, failed batches); `nil` logs
        /// nothing.
        public var logger: Logger?

        /// Creates a configuration.
        /// - Parameters:
        ///   - host: The server's host. Default `127.0.0.1`.
        ///   - port: The server's port. Default 5432.
        ///   - username: The user to connect as.
        ///   - password: The user's password, if any.
        ///   - database: The database, if not the user's default.
        ///   - schema: The schema of the store's tables. Default `keel`.
        public init(
            host: String = "127.0.0.1",
            port: Int = 5432,
            username: String,
            password: String? = nil,
            database: String? = nil,
            schema: String = "keel"
        ) {
            self.host = host
            self.port = port
            self.username = username
            self.password = password
            self.database = database
            self.tls = .disable
            self.schema = schema
            self.poolSize = 10
            self.maxBatchEvents = 512
            self.listenerBackoff = .exponential(initial: .milliseconds(50), maximum: .seconds(5))
            self.openTimeout = .seconds(30)
            self.telemetry = nil
            self.logger = nil
        }

        /// The configuration of the client a store makes for itself.
        var clientConfiguration: PostgresClient.Configuration {
            var configuration = PostgresClient.Configuration(
                host: self.host,
                port: self.port,
                username: self.username,
                password: self.password,
                database: self.database,
                tls: self.tls
            )
            configuration.options.maximumConnections = self.poolSize
            return configuration
        }

        /// Checks the invariants documented on each property.
        func validate() throws(EventStoreError) {
            guard PostgresSchema.isValidName(self.schema) else {
                throw EventStoreError(
                    code: .invalidArgument,
                    message: "schema name \"\(self.schema)\" is not a lowercase identifier of at most 48 characters"
                )
            }
            guard self.poolSize >= 1 else {
                throw EventStoreError(code: .invalidArgument, message: "poolSize \(self.poolSize) is below 1")
            }
            guard self.maxBatchEvents >= 1 else {
                throw EventStoreError(
                    code: .invalidArgument,
                    message: "maxBatchEvents \(self.maxBatchEvents) is below 1"
                )
            }
        }
    }
}
