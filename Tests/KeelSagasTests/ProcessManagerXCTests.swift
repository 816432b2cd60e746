import Keel
import KeelCore
import KeelSagas
import KeelTestSupport
import KeelTesting
import XCTest

/// The choreography from an `XCTestCase`: a confirmed order, and a timed-out payment.
final class ProcessManagerXCTests: TimeLimitedTestCase {
    func testConfirmedAndTimedOutOrders() async throws {
        let ledger = PaymentLedger()
        let outcomes = Outcomes()
        let clock = TestClock()
        let order = OrderService(configuration: ProcessManagerTests.runnerConfiguration)
        let services: [any ServiceActor] = [
            order, PaymentService(ledger), InventoryService(stock: 5), NotificationService(outcomes),
        ]
        try await TestHost.with(
            services: services,
            configuration: ProcessManagerTests.configuration(clock),
            clock: clock
        ) { test in
            _ = try await test.client.send(PlaceOrder(orderID: "x-1", amount: 10, quantity: 1))
            let first = await outcomes.outcome(of: "x-1")
            XCTAssertEqual(first, .confirmed)

            ledger.books.update { $0.isSilent = true }
            _ = try await test.client.send(PlaceOrder(orderID: "x-2", amount: 10, quantity: 1))
            // x-1's retention timer and x-2's payment timeout.
            await clock.waitForSleepers(count: 2)
            clock.advance(by: .seconds(30))
            let second = await outcomes.outcome(of: "x-2")
            XCTAssertEqual(second, .cancelled("payment timed out"))
            let instance = try await order.fulfilment.instance(for: "x-2")
            XCTAssertEqual(instance?.isCompleted, true)
        }
    }
}
