import Keel
import KeelCore
import KeelTestSupport
import KeelTesting
import XCTest

/// The event bus from `XCTestCase` async tests, as XCTest users write them.
final class BusXCTests: TimeLimitedTestCase {
    typealias Collector = BusFixtures.Collector
    typealias Gate = BusFixtures.Gate
    typealias Numbered = BusFixtures.Numbered

    func testPublishedEventReachesTypeAndPatternSubscribers() async throws {
        let bus = EventBus(random: RandomSource(seed: 3))
        let typed = Collector<Int>()
        let patterned = Collector<EventEnvelope>()
        try bus.subscribe(to: BusFixtures.OrderCreated.self) { event, _ in typed.append(event.orderID) }
        try bus.subscribe(pattern: "order.#") { _, envelope in patterned.append(envelope) }

        let receipt = try await bus.publish(BusFixtures.OrderCreated(orderID: 5), source: "order")
        XCTAssertEqual(receipt.subscribers, 2)

        let orderIDs = await typed.waitFor(count: 1)
        XCTAssertEqual(orderIDs, [5])
        let envelopes = await patterned.waitFor(count: 1)
        XCTAssertEqual(envelopes.first?.id, receipt.id)
        XCTAssertEqual(envelopes.first?.source, "order")
        XCTAssertEqual(envelopes.first?.topic, "order.created")
        await bus.shutdown()
    }

    func testDropNewestCountsWhatAStuckSubscriberMisses() async throws {
        let bus = EventBus(random: RandomSource(seed: 3))
        let gate = Gate()
        let received = Collector<Int>()
        let subscription = try bus.subscribe(
            to: Numbered.self,
            options: SubscriptionOptions(bufferCapacity: 2, overflow: .dropNewest)
        ) { event, _ in
            try await gate.wait()
            received.append(event.sequence)
        }
        try await bus.publish(Numbered(sequence: 0))
        await gate.waitForWaiters(count: 1)

        var dropped = 0
        for sequence in 1...10 {
            dropped += try await bus.publish(Numbered(sequence: sequence)).dropped
        }
        XCTAssertEqual(dropped, 8)
        XCTAssertEqual(subscription.statistics.dropped, 8)
        XCTAssertEqual(subscription.statistics.peakBuffered, 2)

        gate.open()
        let values = await received.waitFor(count: 3)
        XCTAssertEqual(values, [0, 1, 2])
        await bus.shutdown()
    }

    func testFailingHandlerIsRetriedOnTheTestClockThenDeadLetteredAndReplayed() async throws {
        let clock = TestClock()
        let bus = EventBus(clock: clock, random: RandomSource(seed: 3))
        let fixed = BusFixtures.Flag()
        let handled = Collector<Int>()
        let policy = RedeliveryPolicy(maxAttempts: 2, backoff: .constant(.seconds(5)))
        try bus.subscribe(to: Numbered.self, options: SubscriptionOptions(redelivery: policy)) { event, _ in
            if event.publisher == 0 && !fixed.value { throw BusFixtures.HandlerFailure(sequence: event.sequence) }
            handled.append(event.sequence)
        }
        try await bus.publish(Numbered(sequence: 1))
        try await bus.publish(Numbered(publisher: 1, sequence: 2))  // a marker that always succeeds

        await clock.waitForSleepers(count: 1)
        clock.advance(by: .seconds(5))
        let markers = await handled.waitFor(count: 1)
        XCTAssertEqual(markers, [2])
        XCTAssertEqual(bus.deadLetters.count, 1)
        XCTAssertEqual(bus.deadLetters.first?.attempts, 2)

        fixed.set(true)
        let replayed = await bus.replayDeadLetters()
        XCTAssertEqual(replayed, 1)
        let all = await handled.waitFor(count: 2)
        XCTAssertEqual(all, [2, 1])
        XCTAssertTrue(bus.deadLetters.isEmpty)
        await bus.shutdown()
    }

    func testPublishAfterShutdownFailsWithShuttingDown() async throws {
        let bus = EventBus(random: RandomSource(seed: 3))
        await bus.shutdown()
        do {
            try await bus.publish(Numbered(sequence: 1))
            XCTFail("published on a shut-down bus")
        } catch {
            XCTAssertEqual(error.code, .shuttingDown)
        }
    }

    /// A service that declares its subscription instead of making it in `start`.
    actor Greeter: ServiceActor {
        static let name: ServiceName = "greeter"
        let greeted = Collector<Int>()

        nonisolated func registerHandlers(_ handlers: inout RequestHandlers<Greeter>) {
            handlers.subscribe(to: BusFixtures.OrderCreated.self) { service, event, _ in
                service.greeted.append(event.orderID)
            }
        }
    }

    func testDeclaredSubscriptionDeliversToTheServiceUntilItStops() async throws {
        let greeter = Greeter()
        try await TestHost.with(greeter) { test in
            let owned = test.bus.subscriptions.filter { $0.owner == "greeter" }
            XCTAssertEqual(owned.map(\.name), ["greeter:order.created"])
            try await test.bus.publish(BusFixtures.OrderCreated(orderID: 9))
            let greeted = await greeter.greeted.waitFor(count: 1)
            XCTAssertEqual(greeted, [9])
            await test.host.shutdown()
            XCTAssertTrue(test.bus.subscriptions.isEmpty)
        }
    }
}
