import Keel
import KeelSagas

/// The saga of the saga scenarios: validate → pay (refund) → reserve (release) → confirm (the
/// pivot), each step a request to one of ``SagaShop``'s services, the same four requests as
/// ``SagaShop/placeDirectly(_:_:)`` sends.
struct BenchOrderSaga: Saga {
    static let name = "bench.order"

    /// The client the steps send with: the host's (the scenarios call from outside any handler).
    let requests: RequestClient

    func run(_ order: SagaShop.Order, saga: SagaContext) async throws -> String {
        let requests = self.requests
        let total = try await saga.step("validate") { _ in
            try await requests.send(SagaShop.ValidateOrder(order: order))
        }
        let payment = try await saga.step("pay", .idempotent) { step in
            try await requests.send(SagaShop.ChargePayment(user: order.user, amount: total, key: step.idempotencyKey))
        } compensate: { payment, _ in
            _ = try await requests.send(SagaShop.RefundPayment(payment: payment))
        }
        _ = try await saga.step("reserve", .idempotent) { step in
            try await requests.send(
                SagaShop.ReserveStock(item: order.item, quantity: order.quantity, key: step.idempotencyKey)
            )
        } compensate: { reservation, _ in
            _ = try await requests.send(SagaShop.ReleaseStock(reservation: reservation))
        }
        return try await saga.pivot("confirm") { _ in
            try await requests.send(SagaShop.ConfirmOrder(orderID: order.id, paymentKey: payment.key))
        }
    }
}
