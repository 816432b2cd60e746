import Foundation
import Keel
import KeelGRPC
import KeelPostgres
import Logging
import ShopServices
import UnixSignals

extension ShopServer {
    /// How `shop-server` listens, stores and shuts down.
    ///
    /// Every setting has a default; ``init(arguments:environment:)`` reads them from command-line
    /// flags, then environment variables, then the defaults, in that order of precedence.
    ///
    /// | flag | environment | default |
    /// | --- | --- | --- |
    /// | `--host` | `SHOP_HOST` | `127.0.0.1` |
    /// | `--port` | `SHOP_PORT` | `8080` (`0`: any free port) |
    /// | `--max-body-bytes` | `SHOP_MAX_BODY_BYTES` | `65536` |
    /// | `--storage` | `SHOP_STORAGE` | `memory` (or a directory, or `postgres://user@host:port/database?schema=name`) |
    /// | `--services` | `SHOP_SERVICES` | all seven (or a comma-separated list) |
    /// | `--peer` | `SHOP_PEER` | none (`host:port` of the process that runs the other services) |
    /// | `--grpc-port` | `SHOP_GRPC_PORT` | none (`0`: any free port) |
    /// | `--drain-timeout-ms` | `SHOP_DRAIN_TIMEOUT_MS` | `10000` |
    /// | `--request-timeout-ms` | `SHOP_REQUEST_TIMEOUT_MS` | `5000` |
    /// | `--stock` | `SHOP_STOCK` | the walk-through's small stock |
    /// | `--payments-concurrency` | `SHOP_PAYMENTS_CONCURRENCY` | `2` |
    /// | `--baseline` | `SHOP_BASELINE=1` | off |
    /// | `--log-level` | `SHOP_LOG_LEVEL` | `info` |
    public struct Configuration: Sendable {
        /// Where services' storage lives.
        public enum Storage: Sendable {
            /// In memory: every start begins with the three founding customers.
            case inMemory
            /// In the host's file stores under this directory: customers survive restarts.
            case directory(String)
            /// In a PostgreSQL schema that other processes may share: `PostgresEventStore` and
            /// `PostgresStateStore`, opened when the server is made.
            case postgres(PostgresEventStore.Configuration)
        }

        /// The address to bind; loopback by default. Anything else exposes the shop to the network.
        public var host = "127.0.0.1"
        /// The TCP port; `0` binds any free port (tests), which ``ShopServer/waitUntilRunning()``
        /// reports.
        public var port = 8080
        /// The largest request body accepted, in bytes; a larger one is answered with 413. At least 1.
        public var maxBodyBytes = 64 * 1024
        /// Where the services' storage lives. Anywhere but in memory, the inventory's reservations,
        /// the payment receipts and the orders are kept there too (the shop's `durable` option),
        /// so what the shop acknowledged survives a restart.
        public var storage = Storage.inMemory
        /// The shop's services this process runs; `nil` runs all seven. The others live in the
        /// process at ``peer``.
        public var services: [ServiceName]?
        /// Where the process that runs the other services serves their requests over gRPC: each
        /// shop service this process does not run is registered as a stand-in for the one there.
        public var peer: ServerAddress?
        /// The port on ``host`` where this process serves its services' requests to other
        /// processes over gRPC; `nil` serves none.
        public var grpcPort: Int?
        /// How long a graceful shutdown waits for accepted HTTP requests, and then again for Keel's
        /// in-flight work, before it stops the services anyway. Not negative.
        public var drainTimeout = Duration.seconds(10)
        /// How long one HTTP request may take inside Keel (a read-your-writes wait included) before
        /// it is answered with 504. Positive.
        public var requestTimeout = Duration.seconds(5)
        /// Units of every product at start; `nil` keeps the walk-through's small stock (5 keyboards,
        /// 10 mice, 1 monitor, 40 cables), which a load test sells out in milliseconds.
        public var stockPerProduct: Int?
        /// How long the payments circuit breaker stays open before it lets probes through.
        public var paymentsOpenDuration = Duration.milliseconds(150)
        /// How many charges the payments bulkhead lets at the gateway at once (the walk-through's
        /// 2, with 1 more waiting; a larger value lets as many wait). Orders beyond it are answered
        /// 503 `payments_busy`. At least 1.
        public var paymentsConcurrency = 2
        /// Whether to serve the baseline routes (`/baseline/...`): the same JSON without Keel, for
        /// the load check's comparison.
        public var baselineRoutes = false
        /// The signals that start a graceful shutdown; tests that run servers inside their own
        /// process pass `[]` and call ``ShopServer/triggerGracefulShutdown()``.
        public var gracefulShutdownSignals: [UnixSignal] = [.sigterm, .sigint]
        /// The level of the server's own log lines (one per request at `info`); the services'
        /// narration is logged at `debug`.
        public var logLevel = Logger.Level.info

        /// The default configuration.
        public init() {}

        /// Reads the configuration from command-line flags and environment variables.
        ///
        /// Flags take `--name value` or `--name=value`; `--baseline` takes no value.
        /// - Parameters:
        ///   - arguments: The arguments after the program's name.
        ///   - environment: The environment variables.
        /// - Throws: ``ConfigurationError`` naming an unknown flag, a missing value or one that does
        ///   not parse.
        public init(arguments: [String], environment: [String: String]) throws(ConfigurationError) {
            var values: [String: String] = [:]
            let environmentNames = [
                "host": "SHOP_HOST", "port": "SHOP_PORT", "max-body-bytes": "SHOP_MAX_BODY_BYTES",
                "storage": "SHOP_STORAGE", "drain-timeout-ms": "SHOP_DRAIN_TIMEOUT_MS",
                "request-timeout-ms": "SHOP_REQUEST_TIMEOUT_MS", "stock": "SHOP_STOCK",
                "baseline": "SHOP_BASELINE", "log-level": "SHOP_LOG_LEVEL",
                "payments-concurrency": "SHOP_PAYMENTS_CONCURRENCY", "services": "SHOP_SERVICES",
                "peer": "SHOP_PEER", "grpc-port": "SHOP_GRPC_PORT",
            ]
            for (flag, variable) in environmentNames {
                if let value = environment[variable] { values[flag] = value }
            }
            var remaining = arguments[...]
            while let argument = remaining.popFirst() {
                guard argument.hasPrefix("--") else { throw ConfigurationError("unexpected argument \(argument)") }
                var name = String(argument.dropFirst(2))
                var value: String?
                if let equals = name.firstIndex(of: "=") {
                    value = String(name[name.index(after: equals)...])
                    name = String(name[..<equals])
                }
                guard environmentNames[name] != nil else { throw ConfigurationError("unknown flag --\(name)") }
                if name == "baseline" {
                    values[name] = value ?? "1"
                    continue
                }
                guard let given = value ?? remaining.popFirst() else {
                    throw ConfigurationError("--\(name) needs a value")
                }
                values[name] = given
            }

            self.init()
            if let host = values["host"] { self.host = host }
            if let port = values["port"] {
                guard let number = Int(port), (0...65535).contains(number) else {
                    throw ConfigurationError("--port must be 0...65535, not \(port)")
                }
                self.port = number
            }
            if let bytes = values["max-body-bytes"] {
                guard let number = Int(bytes), number >= 1 else {
                    throw ConfigurationError("--max-body-bytes must be a positive integer, not \(bytes)")
                }
                self.maxBodyBytes = number
            }
            if let storage = values["storage"] {
                if storage.hasPrefix("postgres://") {
                    self.storage = .postgres(try Self.postgres(storage))
                } else {
                    self.storage = storage == "memory" ? .inMemory : .directory(storage)
                }
            }
            if let services = values["services"] {
                let names = services.split(separator: ",").map { ServiceName(String($0)) }
                for name in names where !ShopAssembly.services.contains(name) {
                    throw ConfigurationError(
                        "--services: the shop has no service \(name) (it has \(ShopAssembly.services.map(\.description).joined(separator: ", ")))"
                    )
                }
                guard !names.isEmpty else { throw ConfigurationError("--services names no service") }
                self.services = names
            }
            if let peer = values["peer"] {
                guard let colon = peer.lastIndex(of: ":"), let port = Int(peer[peer.index(after: colon)...]),
                    (1...65535).contains(port), colon > peer.startIndex
                else {
                    throw ConfigurationError("--peer must be host:port, not \(peer)")
                }
                self.peer = ServerAddress(host: String(peer[..<colon]), port: port)
            }
            if let grpc = values["grpc-port"] {
                guard let number = Int(grpc), (0...65535).contains(number) else {
                    throw ConfigurationError("--grpc-port must be 0...65535, not \(grpc)")
                }
                self.grpcPort = number
            }
            if let drain = values["drain-timeout-ms"] {
                guard let number = Int(drain), number >= 0 else {
                    throw ConfigurationError("--drain-timeout-ms must be 0 or more, not \(drain)")
                }
                self.drainTimeout = .milliseconds(number)
            }
            if let timeout = values["request-timeout-ms"] {
                guard let number = Int(timeout), number >= 1 else {
                    throw ConfigurationError("--request-timeout-ms must be positive, not \(timeout)")
                }
                self.requestTimeout = .milliseconds(number)
            }
            if let stock = values["stock"] {
                guard let number = Int(stock), number >= 0 else {
                    throw ConfigurationError("--stock must be 0 or more, not \(stock)")
                }
                self.stockPerProduct = number
            }
            if let concurrency = values["payments-concurrency"] {
                guard let number = Int(concurrency), number >= 1 else {
                    throw ConfigurationError("--payments-concurrency must be a positive integer, not \(concurrency)")
                }
                self.paymentsConcurrency = number
            }
            if let baseline = values["baseline"] {
                self.baselineRoutes = !["0", "false", "no", ""].contains(baseline.lowercased())
            }
            if let level = values["log-level"] {
                guard let parsed = Logger.Level(rawValue: level) else {
                    throw ConfigurationError(
                        "--log-level must be trace, debug, info, notice, warning, error or critical"
                    )
                }
                self.logLevel = parsed
            }
        }

        /// `postgres://user[:password]@host[:port]/database[?schema=name]` as a store configuration.
        private static func postgres(_ text: String) throws(ConfigurationError) -> PostgresEventStore.Configuration {
            guard let url = URLComponents(string: text), let host = url.host, !host.isEmpty,
                let user = url.user, !user.isEmpty
            else {
                throw ConfigurationError(
                    "--storage must be postgres://user[:password]@host[:port]/database, not \(text)"
                )
            }
            let database = url.path.hasPrefix("/") ? String(url.path.dropFirst()) : url.path
            var configuration = PostgresEventStore.Configuration(
                host: host,
                port: url.port ?? 5432,
                username: user,
                password: url.password,
                database: database.isEmpty ? nil : database
            )
            if let schema = url.queryItems?.first(where: { $0.name == "schema" })?.value {
                configuration.schema = schema
            }
            return configuration
        }

        /// Checks the invariants documented on each setting.
        func validate() {
            precondition((0...65535).contains(self.port), "port must be 0...65535: \(self.port)")
            precondition(self.maxBodyBytes >= 1, "maxBodyBytes must be positive: \(self.maxBodyBytes)")
            precondition(self.drainTimeout >= .zero, "drainTimeout must not be negative: \(self.drainTimeout)")
            precondition(self.requestTimeout > .zero, "requestTimeout must be positive: \(self.requestTimeout)")
            precondition(
                self.paymentsConcurrency >= 1,
                "paymentsConcurrency must be positive: \(self.paymentsConcurrency)"
            )
        }
    }

    /// A command-line flag or an environment variable that ``Configuration/init(arguments:environment:)``
    /// could not use.
    public struct ConfigurationError: Error, Sendable, CustomStringConvertible {
        /// What was wrong, in a sentence.
        public var message: String

        /// Creates an error.
        /// - Parameter message: What was wrong.
        public init(_ message: String) {
            self.message = message
        }

        /// The message.
        public var description: String { self.message }
    }
}
