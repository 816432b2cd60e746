import Keel
import KeelCore
import KeelTesting
import Synchronization
import Testing

/// Services and events shared by the harness tests of this module.
enum HarnessFixtures {
    struct Ping: Event, Hashable {
        static let topic = "ping.sent"
        var number: Int
    }

    struct Pong: Event, Hashable {
        static let topic = "pong.sent"
        var number: Int
    }

    struct Greeted: Event, Hashable {
        static let topic = "greeter.greeted"
        var name: String
    }

    struct StartFailure: Error, Hashable {}
    struct BodyFailure: Error, Hashable {}

    /// What happened to the services, in order.
    final class Log: Sendable {
        private let entries = Lock<[String]>([])

        var values: [String] { self.entries.withLock { $0 } }

        func append(_ entry: String) {
            self.entries.withLock { $0.append(entry) }
        }
    }

    /// A value that a test body hands out, to be inspected after the body has returned.
    final class Box<Value: Sendable>: Sendable {
        private let storage = Lock<Value?>(nil)

        var value: Value? { self.storage.withLock { $0 } }

        func set(_ value: Value) {
            self.storage.withLock { $0 = value }
        }
    }

    /// Greets the world when it starts; logs its start and stop.
    actor Greeter: ServiceActor {
        static let name: ServiceName = "greeter"
        let log: Log

        init(log: Log) {
            self.log = log
        }

        func start(_ environment: ServiceEnvironment) async throws {
            self.log.append("greeter.start")
            try await environment.publish(Greeted(name: "world"))
        }

        func stop() async throws {
            self.log.append("greeter.stop")
        }
    }

    /// Handles every ping by sleeping an hour on the host's clock.
    actor Sleeper: ServiceActor {
        static let name: ServiceName = "sleeper"

        func start(_ environment: ServiceEnvironment) async throws {
            let clock = environment.clock
            try environment.subscribe(to: Ping.self) { _, _ in
                try await clock.sleep(for: .seconds(3600))
            }
        }
    }

    /// Depends on the greeter; refuses to start when told to.
    actor Listener: ServiceActor {
        static let name: ServiceName = "listener"
        static let dependencies: [ServiceName] = ["greeter"]
        let log: Log
        let failsToStart: Bool

        init(log: Log, failsToStart: Bool = false) {
            self.log = log
            self.failsToStart = failsToStart
        }

        func start(_ environment: ServiceEnvironment) async throws {
            self.log.append("listener.start")
            if self.failsToStart { throw StartFailure() }
        }

        func stop() async throws {
            self.log.append("listener.stop")
        }
    }
}

@Suite("TestHost", .timeLimit(.minutes(2)))
struct TestHostTests {
    typealias Greeted = HarnessFixtures.Greeted
    typealias Log = HarnessFixtures.Log
    typealias Ping = HarnessFixtures.Ping

    @Test("with starts the services, runs the body, and shuts the host down")
    func startsAndShutsDown() async throws {
        let log = Log()
        let greeter = HarnessFixtures.Greeter(log: log)
        let listener = HarnessFixtures.Listener(log: log)
        let host = try await TestHost.with(greeter, listener) { test in
            #expect(await test.host.state == .running)
            #expect(log.values == ["greeter.start", "listener.start"])
            #expect(test.clock.sleeperCount == 0, "no periodic health checks by default")
            #expect(test.bus === test.host.bus)

            // The recorder saw what the greeter published while it started.
            let greeted = try await test.events.waitFor(
                count: 1,
                of: Greeted.self,
                timeout: .seconds(1),
                clock: test.clock
            )
            #expect(greeted == [Greeted(name: "world")])
            #expect(test.events.records.first?.envelope.source == "greeter")

            // And it records what the test publishes.
            try await test.bus.publish(Ping(number: 1))
            let pings = try await test.events.waitFor(count: 1, of: Ping.self, timeout: .seconds(1), clock: test.clock)
            #expect(pings == [Ping(number: 1)])
            return test.host
        }
        #expect(await host.state == .stopped)
        #expect(log.values == ["greeter.start", "listener.start", "listener.stop", "greeter.stop"])
    }

    @Test("with shuts the host down when the body throws, and rethrows")
    func shutsDownWhenBodyThrows() async throws {
        let log = Log()
        let captured = HarnessFixtures.Box<ServiceHost>()
        await #expect(throws: HarnessFixtures.BodyFailure.self) {
            try await TestHost.with(HarnessFixtures.Greeter(log: log)) { test in
                captured.set(test.host)
                throw HarnessFixtures.BodyFailure()
            }
        }
        let host = try #require(captured.value)
        #expect(await host.state == .stopped)
        #expect(log.values == ["greeter.start", "greeter.stop"])
        let error = await #expect(throws: EventBusError.self) { try await host.bus.publish(Ping(number: 1)) }
        #expect(error?.code == .shuttingDown)
    }

    @Test("with shuts the host down when the body throws while an event handler is still busy")
    func shutsDownWhenBodyThrowsWithBusyHandler() async throws {
        let captured = HarnessFixtures.Box<ServiceHost>()
        await #expect(throws: HarnessFixtures.BodyFailure.self) {
            try await TestHost.with(HarnessFixtures.Sleeper()) { test in
                captured.set(test.host)
                try await test.bus.publish(Ping(number: 1))
                await test.clock.waitForSleepers(count: 1)  // the handler is busy
                throw HarnessFixtures.BodyFailure()
            }
        }
        let host = try #require(captured.value)
        #expect(await host.state == .stopped)
    }

    @Test("with reports a start failure without running the body, after stopping what started")
    func startFailure() async throws {
        let log = Log()
        let ran = HarnessFixtures.Box<Bool>()
        let error = await #expect(throws: HostError.self) {
            try await TestHost.with(
                services: [HarnessFixtures.Greeter(log: log), HarnessFixtures.Listener(log: log, failsToStart: true)]
            ) { _ in
                ran.set(true)
            }
        }
        #expect(error?.code == .startFailed)
        #expect(error?.services == ["listener"])
        #expect(error?.underlying is HarnessFixtures.StartFailure)
        #expect(ran.value == nil, "the body ran although the host did not start")
        // The listener whose start threw is stopped too, before the greeter it came after.
        #expect(log.values == ["greeter.start", "listener.start", "listener.stop", "greeter.stop"])
    }

    @Test("with reports a registration problem")
    func missingDependency() async throws {
        let log = Log()
        let error = await #expect(throws: HostError.self) {
            try await TestHost.with(HarnessFixtures.Listener(log: log)) { _ in }
        }
        #expect(error?.code == .missingDependency)
        #expect(log.values.isEmpty)
    }

    @Test("with uses the clock it is given")
    func usesGivenClock() async throws {
        let clock = TestClock(now: .init(offset: .seconds(100)))
        let now = try await TestHost.with(clock: clock) { test in
            #expect(test.clock === clock)
            return test.clock.now
        }
        #expect(now.offset == .seconds(100))
    }

    @Test("the same seed gives the same ids; another seed, others")
    func seededRandomness() async throws {
        func firstEventID(seed: UInt64) async throws -> EventID {
            try await TestHost.with(seed: seed) { test in
                try await test.bus.publish(Ping(number: 1)).id
            }
        }
        let first = try await firstEventID(seed: 7)
        let again = try await firstEventID(seed: 7)
        let other = try await firstEventID(seed: 8)
        #expect(first == again)
        #expect(first != other)
    }

    @Test("with records spans and metrics in its in-memory recorder")
    func recordsTelemetry() async throws {
        try await TestHost.with { test in
            try await test.bus.publish(Ping(number: 1))
            _ = try await test.events.waitFor(count: 1, of: Ping.self, timeout: .seconds(1), clock: test.clock)
            #expect(test.telemetry.counterTotal("keel.bus.published") == 1)
            #expect(test.telemetry.spans.contains { $0.name == "publish \(Ping.topic)" })
        }
    }
}
