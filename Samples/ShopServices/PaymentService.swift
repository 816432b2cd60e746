import Keel
import KeelEventSourcing

/// Charges customers through the external payment gateway.
///
/// Its handler makes exactly one gateway call per `ChargePayment`; the resilience around that
/// call is not in here but on the request's route, where the host runs every attempt through the
/// pipeline of `PaymentResilience`. Guarding the route rather than the call inside the handler
/// means that a request refused by the open breaker or the full bulkhead never even reaches this
/// actor, and that the caller sees the refusal as what it is: a `RequestError` with code
/// `rejected`, not a failure of this handler.
package actor PaymentService: ServiceActor {
    package static let name: ServiceName = "payment"
    package static let publishes: [any DomainEvent.Type] = [PaymentRefunded.self]

    /// The remote API; the service's only way to the money.
    private let gateway: PaymentGateway
    /// Charges that went through.
    private var charged = 0
    /// Whether the receipts of charges made with an idempotency key are kept in the service's
    /// storage.
    private let durable: Bool
    /// The service's key-value storage, when durable (from start).
    private var store: StateNamespace?
    /// Where the service tells what it does.
    private let say: Narrator

    /// Creates the service.
    /// - Parameters:
    ///   - gateway: The remote API it charges through.
    ///   - durable: Whether the receipt of a charge made with an idempotency key is kept in the
    ///     service's storage, so that the charge asked for again after a restart is answered from
    ///     it rather than made again.
    ///   - narrator: Where the service tells what it does.
    package init(gateway: PaymentGateway, durable: Bool = false, narrator: Narrator = .standardOutput) {
        self.gateway = gateway
        self.durable = durable
        self.say = narrator
    }

    package func start(_ environment: ServiceEnvironment) async throws {
        if self.durable { self.store = try await environment.storage().keyValues }
    }

    package nonisolated func registerHandlers(_ handlers: inout RequestHandlers<PaymentService>) {
        handlers.on(ChargePayment.self) { service, request in
            try await service.charge(request)
        }
        handlers.on(RefundPayment.self) { service, request, environment in
            try await service.refund(request, environment)
        }
    }

    /// Refunds a charge and says so durably. A refund asked for again is not made twice, but is
    /// announced again: the first announcement may be what a crash lost.
    private func refund(_ request: RefundPayment, _ environment: ServiceEnvironment) async throws {
        if await self.gateway.refund(request.paymentID) {
            say(Self.name, "refunded \(dollars(request.amountCents)) (receipt #\(request.paymentID))")
        }
        try await environment.publishDurably(
            PaymentRefunded(delivery: request.delivery, paymentID: request.paymentID, amountCents: request.amountCents)
        )
    }

    package func stop() async throws {
        say(Self.name, "stopped (\(self.charged) charges went through)")
    }

    /// One attempt at the charge: one gateway call, whose failure is reported and rethrown. A
    /// charge whose idempotency key has a stored receipt is answered with it.
    private func charge(_ request: ChargePayment) async throws -> PaymentReceipt {
        let stored = request.idempotencyKey.map { "charge/\($0)" }
        if let store = self.store, let stored, let receipt = try await store.value(PaymentReceipt.self, forKey: stored)
        {
            say(
                Self.name,
                "already charged \(dollars(receipt.amountCents)) for \(request.reference), receipt #\(receipt.id)"
            )
            return receipt
        }
        say(Self.name, "asks the gateway for \(dollars(request.amountCents)) (\(request.reference))")
        do {
            let receipt = try await self.gateway.charge(
                request.amountCents,
                reference: request.reference,
                idempotencyKey: request.idempotencyKey
            )
            self.charged += 1
            say(Self.name, "charged \(dollars(receipt.amountCents)), receipt #\(receipt.id)")
            if let store = self.store, let stored {
                // The money has moved: the receipt is the answer even if it cannot be kept (the
                // gateway's own key then stands between a second attempt and a second charge).
                do {
                    try await store.set(receipt, forKey: stored)
                } catch {
                    say(Self.name, "could not keep receipt #\(receipt.id): \(error)")
                }
            }
            return receipt
        } catch is CancellationError {
            // The attempt's timeout cancelled us while the gateway made us wait.
            say(Self.name, "gave up waiting for the gateway: the attempt was cancelled")
            throw CancellationError()
        } catch {
            say(Self.name, "gateway said: \(error)")
            throw error
        }
    }
}
