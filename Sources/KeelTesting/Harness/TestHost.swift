import Keel
import KeelCore

/// A host set up for a test: a ``TestClock``, an ``/KeelCore/InMemoryRecorder``, a seeded random
/// source, an ``EventRecorder`` on every topic and a ``FaultInjector``, started with the services
/// given and always shut down at the end.
///
/// ```swift
/// @Test func placingAnOrderPublishesIt() async throws {
///     try await TestHost.with(UserService(), OrderService()) { test in
///         _ = try await test.client.send(PlaceOrder(user: 1))
///         let events = try await test.events.waitFor(count: 1, of: OrderCreated.self,
///                                                   timeout: .seconds(1), clock: test.clock)
///         #expect(events.count == 1)
///     }
/// }
/// ```
///
/// Works the same from an `XCTestCase` async test. Periodic health checks are off unless the
/// configuration turns them on, so the clock has no sleepers but those of the services under test.
///
/// When `body` returns, the host shuts down gracefully: it waits for in-flight requests and event
/// handlers, so leave none waiting on the test clock (or advance it). When `body` throws, the host
/// stops at once, cancelling handlers still running.
public struct TestHost: Sendable {
    /// The host.
    public let host: ServiceHost
    /// Its clock.
    public let clock: TestClock
    /// Its telemetry, timed by ``clock``.
    public let telemetry: InMemoryRecorder
    /// Every event published on its bus, whatever faults are injected into deliveries.
    public let events: EventRecorder
    /// The host's fault injector, with no rules at first: the test adds rules to make routes
    /// fail, slow down or time out, and the bus drop, delay or duplicate deliveries, seeded from
    /// the host's seed. It is the configuration's ``Keel/ServiceHost/Configuration/faults`` if
    /// the configuration given had one, otherwise a new one.
    public let faults: FaultInjector

    /// The host's client for calls from outside the services.
    public var client: RequestClient { self.host.client }
    /// The host's bus.
    public var bus: EventBus { self.host.bus }

    /// The default test configuration: periodic health checks off, services' storage in memory.
    public static var defaultConfiguration: ServiceHost.Configuration {
        var configuration = ServiceHost.Configuration()
        configuration.healthCheckInterval = nil
        configuration.storage = .inMemory
        return configuration
    }

    /// Registers `services`, starts the host, runs `body`, and shuts the host down however `body`
    /// ends.
    /// - Parameters:
    ///   - services: The service instances, registered in this order.
    ///   - configuration: The host's settings; periodic health checks off by default.
    ///   - clock: The clock; a new one at zero by default.
    ///   - seed: The seed of the host's random source.
    ///   - register: Registers more services after `services`, such as those a factory builds
    ///     (``/Keel/ServiceHost/register(_:loadBalancing:_:)``); nothing by default.
    ///   - body: The test.
    /// - Returns: What `body` returns.
    /// - Throws: What registration, start or `body` throws.
    public static func with<T: Sendable>(
        _ services: any ServiceActor...,
        configuration: ServiceHost.Configuration = TestHost.defaultConfiguration,
        clock: TestClock = TestClock(),
        seed: UInt64 = 1,
        register: (ServiceHost) async throws -> Void = { _ in },
        _ body: (TestHost) async throws -> T
    ) async throws -> T {
        try await self.with(
            services: services,
            configuration: configuration,
            clock: clock,
            seed: seed,
            register: register,
            body
        )
    }

    /// Registers `services`, starts the host, runs `body`, and shuts the host down however `body`
    /// ends.
    /// - Parameters:
    ///   - services: The service instances, registered in this order.
    ///   - configuration: The host's settings; periodic health checks off by default.
    ///   - clock: The clock; a new one at zero by default.
    ///   - seed: The seed of the host's random source.
    ///   - register: Registers more services after `services`, such as those a factory builds
    ///     (``/Keel/ServiceHost/register(_:loadBalancing:_:)``); nothing by default.
    ///   - body: The test.
    /// - Returns: What `body` returns.
    /// - Throws: What registration, start or `body` throws.
    public static func with<T: Sendable>(
        services: [any ServiceActor],
        configuration: ServiceHost.Configuration = TestHost.defaultConfiguration,
        clock: TestClock = TestClock(),
        seed: UInt64 = 1,
        register: (ServiceHost) async throws -> Void = { _ in },
        _ body: (TestHost) async throws -> T
    ) async throws -> T {
        let telemetry = InMemoryRecorder(clock: clock)
        var configuration = configuration
        let faults = configuration.faults ?? FaultInjector()
        configuration.faults = faults
        let host = ServiceHost(
            configuration: configuration,
            clock: clock,
            telemetry: telemetry,
            random: RandomSource(seed: seed)
        )
        do {
            for service in services {
                try await host.register(service)
            }
            try await register(host)
        } catch {
            await host.shutdown()
            throw error
        }
        let events = try EventRecorder(bus: host.bus)
        if let recorder = events.subscriptionID { faults.exempt(recorder) }
        do {
            try await host.start()
        } catch {
            await events.cancel()
            await host.shutdown()
            throw error
        }
        let test = TestHost(host: host, clock: clock, telemetry: telemetry, events: events, faults: faults)
        do {
            let result = try await body(test)
            await host.shutdown()
            return result
        } catch {
            // The test failed: stop at once rather than drain, since work left in flight may wait
            // on the test clock, which nobody will advance any more.
            await host.shutdown(drainTimeout: .zero)
            throw error
        }
    }
}
