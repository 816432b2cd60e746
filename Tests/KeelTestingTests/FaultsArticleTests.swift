import Keel
import KeelCore
import KeelResilience
import KeelTesting
import Testing

/// The testing article's fault-injection examples, as they are written there.
@Suite("Testing article: injecting faults", .timeLimit(.minutes(2)))
struct FaultsArticleTests {
    struct ChargePayment: ServiceRequest {
        typealias Response = String
        var orderID: Int
    }

    struct GatewayDown: Error {}

    actor PaymentService: ServiceActor {
        static let name: ServiceName = "payment"

        nonisolated func registerHandlers(_ handlers: inout RequestHandlers<PaymentService>) {
            handlers.on(ChargePayment.self) { _, request in "receipt-\(request.orderID)" }
        }
    }

    @Test func chargesFailWhileTheGatewayIsDown() async throws {
        try await TestHost.with(PaymentService()) { test in
            let outage = test.faults.inject(.failure(GatewayDown()), into: ChargePayment.self)

            let error = await #expect(throws: RequestError.self) {
                try await test.client.send(ChargePayment(orderID: 1))
            }
            #expect(error?.code == .handlerFailed)
            #expect(error?.underlying is GatewayDown)

            test.faults.remove(outage)  // the gateway is back
            let receipt = try await test.client.send(ChargePayment(orderID: 2))
            #expect(receipt == "receipt-2")
        }
    }

    @Test func aRetryRidesOutTwoFailures() async throws {
        try await TestHost.with(PaymentService()) { test in
            let retry = Retry(configuration: .init(maxAttempts: 3, backoff: .immediate), clock: test.clock)
            await test.host.setPolicy(ResiliencePipeline { retry }, for: ChargePayment.self)
            let blip = test.faults.inject(.failure(GatewayDown()), into: ChargePayment.self, when: .next(2))

            let receipt = try await test.client.send(ChargePayment(orderID: 1))
            #expect(receipt == "receipt-1")
            #expect(test.faults.injections(by: blip) == 2)
        }
    }

    @Test func aHangingGatewayMissesTheDeadline() async throws {
        try await TestHost.with(PaymentService()) { test in
            let hang = test.faults.inject(.timeout, into: ChargePayment.self)
            async let call = test.client.send(ChargePayment(orderID: 1), timeout: .seconds(2))

            await test.faults.waitForInjections(count: 1, by: hang)  // the call now hangs
            await test.clock.waitForSleepers(count: 1)  // its deadline
            test.clock.advance(by: .seconds(2))

            do {
                _ = try await call
                Issue.record("the charge should have missed its deadline")
            } catch let error as RequestError {
                #expect(error.code == .deadlineExceeded)
            }
        }
    }

    struct PaymentCaptured: Event {
        static let topic = "payment.captured"
        var orderID: Int
        var amount: Int
    }

    actor LedgerService: ServiceActor {
        static let name: ServiceName = "ledger"
        private var booked: Set<EventID> = []
        private(set) var balance = 0

        func start(_ environment: ServiceEnvironment) async throws {
            try environment.subscribe(to: PaymentCaptured.self) { [self] event, envelope in
                await self.book(event, id: envelope.id)
            }
        }

        private func book(_ event: PaymentCaptured, id: EventID) {
            guard self.booked.insert(id).inserted else { return }  // delivered before
            self.balance += event.amount
        }
    }

    @Test func theLedgerBooksADuplicatedPaymentOnce() async throws {
        let ledger = LedgerService()
        try await TestHost.with(ledger) { test in
            test.faults.inject(.duplicate, intoTopics: "payment.#")

            try await test.bus.publish(PaymentCaptured(orderID: 1, amount: 30))
            await test.host.waitUntilIdle()

            let subscription = try #require(test.bus.subscriptions.first { $0.owner == "ledger" })
            #expect(subscription.statistics.delivered == 2)  // the handler ran twice
            #expect(await ledger.balance == 30)  // and booked once
        }
    }
}
