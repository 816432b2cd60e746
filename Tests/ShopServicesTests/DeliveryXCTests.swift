import Keel
import KeelTesting
import XCTest

@testable import ShopServices

/// The delivery choreography from XCTest: a refused parcel is refunded and its stock released.
final class DeliveryXCTests: XCTestCase {
    func testRefusedParcelIsRefundedAndReleased() async throws {
        let shop = ShopUnderTest()
        try await shop.run { test in
            let order = try await shop.place("keyboard", on: test)
            await shop.courier.behave(.refuses(sku: "keyboard"))
            let started = try await test.client.send(ShipOrder(orderID: order.id))
            XCTAssertTrue(started)
            let emails = await shop.emails(2)
            XCTAssertEqual(emails.last?.subject, "Your order #\(order.id) is cancelled")
            let keyboards = try await shop.stock("keyboard", on: test)
            XCTAssertEqual(keyboards, 5)
            let refundedAgain = await shop.gateway.refund(order.paymentID)
            XCTAssertFalse(refundedAgain)
        }
    }
}
