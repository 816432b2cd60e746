import Keel
import KeelCore
import KeelResilience
import KeelTesting
import Testing

@Suite("Resilience pipelines on request routes", .timeLimit(.minutes(2)))
struct ResiliencePolicyTests {
    struct Outage: Error {}

    @Test("a breaker on a route opens after handler failures and then rejects without calling the handler")
    func breakerOnRoute() async throws {
        let calls = HostFixtures.Values<Int>()
        let worker = HostFixtures.Worker { request in
            calls.append(request.value)
            throw Outage()
        }
        let clock = TestClock()
        var breakerConfiguration = CircuitBreaker.Configuration()
        breakerConfiguration.consecutiveFailureThreshold = 3
        breakerConfiguration.failureRateThreshold = nil
        let breaker = CircuitBreaker(name: "worker", configuration: breakerConfiguration, clock: clock)
        var settings = TestHost.defaultConfiguration
        settings.healthCheckTimeout = nil
        try await TestHost.with(services: [worker], configuration: settings, clock: clock) { test in
            await test.host.setPolicy(ResiliencePipeline { breaker }, for: HostFixtures.Work.self)
            for value in 0..<3 {
                let error = try await #require(throws: RequestError.self) {
                    try await test.client.send(HostFixtures.Work(value: value))
                }
                #expect(error.code == .handlerFailed)
                #expect(error.underlying is Outage)
            }
            #expect(breaker.state == .open)
            let rejected = try await #require(throws: RequestError.self) {
                try await test.client.send(HostFixtures.Work(value: 99))
            }
            #expect(rejected.code == .circuitOpen)
            #expect(rejected.underlying is CircuitBreakerError)
            #expect(calls.all == [0, 1, 2], "the open breaker did not call the handler")
        }
    }

    @Test("strategies on a route classify the handler's own error; the caller still gets handlerFailed")
    func strategiesSeeTheHandlersError() async throws {
        struct Harmless: Error {}
        let worker = HostFixtures.Worker { request in
            if request.value < 2 { throw Outage() }
            throw Harmless()
        }
        let clock = TestClock()
        var settings = TestHost.defaultConfiguration
        settings.healthCheckTimeout = nil
        try await TestHost.with(services: [worker], configuration: settings, clock: clock) { test in
            var configuration = CircuitBreaker.Configuration()
            configuration.failureRateThreshold = nil
            configuration.consecutiveFailureThreshold = 2
            configuration.errorClassification = .lists(record: [Outage.self])
            let breaker = CircuitBreaker(name: "typed", configuration: configuration, clock: clock)
            await test.host.setPolicy(ResiliencePipeline { breaker }, for: HostFixtures.Work.self)
            // An error the breaker does not record: a success for it, and the caller sees it as is.
            let harmless = try await #require(throws: RequestError.self) {
                try await test.client.send(HostFixtures.Work(value: 5))
            }
            #expect(harmless.code == .handlerFailed)
            #expect(harmless.underlying is Harmless)
            for value in 0..<2 {
                let error = try await #require(throws: RequestError.self) {
                    try await test.client.send(HostFixtures.Work(value: value))
                }
                #expect(error.code == .handlerFailed)
                #expect(error.underlying is Outage)
                #expect(error.service == "worker")
            }
            #expect(breaker.state == .open, "two recorded Outage failures in a row")
        }
    }

    @Test("calls cut by their deadline count as failures of a breaker on the route, and open it")
    func deadlineCutsOpenTheBreaker() async throws {
        let gate = HostFixtures.Gate()
        let worker = HostFixtures.Worker { _ in try await gate.wait() }
        let clock = TestClock()
        var settings = TestHost.defaultConfiguration
        settings.healthCheckTimeout = nil
        try await TestHost.with(services: [worker], configuration: settings, clock: clock) { test in
            var configuration = CircuitBreaker.Configuration()
            configuration.failureRateThreshold = nil
            configuration.consecutiveFailureThreshold = 2
            let breaker = CircuitBreaker(name: "slow", configuration: configuration, clock: clock)
            await test.host.setPolicy(ResiliencePipeline { breaker }, for: HostFixtures.Work.self)
            for value in 0..<2 {
                async let outcome: RequestError? = {
                    do throws(RequestError) {
                        _ = try await test.client.send(HostFixtures.Work(value: value), timeout: .milliseconds(50))
                        return nil
                    } catch {
                        return error
                    }
                }()
                await clock.waitForSleepers(count: 1)
                clock.advance(by: .milliseconds(50))
                let error = try #require(await outcome)
                #expect(error.code == .deadlineExceeded)
            }
            #expect(breaker.state == .open, "two attempts cut by their deadlines")
            gate.open()
        }
    }

    @Test("a full bulkhead and a rate limit on a route reach the caller with codes of their own")
    func bulkheadAndRateLimitCodes() async throws {
        let gate = HostFixtures.Gate()
        let worker = HostFixtures.Worker { request in
            if request.value == 0 { try await gate.wait() }
        }
        let clock = TestClock()
        var settings = TestHost.defaultConfiguration
        settings.healthCheckTimeout = nil
        try await TestHost.with(services: [worker], configuration: settings, clock: clock) { test in
            let bulkhead = Bulkhead(name: "one", configuration: .init(maxConcurrent: 1, maxQueued: 0, maxWait: nil))
            await test.host.setPolicy(ResiliencePipeline { bulkhead }, for: HostFixtures.Work.self)
            async let held: Void = { _ = try? await test.client.send(HostFixtures.Work(value: 0)) }()
            while bulkhead.metrics.inFlight < 1 {
                // A spin that outlives its test (its time limit cancels it) would starve the others.
                try Task.checkCancellation()
                await Task.yield()
            }
            let full = try await #require(throws: RequestError.self) {
                try await test.client.send(HostFixtures.Work(value: 1))
            }
            #expect(full.code == .bulkheadFull)
            #expect(full.underlying is BulkheadError)
            gate.open()
            await held

            let limiter = RateLimiter(
                name: "once",
                configuration: .init(
                    algorithm: .tokenBucket(capacity: 1, refillAmount: 1, refillInterval: .seconds(60)),
                    maxWait: .zero
                ),
                clock: clock
            )
            await test.host.setPolicy(ResiliencePipeline { limiter }, for: HostFixtures.Work.self)
            _ = try await test.client.send(HostFixtures.Work(value: 2))
            let limited = try await #require(throws: RequestError.self) {
                try await test.client.send(HostFixtures.Work(value: 3))
            }
            #expect(limited.code == .rateLimited)
            #expect(limited.underlying is RateLimiterError)
        }
    }

    @Test("a timeout in a route's pipeline reaches the caller as deadlineExceeded with the timeout as cause")
    func timeoutOnRoute() async throws {
        let gate = HostFixtures.Gate()
        let worker = HostFixtures.Worker { _ in try await gate.wait() }
        let clock = TestClock()
        var settings = TestHost.defaultConfiguration
        settings.healthCheckTimeout = nil
        try await TestHost.with(services: [worker], configuration: settings, clock: clock) { test in
            let timeout = Timeout(duration: .milliseconds(50), clock: clock, random: RandomSource(seed: 3))
            await test.host.setPolicy(ResiliencePipeline { timeout }, for: HostFixtures.Work.self)
            async let outcome: RequestError? = {
                do throws(RequestError) {
                    _ = try await test.client.send(HostFixtures.Work(value: 1))
                    return nil
                } catch {
                    return error
                }
            }()
            await clock.waitForSleepers(count: 1)
            clock.advance(by: .milliseconds(50))
            let error = try #require(await outcome)
            #expect(error.code == .deadlineExceeded)
            #expect(error.underlying is TimeoutError)
        }
    }

    struct Ping: Event {
        static let topic = "resilience.ping"
        var number: Int
    }

    @Test("a subscription's pipeline guards its handler: an open breaker dead-letters without calling it")
    func pipelineOnSubscription() async throws {
        let handled = HostFixtures.Values<Int>()
        var breakerConfiguration = CircuitBreaker.Configuration()
        breakerConfiguration.consecutiveFailureThreshold = 1
        breakerConfiguration.failureRateThreshold = nil
        let clock = TestClock()
        let breaker = CircuitBreaker(name: "ping-handler", configuration: breakerConfiguration, clock: clock)
        try await TestHost.with(services: [], clock: clock) { test in
            let options = SubscriptionOptions(redelivery: .none, pipeline: ResiliencePipeline { breaker })
            try test.bus.subscribe(to: Ping.self, options: options) { event, _ in
                handled.append(event.number)
                throw Outage()
            }
            try await test.bus.publish(Ping(number: 1))
            await test.host.waitUntilIdle()
            try await test.bus.publish(Ping(number: 2))
            await test.host.waitUntilIdle()
            #expect(handled.all == [1], "the open breaker kept the second event from the handler")
            let letters = test.bus.deadLetters
            #expect(letters.count == 2)
            #expect(letters.first?.error is Outage)
            #expect(letters.last?.error is CircuitBreakerError)
        }
    }

    @Test("strategies run outermost first, each around the rest of the pipeline")
    func pipelineOrder() async throws {
        let log = HostFixtures.Values<String>()
        struct Tracing: ResilienceStrategy {
            let name: String
            let log: HostFixtures.Values<String>
            func execute<T: Sendable>(_ operation: @escaping @Sendable () async throws -> T) async throws -> T {
                self.log.append("enter \(self.name)")
                defer { self.log.append("leave \(self.name)") }
                return try await operation()
            }
        }
        let includeInner = true
        let pipeline = ResiliencePipeline {
            Tracing(name: "outer", log: log)
            if includeInner {
                Tracing(name: "inner", log: log)
            }
        }
        let value = try await pipeline.execute {
            log.append("call")
            return 7
        }
        #expect(value == 7)
        #expect(log.all == ["enter outer", "enter inner", "call", "leave inner", "leave outer"])
        #expect(try await ResiliencePipeline([]).execute { 1 } == 1)
    }
}
