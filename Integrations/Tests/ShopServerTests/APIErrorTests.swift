import HTTPTypes
import Keel
import KeelResilience
import ShopServices
import Testing

@testable import ShopServer

@Suite("APIError: Keel's typed errors to HTTP statuses")
struct APIErrorTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        var error: any Error & Sendable
        var status: HTTPResponse.Status
        var retryAfter: Int?
        var testDescription: String { self.name }
    }

    static func payment(_ error: RequestError) -> RequestError {
        RequestError(
            code: .handlerFailed,
            request: "PlaceOrder",
            message: "the handler threw",
            underlying: OrderError.paymentFailed(error)
        )
    }

    struct Secret: Error {}

    static let cases: [Case] = [
        Case(
            name: "an order saga that needs an operator → 500",
            error: RequestError(
                code: .handlerFailed,
                request: "PlaceOrder",
                message: "the handler threw",
                underlying: OrderError.needsIntervention("order.place 1 needs intervention")
            ),
            status: .internalServerError
        ),
        Case(
            name: "payments circuit open, 2.5 s left → 503, Retry-After 3",
            error: payment(
                RequestError(
                    code: .circuitOpen,
                    request: "ChargePayment",
                    message: "open",
                    underlying: CircuitBreakerError(
                        code: .open,
                        breakerName: "payment-gateway",
                        remainingOpenDuration: .milliseconds(2500)
                    )
                )
            ),
            status: .serviceUnavailable,
            retryAfter: 3
        ),
        Case(
            name: "payments bulkhead full → 503, Retry-After 1",
            error: payment(
                RequestError(
                    code: .bulkheadFull,
                    request: "ChargePayment",
                    message: "full",
                    underlying: BulkheadError(code: .queueFull, bulkhead: "payment-gateway", message: "full")
                )
            ),
            status: .serviceUnavailable,
            retryAfter: 1
        ),
        Case(
            name: "host shutting down → 503",
            error: RequestError(code: .shuttingDown, request: "GetUser", message: "draining"),
            status: .serviceUnavailable,
            retryAfter: 1
        ),
        Case(
            name: "no healthy instance → 503",
            error: RequestError(code: .noHealthyInstance, request: "GetUser", message: "none"),
            status: .serviceUnavailable,
            retryAfter: 1
        ),
        Case(
            name: "deadline → 504",
            error: RequestError(code: .deadlineExceeded, request: "CustomersByDomain", message: "late"),
            status: .gatewayTimeout
        ),
        Case(
            name: "payment attempt timed out → 504",
            error: payment(RequestError(code: .deadlineExceeded, request: "ChargePayment", message: "late")),
            status: .gatewayTimeout
        ),
        Case(
            name: "a cause nobody mapped → 500",
            error: RequestError(code: .handlerFailed, request: "GetUser", message: "boom", underlying: Secret()),
            status: .internalServerError
        ),
        Case(
            name: "an upstream shutdown inside the order service → 503",
            error: RequestError(
                code: .handlerFailed,
                request: "PlaceOrder",
                message: "threw",
                underlying: OrderError.upstream(RequestError(code: .shuttingDown, request: "GetUser", message: "x"))
            ),
            status: .serviceUnavailable,
            retryAfter: 1
        ),
    ]

    @Test("maps", arguments: Self.cases)
    func maps(_ testCase: Case) {
        let mapped = APIError(mapping: testCase.error)
        #expect(mapped.status == testCase.status)
        #expect(mapped.retryAfterSeconds == testCase.retryAfter)
        if mapped.status.code >= 500 {
            #expect(!mapped.message.contains("boom") && !mapped.message.contains("Secret"))
        }
    }
}

@Suite("DrainGate")
struct DrainGateTests {
    @Test("admits until draining, then refuses; the drain waits for the last one out")
    func drains() async {
        let gate = DrainGate()
        #expect(gate.enter())
        #expect(gate.enter())
        gate.startDraining()
        #expect(!gate.enter())
        #expect(gate.inFlight == 2)
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await gate.waitUntilIdle() }
            gate.leave()
            gate.leave()
            await group.waitForAll()
        }
        #expect(gate.inFlight == 0)
    }

    @Test("a cancelled wait returns though requests are still in flight")
    func cancelledWait() async {
        let gate = DrainGate()
        #expect(gate.enter())
        let waiter = Task { await gate.waitUntilIdle() }
        waiter.cancel()
        await waiter.value
        #expect(gate.inFlight == 1)
        gate.leave()
    }
}
