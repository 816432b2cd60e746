import Foundation
import Keel
import KeelCore
import KeelTesting
import Testing

/// The testing article's wall-clock example, as it is written there (and its dead-letter example's
/// declared subscription): the time stamped on an envelope moves with the test clock.
@Suite("Testing article: wall-clock time", .timeLimit(.minutes(2)))
struct WallClockArticleTests {
    struct PaymentFailed: Event {
        static let topic = "payment.failed"
        var orderID: Int
    }

    struct Unavailable: Error {}

    actor RefundService: ServiceActor {
        static let name: ServiceName = "refund"
        private(set) var attempts = 0

        nonisolated func registerHandlers(_ handlers: inout RequestHandlers<RefundService>) {
            let retry = RedeliveryPolicy(
                maxAttempts: 3,
                backoff: .exponential(initial: .seconds(1), maximum: .seconds(10), jitter: false)
            )
            // Declared: the host subscribes the service once it has started.
            let options = SubscriptionOptions(redelivery: retry)
            handlers.subscribe(to: PaymentFailed.self, options: options) { service, event, _ in
                try service.refund(event.orderID)
            }
        }

        private func refund(_ orderID: Int) throws {
            self.attempts += 1
            throw Unavailable()  // the payment provider is down
        }
    }

    @Test func aRefundThatKeepsFailingIsDeadLettered() async throws {
        let refunds = RefundService()
        try await TestHost.with(refunds) { test in
            try await test.bus.publish(PaymentFailed(orderID: 7))

            await test.clock.waitForSleepers(count: 1)  // attempt 1 failed; backing off 1 s
            test.clock.advance(by: .seconds(1))
            await test.clock.waitForSleepers(count: 1)  // attempt 2 failed; backing off 2 s
            test.clock.advance(by: .seconds(2))

            // Attempt 3 runs now; wait until it has, and nothing else is in flight.
            await test.host.waitUntilIdle()

            #expect(await refunds.attempts == 3)
            let letters = test.bus.deadLetters
            #expect(letters.count == 1)
            #expect(letters.first?.attempts == 3)
            #expect(letters.first?.error is Unavailable)
        }
    }

    @Test func eventsCarryTheTestsTime() async throws {
        let clock = TestClock()
        var configuration = TestHost.defaultConfiguration
        configuration.wallClock = clock.wallClock(startingAt: 1_700_000_000_000_000_000)
        try await TestHost.with(configuration: configuration, clock: clock) { test in
            clock.advance(by: .seconds(2))
            let receipt = try await test.bus.publish(PaymentFailed(orderID: 7))
            await test.host.waitUntilIdle()  // the recorder has it
            let recorded = test.events.records.first { $0.envelope.id == receipt.id }
            #expect(recorded?.envelope.time == Date(timeIntervalSince1970: 1_700_000_002))
        }
    }
}
