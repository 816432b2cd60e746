import Keel
import KeelCore
import KeelResilience
import KeelTesting
import Synchronization
import Testing

/// Services, requests and events of the fault-injection suites.
enum FaultFixtures {
    struct Charge: ServiceRequest {
        typealias Response = String
        var order: Int
    }

    struct GatewayDown: Error, Hashable {}
    struct CardDeclined: Error, Hashable {}

    struct OrderPlaced: Event, Hashable {
        static let topic = "order.placed"
        var number: Int
    }

    /// A thread-safe list of what handlers saw.
    final class Values<Value: Sendable>: Sendable {
        private let storage = Lock<[Value]>([])

        func append(_ value: Value) {
            self.storage.withLock { $0.append(value) }
        }

        var all: [Value] { self.storage.withLock { $0 } }
    }

    /// Answers every charge with a receipt and records the orders it charged.
    actor Payments: ServiceActor {
        static let name: ServiceName = "payments"
        let charged = Values<Int>()

        nonisolated func registerHandlers(_ handlers: inout RequestHandlers<Payments>) {
            handlers.on(Charge.self) { service, request in
                service.charged.append(request.order)
                return "receipt-\(request.order)"
            }
        }
    }

    /// The outcome of a charge, as a value a test can compare.
    static func outcome(_ test: TestHost, order: Int) async -> String {
        do throws(RequestError) {
            return try await test.client.send(Charge(order: order))
        } catch {
            return "\(error.code)"
        }
    }
}

@Suite("Fault injection into request routes", .timeLimit(.minutes(2)))
struct RequestFaultTests {
    typealias Charge = FaultFixtures.Charge
    typealias GatewayDown = FaultFixtures.GatewayDown

    @Test("an injected failure reaches the caller as a handler failure; removing the rule ends it")
    func failureIsAHandlerFailure() async throws {
        let payments = FaultFixtures.Payments()
        try await TestHost.with(payments) { test in
            let outage = test.faults.inject(.failure(GatewayDown()), into: Charge.self)
            for order in 1...2 {
                let error = try await #require(throws: RequestError.self) {
                    try await test.client.send(Charge(order: order))
                }
                #expect(error.code == .handlerFailed)
                #expect(error.underlying as? GatewayDown == GatewayDown())
                #expect(error.service == "payments")
            }
            #expect(payments.charged.all.isEmpty, "the handler was never called")
            #expect(test.faults.injections(by: outage) == 2)
            let dimensions = [("service", "payments"), ("request", "Charge")]
            #expect(test.telemetry.counter("keel.requests.failed", dimensions: dimensions) == 2)

            test.faults.remove(outage)
            let receipt = try await test.client.send(Charge(order: 3))
            #expect(receipt == "receipt-3")
            #expect(payments.charged.all == [3])
            #expect(test.faults.injections(by: outage) == 2)
            #expect(test.faults.rules.isEmpty)
        }
    }

    @Test("next(n) fails exactly the next n calls; the first rule that fires decides")
    func nextAndRuleOrder() async throws {
        try await TestHost.with(FaultFixtures.Payments()) { test in
            let declined = test.faults.inject(
                .failure(FaultFixtures.CardDeclined()),
                into: Charge.self,
                when: .next(1)
            )
            let down = test.faults.inject(.failure(GatewayDown()), into: Charge.self, when: .next(2))
            var causes: [String] = []
            for order in 1...4 {
                do throws(RequestError) {
                    causes.append(try await test.client.send(Charge(order: order)))
                } catch {
                    switch error.underlying {
                    case is FaultFixtures.CardDeclined: causes.append("declined")
                    case is GatewayDown: causes.append("down")
                    default: causes.append("\(error)")
                    }
                }
            }
            #expect(causes == ["declined", "down", "down", "receipt-4"])
            #expect(test.faults.injections(by: declined) == 1)
            #expect(test.faults.injections(by: down) == 2)
        }
    }

    @Test("a fault is injected per attempt, inside the route's policy: a retry asks again and succeeds")
    func retryOnTheRouteSeesEachAttempt() async throws {
        let payments = FaultFixtures.Payments()
        try await TestHost.with(payments) { test in
            let retry = Retry(configuration: .init(maxAttempts: 3, backoff: .immediate), clock: test.clock)
            await test.host.setPolicy(ResiliencePipeline { retry }, for: Charge.self)
            let flaky = test.faults.inject(.failure(GatewayDown()), into: Charge.self, when: .next(2))

            let receipt = try await test.client.send(Charge(order: 1))
            #expect(receipt == "receipt-1", "the third attempt reached the handler")
            #expect(test.faults.injections(by: flaky) == 2)
            #expect(payments.charged.all == [1])
        }
    }

    @Test("a breaker on the route counts injected failures as the handler's errors and opens")
    func breakerClassifiesInjectedFailures() async throws {
        let payments = FaultFixtures.Payments()
        var settings = TestHost.defaultConfiguration
        settings.healthCheckTimeout = nil
        try await TestHost.with(payments, configuration: settings) { test in
            var configuration = CircuitBreaker.Configuration()
            configuration.failureRateThreshold = nil
            configuration.consecutiveFailureThreshold = 2
            configuration.errorClassification = .lists(record: [GatewayDown.self])
            let breaker = CircuitBreaker(name: "gateway", configuration: configuration, clock: test.clock)
            await test.host.setPolicy(ResiliencePipeline { breaker }, for: Charge.self)

            // An error the breaker does not record leaves it closed.
            let declined = test.faults.inject(.failure(FaultFixtures.CardDeclined()), into: Charge.self, when: .next(3))
            for order in 1...3 { _ = await FaultFixtures.outcome(test, order: order) }
            #expect(breaker.state == .closed)
            test.faults.remove(declined)

            test.faults.inject(.failure(GatewayDown()), into: Charge.self, when: .next(2))
            for order in 4...5 {
                let error = try await #require(throws: RequestError.self) {
                    try await test.client.send(Charge(order: order))
                }
                #expect(error.code == .handlerFailed)
                #expect(error.underlying is GatewayDown)
            }
            #expect(breaker.state == .open)
            let rejected = try await #require(throws: RequestError.self) {
                try await test.client.send(Charge(order: 6))
            }
            #expect(rejected.code == .circuitOpen)
            #expect(payments.charged.all.isEmpty)
        }
    }

    @Test("an injected delay holds the call on the host's clock, then the handler answers")
    func delayWaitsOnTheClock() async throws {
        let payments = FaultFixtures.Payments()
        try await TestHost.with(payments) { test in
            test.faults.inject(.delay(.seconds(3)), into: Charge.self)
            async let receipt = test.client.send(Charge(order: 1))

            await test.clock.waitForSleepers(count: 1)  // the injected delay
            test.clock.advance(by: .seconds(2))
            #expect(test.clock.sleeperCount == 1, "not yet")
            #expect(payments.charged.all.isEmpty)
            test.clock.advance(by: .seconds(1))

            let answered = try await receipt
            #expect(answered == "receipt-1")
            #expect(payments.charged.all == [1])
        }
    }

    @Test("a delay past the caller's deadline yields deadlineExceeded without calling the handler")
    func delayPastTheDeadline() async throws {
        let payments = FaultFixtures.Payments()
        try await TestHost.with(payments) { test in
            test.faults.inject(.delay(.seconds(10)), into: Charge.self)
            async let outcome: RequestError? = {
                do throws(RequestError) {
                    _ = try await test.client.send(Charge(order: 1), timeout: .seconds(1))
                    return nil
                } catch {
                    return error
                }
            }()
            await test.clock.waitForSleepers(count: 2)  // the deadline and the injected delay
            test.clock.advance(by: .seconds(1))
            let error = try #require(await outcome)
            #expect(error.code == .deadlineExceeded)
            #expect(payments.charged.all.isEmpty)
        }
    }

    @Test("a slow failure fails after its delay on the clock")
    func failureAfterADelay() async throws {
        try await TestHost.with(FaultFixtures.Payments()) { test in
            test.faults.inject(.failure(GatewayDown(), after: .seconds(5)), into: Charge.self)
            async let outcome = FaultFixtures.outcome(test, order: 1)
            await test.clock.waitForSleepers(count: 1)
            test.clock.advance(by: .seconds(5))
            #expect(await outcome == "handlerFailed")
        }
    }

    @Test("an injected timeout never answers: the caller's deadline ends it with deadlineExceeded")
    func timeoutHonoursTheDeadline() async throws {
        let payments = FaultFixtures.Payments()
        try await TestHost.with(payments) { test in
            let hang = test.faults.inject(.timeout, into: Charge.self)
            async let outcome: RequestError? = {
                do throws(RequestError) {
                    _ = try await test.client.send(Charge(order: 1), timeout: .seconds(2))
                    return nil
                } catch {
                    return error
                }
            }()
            await test.faults.waitForInjections(count: 1, by: hang)
            await test.clock.waitForSleepers(count: 1)  // the deadline only: the hang is no sleeper
            test.clock.advance(by: .seconds(2))
            let error = try #require(await outcome)
            #expect(error.code == .deadlineExceeded)
            #expect(payments.charged.all.isEmpty)
        }
    }

    @Test("without a deadline, an injected timeout waits until the caller is cancelled")
    func timeoutWithoutADeadlineWaitsForCancellation() async throws {
        try await TestHost.with(FaultFixtures.Payments()) { test in
            let hang = test.faults.inject(.timeout, into: Charge.self)
            let call = Task { await FaultFixtures.outcome(test, order: 1) }
            await test.faults.waitForInjections(count: 1, by: hang)
            #expect(test.clock.sleeperCount == 0)
            call.cancel()
            #expect(await call.value == "cancelled")
        }
    }

    @Test("a Timeout on the route ends an injected timeout; the caller gets deadlineExceeded")
    func timeoutStrategyEndsTheHang() async throws {
        try await TestHost.with(FaultFixtures.Payments()) { test in
            let timeout = Timeout(duration: .seconds(1), clock: test.clock)
            await test.host.setPolicy(ResiliencePipeline { timeout }, for: Charge.self)
            test.faults.inject(.timeout, into: Charge.self)
            async let outcome: RequestError? = {
                do throws(RequestError) {
                    _ = try await test.client.send(Charge(order: 1))
                    return nil
                } catch {
                    return error
                }
            }()
            await test.clock.waitForSleepers(count: 1)  // the Timeout's timer
            test.clock.advance(by: .seconds(1))
            let error = try #require(await outcome)
            #expect(error.code == .deadlineExceeded)
            #expect(error.underlying is TimeoutError)
        }
    }

    @Test("under contention, next(n) fails exactly n of many concurrent calls")
    func rulesUnderContention() async throws {
        try await TestHost.with(FaultFixtures.Payments()) { test in
            let rule = test.faults.inject(.failure(GatewayDown()), into: Charge.self, when: .next(50))
            let failures = await withTaskGroup(of: Bool.self) { group in
                for order in 0..<200 {
                    group.addTask { await FaultFixtures.outcome(test, order: order) == "handlerFailed" }
                }
                return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
            #expect(failures == 50)
            #expect(test.faults.injections(by: rule) == 50)
        }
    }
}

@Suite("Fault injection into bus deliveries", .timeLimit(.minutes(2)))
struct DeliveryFaultTests {
    typealias OrderPlaced = FaultFixtures.OrderPlaced

    @Test("a dropped delivery is a counted silent loss to that subscriber, not a dead letter")
    func dropIsCountedAndNotDeadLettered() async throws {
        try await TestHost.with() { test in
            let billing = FaultFixtures.Values<Int>()
            let shipping = FaultFixtures.Values<Int>()
            let billed = try test.bus.subscribe(to: OrderPlaced.self, name: "billing") { event, _ in
                billing.append(event.number)
            }
            try test.bus.subscribe(to: OrderPlaced.self, name: "shipping") { event, _ in
                shipping.append(event.number)
            }
            let rule = test.faults.inject(.drop, intoTopics: "order.#", subscription: "billing", when: .next(1))

            let receipt = try await test.bus.publish(OrderPlaced(number: 1))
            try await test.bus.publish(OrderPlaced(number: 2))
            await test.host.waitUntilIdle()

            #expect(receipt.subscribers == 3, "billing, shipping and the test host's recorder")
            #expect(receipt.dropped == 1)
            #expect(billing.all == [2])
            #expect(shipping.all == [1, 2])
            #expect(billed.statistics.dropped == 1)
            #expect(billed.statistics.delivered == 1)
            #expect(test.telemetry.counter("keel.bus.dropped", dimensions: [("subscription", "billing")]) == 1)
            #expect(test.bus.deadLetters.isEmpty)
            #expect(test.events.events(of: OrderPlaced.self).map(\.number) == [1, 2], "the recorder sees all")
            #expect(test.faults.injections(by: rule) == 1)
        }
    }

    @Test("a duplicated delivery calls the handler twice with the same event id")
    func duplicateHasTheSameID() async throws {
        try await TestHost.with() { test in
            let seen = FaultFixtures.Values<EventID>()
            let subscription = try test.bus.subscribe(to: OrderPlaced.self, name: "ledger") { _, envelope in
                seen.append(envelope.id)
            }
            test.faults.inject(.duplicate, intoTopics: "order.placed", when: .next(1))

            let first = try await test.bus.publish(OrderPlaced(number: 1))
            let second = try await test.bus.publish(OrderPlaced(number: 2))
            await test.host.waitUntilIdle()

            #expect(seen.all == [first.id, first.id, second.id])
            #expect(subscription.statistics.delivered == 3)
            #expect(test.events.records.count == 2, "the recorder is never hit")
        }
    }

    @Test("a duplicate that fails is redelivered and dead-lettered on its own, twice")
    func duplicateOfAFailingHandler() async throws {
        try await TestHost.with() { test in
            struct Refused: Error {}
            try test.bus.subscribe(
                to: OrderPlaced.self,
                name: "strict",
                options: SubscriptionOptions(redelivery: .none)
            ) { _, _ in throw Refused() }
            test.faults.inject(.duplicate, intoTopics: "order.#")
            let receipt = try await test.bus.publish(OrderPlaced(number: 1))
            await test.host.waitUntilIdle()
            #expect(test.bus.deadLetters.map(\.envelope.id) == [receipt.id, receipt.id])
        }
    }

    @Test("a delayed delivery waits on the clock and holds later events: order is kept; others go on")
    func delayKeepsOrder() async throws {
        try await TestHost.with() { test in
            let slow = FaultFixtures.Values<Int>()
            let subscription = try test.bus.subscribe(to: OrderPlaced.self, name: "slow") { event, _ in
                slow.append(event.number)
            }
            test.faults.inject(.delay(.seconds(5)), intoTopics: "order.placed", subscription: "slow", when: .next(1))

            try await test.bus.publish(OrderPlaced(number: 1))
            try await test.bus.publish(OrderPlaced(number: 2))
            // The recorder is not held up by the other subscription's delay.
            let recorded = try await test.events.waitFor(
                count: 2,
                of: OrderPlaced.self,
                timeout: .seconds(60),
                clock: ContinuousClock()
            )
            #expect(recorded.map(\.number) == [1, 2])

            await test.clock.waitForSleepers(count: 1)  // the delayed delivery
            test.clock.advance(by: .seconds(4))
            #expect(test.clock.sleeperCount == 1)
            #expect(subscription.statistics.delivered == 0, "event 2 waits behind the delayed event 1")
            test.clock.advance(by: .seconds(1))
            await test.host.waitUntilIdle()
            #expect(slow.all == [1, 2])
        }
    }

    @Test("cancelling a subscription during an injected delay discards the event")
    func cancelDuringDelay() async throws {
        try await TestHost.with() { test in
            let subscription = try test.bus.subscribe(to: OrderPlaced.self, name: "slow") { _, _ in }
            test.faults.inject(.delay(.seconds(5)), intoTopics: "order.placed")
            try await test.bus.publish(OrderPlaced(number: 1))
            await test.clock.waitForSleepers(count: 1)
            await subscription.cancel()
            #expect(subscription.statistics.discarded == 1)
            #expect(subscription.statistics.delivered == 0)
        }
    }
}

@Suite("Fault injection is seeded", .timeLimit(.minutes(2)))
struct FaultDeterminismTests {
    typealias Charge = FaultFixtures.Charge

    /// The outcomes of 40 charges and which of 40 events a subscriber missed, on a host with the
    /// given seed and probabilistic rules.
    static func run(seed: UInt64) async throws -> (requests: [String], received: [Int]) {
        try await TestHost.with(FaultFixtures.Payments(), seed: seed) { test in
            let received = FaultFixtures.Values<Int>()
            try test.bus.subscribe(to: FaultFixtures.OrderPlaced.self, name: "lossy") { event, _ in
                received.append(event.number)
            }
            test.faults.inject(.failure(FaultFixtures.GatewayDown()), into: Charge.self, when: .probability(0.5))
            test.faults.inject(.drop, intoTopics: "order.#", when: .probability(0.3))
            var requests: [String] = []
            for order in 0..<40 {
                requests.append(await FaultFixtures.outcome(test, order: order))
                try await test.bus.publish(FaultFixtures.OrderPlaced(number: order))
            }
            await test.host.waitUntilIdle()
            return (requests, received.all)
        }
    }

    @Test("two hosts on the same seed inject the same faults; another seed, others")
    func sameSeedSameFaults() async throws {
        let first = try await Self.run(seed: 42)
        let second = try await Self.run(seed: 42)
        #expect(first.requests == second.requests)
        #expect(first.received == second.received)
        #expect(first.requests.contains("handlerFailed") && first.requests.contains { $0.hasPrefix("receipt") })
        #expect((1..<40).contains(first.received.count), "some events were dropped, not all")

        let other = try await Self.run(seed: 7)
        #expect(other.requests != first.requests || other.received != first.received)
    }

    @Test("a host made by hand takes its injector from the configuration, seeded from its random source")
    func configuredByHand() async throws {
        let faults = FaultInjector()
        var configuration = TestHost.defaultConfiguration
        configuration.faults = faults
        #expect(ServiceHost.Configuration().faults == nil, "no injector unless set")
        let host = ServiceHost(configuration: configuration, clock: TestClock(), random: RandomSource(seed: 99))
        #expect(faults.seed == 99)
        try await host.register(FaultFixtures.Payments())
        try await host.start()
        faults.inject(.failure(FaultFixtures.GatewayDown()), into: Charge.self)
        let error = await #expect(throws: RequestError.self) {
            try await host.client.send(Charge(order: 1))
        }
        #expect(error?.code == .handlerFailed)
        await host.shutdown()
    }

    @Test("a test host uses the injector of the configuration it is given")
    func testHostUsesTheConfiguredInjector() async throws {
        let faults = FaultInjector()
        var configuration = TestHost.defaultConfiguration
        configuration.faults = faults
        try await TestHost.with(FaultFixtures.Payments(), configuration: configuration, seed: 5) { test in
            #expect(test.faults === faults)
            #expect(faults.seed == 5)
        }
    }
}

@Suite("Fault rules", .timeLimit(.minutes(2)))
struct FaultRuleTests {
    @Test("a rule belongs to its injector: another injector neither removes nor counts it")
    func rulesBelongToTheirInjector() async throws {
        let first = FaultInjector()
        let second = FaultInjector()
        let rule = first.inject(.timeout, into: FaultFixtures.Charge.self)
        let other = second.inject(.timeout, into: FaultFixtures.Charge.self)
        #expect(rule.number == other.number)
        second.remove(rule)
        #expect(first.rules == [rule])
        #expect(second.rules == [other])
        #expect(second.injections(by: rule) == 0)
        await second.waitForInjections(count: 1, by: rule)  // returns at once
        first.removeAll()
        #expect(first.rules.isEmpty)
    }
}
