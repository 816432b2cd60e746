import Foundation
import KeelCore
import KeelEventSourcing
import KeelResilience
import KeelTestSupport
import KeelTesting
import Synchronization
import Testing

@testable import Keel

/// After `shutdown()` returns or a failed `start()` throws, nothing of the host is left: no task
/// (the host itself is freed, durable subscriptions' runners have ended), no store (its directory
/// lock is released, so a new host opens it), no timer of a policy it was given.
@Suite("Host teardown", .timeLimit(.minutes(2)))
struct HostTeardownTests {
    struct StartRefused: Error {}

    struct Noted: DomainEvent, Equatable {
        static let eventType = "note.noted"
        var text: String
    }

    /// Opens its storage and a durable subscription in `start`, then throws when told to.
    actor Subscriber: ServiceActor {
        static let name: ServiceName = "subscriber"
        static let publishes: [any DomainEvent.Type] = [Noted.self]
        let refusesToStart: Bool
        let onExecutor: MarkedExecutor?
        private(set) var runner: ProjectionRunner?
        private(set) var isStopped = false
        private(set) var deliveredOnExecutor: [Bool] = []

        init(refusesToStart: Bool = false, onExecutor: MarkedExecutor? = nil) {
            self.refusesToStart = refusesToStart
            self.onExecutor = onExecutor
        }

        func start(_ environment: ServiceEnvironment) async throws {
            let executor = self.onExecutor
            let subscription = try await environment.subscribeDurably(to: Noted.self, name: "notes") {
                [self] _, _ in
                await self.delivered(onExecutor: executor?.isCurrent ?? false)
            }
            self.runner = subscription.runner
            _ = try await environment.publishDurably(Noted(text: "started"))
            if self.refusesToStart { throw StartRefused() }
        }

        func stop() async throws {
            self.isStopped = true
        }

        private func delivered(onExecutor: Bool) {
            self.deliveredOnExecutor.append(onExecutor)
        }
    }

    /// A latch that ignores cancellation: what a `health()` stuck on a dependency looks like.
    final class Latch: Sendable {
        private let state = Lock<(isOpen: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

        func wait() async {
            await withCheckedContinuation { continuation in
                let isOpen = self.state.withLock { state in
                    if !state.isOpen { state.waiters.append(continuation) }
                    return state.isOpen
                }
                if isOpen { continuation.resume() }
            }
        }

        func open() {
            let waiters = self.state.withLock { state in
                state.isOpen = true
                defer { state.waiters = [] }
                return state.waiters
            }
            for waiter in waiters { waiter.resume() }
        }
    }

    /// Its `health()` waits, ignoring cancellation, until `stop()` (when told to) or the test lets
    /// it answer.
    actor Sluggish: ServiceActor {
        static let name: ServiceName = "sluggish"
        let answer = Latch()
        let answersOnStop: Bool
        private(set) var healthChecks = 0

        init(answersOnStop: Bool) {
            self.answersOnStop = answersOnStop
        }

        func stop() async throws {
            if self.answersOnStop { self.answer.open() }
        }

        func health() async -> HealthReport {
            self.healthChecks += 1
            await self.answer.wait()
            return .healthy
        }
    }

    /// How a host's life ends.
    enum Exit: String, CaseIterable, CustomTestStringConvertible {
        case shutdown
        case failedStart
        case cancelledRun
        var testDescription: String { self.rawValue }
    }

    static func directory() -> String {
        FileManager.default.temporaryDirectory.path + "/keel-teardown-\(UInt64.random(in: 0...UInt64.max))"
    }

    static func configuration(directory: String) -> ServiceHost.Configuration {
        var configuration = ServiceHost.Configuration()
        configuration.healthCheckInterval = nil
        configuration.storage = .directory(directory)
        return configuration
    }

    @Test("nothing of the host is left after it ends", arguments: Exit.allCases)
    func nothingLeft(exit: Exit) async throws {
        let directory = Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let subscriber = Subscriber(refusesToStart: exit == .failedStart)
        var breakerConfiguration = CircuitBreaker.Configuration()
        breakerConfiguration.halfOpenTransition = .automatic
        let breaker = CircuitBreaker(name: "teardown", configuration: breakerConfiguration)
        let events = breaker.events()
        weak var released: ServiceHost?
        do {
            let host = ServiceHost(configuration: Self.configuration(directory: directory))
            released = host
            try await host.register(subscriber)
            await host.setPolicy(ResiliencePipeline { breaker }, forService: Subscriber.name)
            await breaker.open(for: .seconds(30))  // its timer to half-open is now running

            switch exit {
            case .shutdown:
                try await host.start()
                await host.shutdown()
            case .failedStart:
                await #expect(throws: HostError.self) { try await host.start() }
            case .cancelledRun:
                let run = Task { try await host.run() }
                while await host.state != .running {
                    // A spin that outlives its test (its time limit cancels it) would starve the others.
                    try Task.checkCancellation()
                    await Task.yield()
                }
                run.cancel()
                try await run.value
            }
            #expect(await host.state == .stopped)
            #expect(await host.stopFailures.isEmpty)
        }

        // The service was stopped, even when its own start threw.
        #expect(await subscriber.isStopped)
        // Its durable subscription's runner has ended.
        let runner = try #require(await subscriber.runner)
        #expect(await runner.running == false)
        // The store is closed: no file of it is open, and its lock is free for a new store.
        #expect(OpenDescriptors.paths(under: directory).isEmpty)
        let reopened = try FileEventStore(directory: directory)
        await reopened.close()
        // The breaker's timer and event stream have ended: the host shut its policy down.
        var kinds: [CircuitBreakerEvent.Kind] = []
        for await event in events { kinds.append(event.kind) }
        #expect(kinds.contains(.stateTransition))
        // No task of the host holds it any longer.
        for _ in 0..<1_000 where released != nil { await Task.yield() }
        #expect(released == nil, "a task of the host still holds it")
    }

    @Test("durable subscriptions run on the host's task executor")
    func durableSubscriptionsOnExecutor() async throws {
        let directory = Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let executor = MarkedExecutor()
        var configuration = Self.configuration(directory: directory)
        configuration.executor = executor
        let subscriber = Subscriber(onExecutor: executor)
        let host = ServiceHost(configuration: configuration)
        try await host.register(subscriber)
        try await host.start()
        let runner = try #require(await subscriber.runner)
        try await runner.waitUntilCaughtUp(to: 0)
        if OpenDescriptors.isAvailable {
            #expect(!OpenDescriptors.paths(under: directory).isEmpty, "the check sees the running store's files")
        }
        await host.shutdown()
        #expect(OpenDescriptors.paths(under: directory).isEmpty)
        #expect(await subscriber.deliveredOnExecutor == [true])
    }

    /// Starts a host of `sluggish` on `clock` with a 2 s health timeout and no periodic checks:
    /// its first check times out on the test clock, and start returns.
    static func startPastFirstHealthCheck(_ sluggish: Sluggish, clock: TestClock) async throws -> ServiceHost {
        var configuration = ServiceHost.Configuration()
        configuration.healthCheckInterval = nil
        configuration.healthCheckTimeout = .seconds(2)
        configuration.storage = .inMemory
        let host = ServiceHost(configuration: configuration, clock: clock)
        try await host.register(sluggish)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await host.start() }
            await clock.waitForSleepers(count: 1)
            clock.advance(by: .seconds(2))
            try await group.waitForAll()
        }
        return host
    }

    @Test("the first health check is bounded: start returns when health() does not answer")
    func firstHealthCheckBounded() async throws {
        let clock = TestClock()
        let sluggish = Sluggish(answersOnStop: true)
        let host = try await Self.startPastFirstHealthCheck(sluggish, clock: clock)
        #expect(await host.state == .running)
        #expect(host.registry.instances(of: Sluggish.name).allSatisfy { !$0.health.isLive })
        await host.shutdown()
        #expect(await host.stopFailures.isEmpty, "the check answered when the service stopped")
    }

    @Test("a round stops waiting at its timeout, does not ask a stuck instance again, and shutdown meets its deadline")
    func shutdownWithStuckHealthCheck() async throws {
        let clock = TestClock()
        let sluggish = Sluggish(answersOnStop: false)
        let host = try await Self.startPastFirstHealthCheck(sluggish, clock: clock)
        // A later round waits on the same unanswered check, up to its timeout.
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await host.checkHealth() }
            await clock.waitForSleepers(count: 1)
            clock.advance(by: .seconds(2))
            await group.waitForAll()
        }
        #expect(await sluggish.healthChecks == 1, "a stuck instance is not asked again")
        #expect(host.registry.instances(of: Sluggish.name).allSatisfy { !$0.health.isLive })

        // Shutdown stops the service, then waits for the check up to its timeout, and goes on.
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await host.shutdown(drainTimeout: .zero) }
            await clock.waitForSleepers(count: 1)
            clock.advance(by: .seconds(2))
            await group.waitForAll()
        }
        #expect(await host.state == .stopped)
        let failures = await host.stopFailures
        #expect(failures.map(\.code) == [.stopFailed])
        #expect(failures.first?.services == [Sluggish.name])
        sluggish.answer.open()  // lets the abandoned check end
    }
}
