import Keel
import KeelGRPC
import XCTest

final class RemoteServiceXCTests: XCTestCase {
    func testRoundTripAndRemoteError() async throws {
        try await withRemoteAndCaller { host, proxy in
            let receipt = try await host.client.send(Charge(amount: 5), timeout: .seconds(5))
            XCTAssertEqual(receipt, Receipt(amount: 5, by: "payment"))
            let health = await proxy.health()
            XCTAssertEqual(health, .healthy)
            do {
                _ = try await host.client.send(Decline(reason: "stolen"))
                XCTFail("the remote handler threw")
            } catch let error as RequestError {
                XCTAssertEqual(error.code, .handlerFailed)
                XCTAssertEqual((error.underlying as? RemoteError)?.type, "CardDeclined")
            }
        }
    }
}
