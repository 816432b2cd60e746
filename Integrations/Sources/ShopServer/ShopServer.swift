import Hummingbird
import Keel
import KeelCore
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
/// The group runs three services: the Hummingbird `Application`, a `HostService` for the Keel
/// host, and the request drain. A graceful shutdown (a signal in
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
    ///   are registered once, on a new host).
    public init(
        configuration: Configuration = Configuration(),
        logger: Logger,
        tracer: (any Tracer)? = InstrumentationSystem.tracer
    ) async throws(HostError) {
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
        switch configuration.storage {
        case .inMemory: hostConfiguration.storage = .inMemory
        case .directory(let path): hostConfiguration.storage = .directory(path)
        }
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
        try await ShopAssembly.register(
            on: host,
            gateway: self.gateway,
            payments: self.payments,
            stockPerProduct: configuration.stockPerProduct,
            narrator: narrator
        )

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
        var groupConfiguration = ServiceGroupConfiguration(
            services: [application, hostService, drain],
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
        try await self.group.run()
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
