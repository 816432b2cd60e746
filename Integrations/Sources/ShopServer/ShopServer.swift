import Hummingbird
import Keel
import KeelCore
import KeelEventSourcing
import KeelGRPC
import KeelPostgres
import KeelSwiftServer
import Logging
import Prometheus
import ServiceLifecycle
import ShopServices
import Tracing

/// The shop's seven Keel services behind a Hummingbird HTTP API, in one `ServiceGroup`.
///
/// ```swift
/// var configuration = ShopServer.Configuration()
/// configuration.port = 8080
/// let server = try await ShopServer(configuration: configuration, logger: Logger(label: "shop-server"))
/// try await server.run()  // until SIGTERM or SIGINT
/// ```
///
/// **Split across processes.** With ``Configuration/services`` the server runs part of the shop;
/// every other shop service is a `RemoteService` stand-in for the one at ``Configuration/peer``,
/// and ``Configuration/grpcPort`` serves this process's services to the other process. Both
/// processes share one PostgreSQL schema (``Configuration/Storage/postgres(_:)``): the same
/// service code runs either way.
///
/// The group runs three services: the Hummingbird `Application`, a `HostService` for the Keel
/// host, and the request drain (and a fourth, the gRPC server, when ``Configuration/grpcPort`` is
/// set). A graceful shutdown (a signal in
/// ``Configuration/gracefulShutdownSignals``, or ``triggerGracefulShutdown()``) takes them down in
/// reverse: first the drain closes the API to new requests (503 with `Retry-After`, and `/ready`
/// answers 503) and waits for the accepted ones to finish; then the host drains its own in-flight
/// work and stops the services; last the HTTP server stops listening. No accepted request is cut
/// short by the shutdown, within ``Configuration/drainTimeout``.
///
/// Keel's metrics reach ``metrics`` (served at `/metrics`) through ``/KeelSwiftServer/SwiftServerTelemetry``
/// with a `PrometheusMetricsFactory` of this server's own: nothing is bootstrapped process-wide, so
/// several servers can run in one process (tests do). The same telemetry sends Keel's log records
/// to the server's logger and every request's spans (the HTTP span and Keel's under it) to the
/// tracer given to ``init(configuration:logger:tracer:)``.
///
/// **Concurrency.** Every stored property is `Sendable` and immutable; ``run()`` may be called
/// once, the other methods from any task at any time.
public final class ShopServer: Sendable {
    /// The configuration the server was made with.
    public let configuration: Configuration
    /// The Keel host of the shop's services; ``run()`` starts and stops it.
    public let host: ServiceHost
    /// The payment gateway the payment service charges through: make it misbehave to see the
    /// payments circuit breaker open (`503` with `Retry-After`).
    public let gateway: PaymentGateway
    /// The resilience strategies around every charge: the breaker and the bulkhead.
    public let payments: PaymentResilience
    /// The Prometheus registry behind `/metrics`, Keel's metrics included.
    public let metrics: PrometheusCollectorRegistry

    package let gate = DrainGate()
    private let latch = StartupLatch()
    private let group: ServiceGroup
    /// The PostgreSQL stores the server opened, closed when ``run()`` ends.
    private let postgres: (events: PostgresEventStore, state: PostgresStateStore)?
    /// The gRPC server of this process's services, when ``Configuration/grpcPort`` is set.
    private let requestServer: RequestServer?

    /// Builds the server: the host with the shop's services registered, the routes and the group.
    /// Nothing listens and no service starts until ``run()``.
    /// - Parameters:
    ///   - configuration: How to listen, store and shut down; its invariants are checked with
    ///     `precondition`.
    ///   - logger: The server's logger, for the HTTP side and Keel's own log records; its level is
    ///     set to ``Configuration/logLevel``.
    ///   - tracer: The tracer of the requests' spans and Keel's; by default the process's
    ///     bootstrapped one (`InstrumentationSystem.tracer`); `nil` or the no-op tracer records no
    ///     spans.
    /// - Throws: The ``/Keel/HostError`` of a registration that failed (not expected: the services
    ///   are registered once, on a new host); with PostgreSQL storage, the stores' errors when
    ///   they cannot be opened (the server unreachable, a schema newer than this build). Call
    ///   ``run()`` on a server that was made: it closes the stores when it ends.
    public init(
        configuration: Configuration = Configuration(),
        logger: Logger,
        tracer: (any Tracer)? = InstrumentationSystem.tracer
    ) async throws {
        configuration.validate()
        self.configuration = configuration
        var logger = logger
        logger.logLevel = configuration.logLevel

        let metrics = PrometheusCollectorRegistry()
        self.metrics = metrics
        // Keel's own log records (starts, stops, breaker transitions, rejections…) go to the same
        // logger, under Keel's sources (`keel.host`, `keel.breaker`…).
        let telemetry = SwiftServerTelemetry(
            metrics: PrometheusMetricsFactory(registry: metrics),
            tracer: tracer,
            logger: logger
        )
        var hostConfiguration = ServiceHost.Configuration()
        hostConfiguration.shutdownTimeout = configuration.drainTimeout
        let postgres: (events: PostgresEventStore, state: PostgresStateStore)?
        switch configuration.storage {
        case .inMemory:
            hostConfiguration.storage = .inMemory
            postgres = nil
        case .directory(let path):
            hostConfiguration.storage = .directory(path)
            postgres = nil
        case .postgres(let store):
            var store = store
            store.telemetry = telemetry
            let events = try await PostgresEventStore.open(configuration: store)
            let state: PostgresStateStore
            do {
                state = try await PostgresStateStore.open(configuration: store)
            } catch {
                await events.close()
                throw error
            }
            postgres = (events, state)
            hostConfiguration.storage = .stores(
                events: events,
                state: state,
                name: "postgres \(store.host):\(store.port)/\(store.schema)"
            )
        }
        self.postgres = postgres
        let host = ServiceHost(configuration: hostConfiguration, telemetry: telemetry)
        self.host = host
        self.gateway = PaymentGateway(clock: host.clock, random: RandomSource())
        self.payments = PaymentResilience(
            clock: host.clock,
            random: RandomSource(),
            telemetry: telemetry,
            openDuration: configuration.paymentsOpenDuration,
            maxConcurrentCharges: configuration.paymentsConcurrency
        )
        // The services' narration, at debug level, with the trace of the request they work for.
        let narrationLogger = logger
        let narrator = Narrator { service, text in
            guard narrationLogger.logLevel <= .debug else { return }
            var metadata: Logger.Metadata = ["service": "\(service)"]
            if let trace = TraceContext.current {
                metadata["trace_id"] = .stringConvertible(trace.traceID)
                metadata["request_id"] = .string(trace.correlationID)
            }
            narrationLogger.debug("\(text)", metadata: metadata)
        }
        let local = Set(configuration.services ?? ShopAssembly.services)
        do {
            try await ShopAssembly.register(
                on: host,
                gateway: self.gateway,
                payments: self.payments,
                stockPerProduct: configuration.stockPerProduct,
                durable: !configuration.storage.isInMemory,
                only: local,
                narrator: narrator
            )
            if let peer = configuration.peer {
                for service in ShopAssembly.services where !local.contains(service) {
                    try await Self.registerStandIn(for: service, at: peer, on: host)
                }
            }
        } catch {
            // The server is not made, so nothing else would close the stores it opened.
            await postgres?.state.close()
            await postgres?.events.close()
            throw error
        }
        if let grpcPort = configuration.grpcPort {
            self.requestServer = RequestServer(
                host: host,
                configuration: .init(
                    address: ServerAddress(host: configuration.host, port: grpcPort),
                    requests: local.sorted { $0.description < $1.description }.flatMap(ShopAssembly.requests(of:))
                )
            )
        } else {
            self.requestServer = nil
        }

        let router = Router(context: ShopRequestContext.self)
        router.add(middleware: RequestIdentityMiddleware(logger: logger, telemetry: telemetry, random: host.random))
        OperationsRoutes(host: host, gate: self.gate, metrics: metrics).add(to: router)
        let api = router.group().add(middleware: DrainGateMiddleware(gate: self.gate))
        ShopRoutes(
            client: host.client,
            maxBodyBytes: configuration.maxBodyBytes,
            requestTimeout: configuration.requestTimeout
        ).add(to: api)
        if configuration.baselineRoutes {
            BaselineRoutes(maxBodyBytes: configuration.maxBodyBytes).add(to: api)
        }
        let latch = self.latch
        let application = Application(
            router: router,
            configuration: .init(address: .hostname(configuration.host, port: configuration.port)),
            onServerRunning: { channel in latch.listening(on: channel.localAddress?.port ?? configuration.port) },
            logger: logger
        )
        let hostService = HostService(
            host: host,
            drainTimeout: configuration.drainTimeout,
            onRunning: { latch.hostRunning() }
        )
        let drain = RequestDrain(gate: self.gate, timeout: configuration.drainTimeout, logger: logger)
        // Stopped in reverse: the drain, then the gRPC server (the calls in flight finish), then
        // the host.
        var services: [any Service] = [application, hostService]
        if let requestServer = self.requestServer { services.append(GRPCService(server: requestServer)) }
        services.append(drain)
        var groupConfiguration = ServiceGroupConfiguration(
            services: services,
            gracefulShutdownSignals: configuration.gracefulShutdownSignals,
            logger: logger
        )
        // Both drains, the services' stops and the HTTP server's close, with room to spare; past it
        // the group cancels what is left.
        groupConfiguration.maximumGracefulShutdownDuration = .init(configuration.drainTimeout * 2 + .seconds(10))
        self.group = ServiceGroup(configuration: groupConfiguration)
    }

    /// Runs the server until a graceful shutdown has completed, or the task is cancelled.
    ///
    /// Binds the address, starts the host, serves; returns once the group has shut down
    /// gracefully. Call it once.
    /// - Throws: The first error of the group's services: the HTTP server's (such as an address in
    ///   use) or the host's start failure.
    public func run() async throws {
        defer { self.latch.finish() }
        do {
            try await self.group.run()
        } catch {
            await self.closeStores()
            throw error
        }
        await self.closeStores()
    }

    /// Closes the PostgreSQL stores, if the server opened them.
    private func closeStores() async {
        guard let postgres = self.postgres else { return }
        await postgres.state.close()
        await postgres.events.close()
    }

    /// Where this process serves its services' requests over gRPC, once it listens; `nil`
    /// without ``Configuration/grpcPort``.
    /// - Throws: When the gRPC server could not bind, or has stopped.
    public var grpcAddress: ServerAddress? {
        get async throws {
            guard let requestServer = self.requestServer else { return nil }
            return try await requestServer.listeningAddress
        }
    }

    /// Registers a stand-in for the shop service `service`, forwarding its requests to `peer`.
    private static func registerStandIn(
        for service: ServiceName,
        at peer: ServerAddress,
        on host: ServiceHost
    )
        async throws(HostError)
    {
        func register<Name: RemoteServiceName>(_: Name.Type) async throws(HostError) {
            var configuration = RemoteService<Name>.Configuration(
                address: peer,
                requests: ShopAssembly.requests(of: Name.name)
            )
            configuration.errorTypes = ShopAssembly.errorTypes
            try await host.register(RemoteService<Name>(configuration: configuration))
        }
        switch service.description {
        case "user": try await register(RemoteShopService.User.self)
        case "catalog": try await register(RemoteShopService.Catalog.self)
        case "inventory": try await register(RemoteShopService.Inventory.self)
        case "payment": try await register(RemoteShopService.Payment.self)
        case "shipping": try await register(RemoteShopService.Shipping.self)
        case "order": try await register(RemoteShopService.Order.self)
        case "notification": try await register(RemoteShopService.Notification.self)
        default: return
        }
    }

    /// Suspends until the server listens and its host has started.
    /// - Returns: The port it listens on (the one chosen for port 0), or `nil` when ``run()``
    ///   ended first or the calling task was cancelled.
    public func waitUntilRunning() async -> Int? {
        await self.latch.wait()
    }

    /// Starts a graceful shutdown, as SIGTERM does: see the type's discussion for the order.
    /// Returns at once; ``run()`` returns when the shutdown is complete.
    public func triggerGracefulShutdown() async {
        await self.group.triggerGracefulShutdown()
    }
}

/// The names of the shop's services for their stand-ins in another process: one type each, as
/// `RemoteService` wants, with the durable publications the service declares.
enum RemoteShopService {
    enum User: RemoteServiceName {
        static let name: ServiceName = "user"
    }
    enum Catalog: RemoteServiceName {
        static let name: ServiceName = "catalog"
    }
    enum Inventory: RemoteServiceName {
        static let name: ServiceName = "inventory"
    }
    enum Payment: RemoteServiceName {
        static let name: ServiceName = "payment"
        static var publishes: [any DomainEvent.Type] { ShopAssembly.publications(of: Self.name) }
    }
    enum Shipping: RemoteServiceName {
        static let name: ServiceName = "shipping"
        static var publishes: [any DomainEvent.Type] { ShopAssembly.publications(of: Self.name) }
    }
    enum Order: RemoteServiceName {
        static let name: ServiceName = "order"
        static var publishes: [any DomainEvent.Type] { ShopAssembly.publications(of: Self.name) }
    }
    enum Notification: RemoteServiceName {
        static let name: ServiceName = "notification"
    }
}

/// The gRPC server as a service of the group: it serves until the group shuts down gracefully,
/// then lets the calls in flight finish.
struct GRPCService: Service {
    let server: RequestServer

    func run() async throws {
        try await withGracefulShutdownHandler {
            try await self.server.run()
        } onGracefulShutdown: {
            self.server.beginGracefulShutdown()
        }
    }
}

extension ShopServer.Configuration.Storage: CustomStringConvertible {
    /// Whether this is ``inMemory``.
    public var isInMemory: Bool {
        if case .inMemory = self { return true }
        return false
    }

    /// `memory`, the directory, or the PostgreSQL server, database and schema (no password).
    public var description: String {
        switch self {
        case .inMemory: "memory"
        case .directory(let path): path
        case .postgres(let store):
            "postgres://\(store.username)@\(store.host):\(store.port)/\(store.database ?? "")?schema=\(store.schema)"
        }
    }
}
