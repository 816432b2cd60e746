import KeelCore

/// What the payment gateway answered when it did not take the money.
package enum GatewayError: Error, CustomStringConvertible {
    /// The gateway is having trouble (think HTTP 503): the same charge may well succeed later.
    case unavailable

    package var description: String {
        switch self {
        case .unavailable: "the payment gateway is unavailable (503)"
        }
    }
}

/// A stand-in for a remote payment API, such as a card processor's HTTPS endpoint.
///
/// It is not a Keel service: it stands for a system outside the process, which the shop reaches
/// only through the payment service, and which the program can make misbehave on command:
/// flaky (a seeded share of its calls fail) or slow (each call waits on the clock before
/// answering). Time comes from the injected clock and chance from the injected `RandomSource`, so
/// a run fails the same calls every time.
public actor PaymentGateway {
    /// How the gateway answers.
    public enum Behaviour: Sendable, CustomStringConvertible {
        /// Every call succeeds at once.
        case healthy
        /// Each call fails with `GatewayError.unavailable` with this probability (1 = every call).
        case flaky(failureRate: Double)
        /// Each call waits this long before it succeeds; cancelling the caller ends the wait.
        case slow(latency: Duration)

        /// The behaviour in a few words.
        public var description: String {
            switch self {
            case .healthy: "healthy"
            case .flaky(let rate): "flaky (fails \(Int(rate * 100)) % of calls)"
            case .slow(let latency): "slow (answers after \(milliseconds(latency)))"
            }
        }
    }

    private let clock: any Clock<Duration>
    private let random: RandomSource
    private var behaviour = Behaviour.healthy
    /// Charges taken so far; the next receipt's id is one more.
    private var charges = 0
    /// Calls received so far, including failed and abandoned ones.
    package private(set) var calls = 0
    /// The receipts refunded so far.
    private var refunded: Set<Int> = []
    /// The receipts of charges made with an idempotency key, by key.
    private var byKey: [String: PaymentReceipt] = [:]

    /// Creates a healthy gateway.
    /// - Parameters:
    ///   - clock: The clock a slow gateway waits on.
    ///   - random: Decides which calls a flaky gateway fails.
    public init(clock: any Clock<Duration>, random: RandomSource) {
        self.clock = clock
        self.random = random
    }

    /// Changes how the gateway answers from the next call on.
    /// - Parameter behaviour: The new behaviour.
    public func behave(_ behaviour: Behaviour) {
        self.behaviour = behaviour
    }

    /// Takes `amountCents` from the customer, or fails as the current behaviour says.
    ///
    /// A charge made with an idempotency key is made once, as a real gateway's is: asking again
    /// under the same key answers the first receipt. (This stand-in keeps its keys in memory, so
    /// they last as long as its process.)
    /// - Throws: `GatewayError.unavailable` when flaky; `CancellationError` when the caller is
    ///   cancelled while a slow call waits (the charge is then not taken).
    package func charge(
        _ amountCents: Int,
        reference: String,
        idempotencyKey: String? = nil
    ) async throws -> PaymentReceipt {
        self.calls += 1
        if let idempotencyKey, let receipt = self.byKey[idempotencyKey] { return receipt }
        switch self.behaviour {
        case .healthy:
            break
        case .flaky(let failureRate):
            if self.random.nextUnitDouble() < failureRate { throw GatewayError.unavailable }
        case .slow(let latency):
            try await self.clock.sleep(for: latency)
        }
        // No `await` between choosing the id and counting it, so concurrent charges, which
        // interleave at the sleep above, never share a receipt id.
        if let idempotencyKey, let receipt = self.byKey[idempotencyKey] { return receipt }
        self.charges += 1
        let receipt = PaymentReceipt(id: self.charges, amountCents: amountCents)
        if let idempotencyKey { self.byKey[idempotencyKey] = receipt }
        return receipt
    }

    /// Gives the charge of receipt `receiptID` back to the customer. A receipt is refunded once:
    /// asking again changes nothing and answers `false`. Refunds are not subject to the gateway's
    /// misbehaviour (a real gateway's would need a retry too).
    /// - Returns: Whether this call refunded the charge.
    package func refund(_ receiptID: Int) -> Bool {
        self.refunded.insert(receiptID).inserted
    }
}
