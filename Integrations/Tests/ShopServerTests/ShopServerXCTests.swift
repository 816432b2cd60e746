import HTTPTypes
import ShopServer
import XCTest

/// The same server from an XCTest async case, as users who write XCTest drive it.
final class ShopServerXCTests: XCTestCase {
    func testPlaceAnOrderAndReadItBack() async throws {
        try await ServerFixture.with { server in
            let placed = try await server.send(
                .post,
                "/orders",
                json: #"{"customerId": 3, "lines": [{"sku": "cable", "quantity": 3}]}"#
            )
            XCTAssertEqual(placed.status, .created, placed.body)
            let id = try XCTUnwrap(placed.json()["id"] as? Int)
            let read = try await server.send(.get, "/orders/\(id)")
            XCTAssertEqual(read.status, .ok)
            XCTAssertEqual(try read.json()["totalCents"] as? Int, 3 * 9_50)
            XCTAssertEqual(try read.json()["customerId"] as? Int, 3)
            XCTAssertNotNil(read.header("traceparent"))
        }
    }

    func testAnUnknownOrderIsA404() async throws {
        try await ServerFixture.with { server in
            let reply = try await server.send(.get, "/orders/12345")
            XCTAssertEqual(reply.status, .notFound)
            XCTAssertEqual(try reply.json()["error"] as? String, "unknown_order")
        }
    }
}
