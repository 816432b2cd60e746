import Keel

/// What an injected fault does to the delivery of one event to one subscription.
///
/// Give it to ``FaultInjector/inject(_:intoTopics:subscription:when:)``. The bus asks once per
/// subscription an event goes to, so a fault hits one subscriber's copy and leaves the others'
/// alone.
///
/// ```swift
/// test.faults.inject(.drop, intoTopics: "order.#", when: .probability(0.2))
/// test.faults.inject(.duplicate, intoTopics: "payment.captured", subscription: "ledger")
/// ```
public struct DeliveryFault: Sendable, CustomStringConvertible {
    let action: DeliveryFaultAction

    /// The subscription never receives the event, as over a lossy link.
    ///
    /// The drop is counted where the bus counts overflow drops: the subscription's
    /// ``/Keel/SubscriptionStatistics/dropped``, the `keel.bus.dropped` counter and the
    /// publication's ``/Keel/PublishReceipt/dropped``. It is not a dead letter: nothing failed that
    /// a replay could fix, the message was lost. The other subscriptions still receive the event.
    public static let drop = DeliveryFault(action: .drop)

    /// The subscription handles the event `duration` later, on the host's clock.
    ///
    /// The event travels through the mailbox as usual; when its turn comes, the subscription's
    /// task sleeps on the clock (a sleeper on a ``TestClock``), then runs the handler. The events
    /// behind it in that mailbox wait too, so events from one publisher still reach the
    /// subscription in the order they were published; the other subscriptions are not held up.
    /// - Parameter duration: The delay; not negative.
    /// - Returns: The fault.
    public static func delay(_ duration: Duration) -> DeliveryFault {
        precondition(duration >= .zero, "a delay must not be negative, got \(duration)")
        return DeliveryFault(action: .delay(duration))
    }

    /// The subscription handles the event twice in a row, with the same envelope (the same
    /// ``/Keel/EventEnvelope/id``), as an at-least-once transport may deliver it: a test of an
    /// idempotent handler.
    ///
    /// Each of the two deliveries is a full one: it counts in
    /// ``/Keel/SubscriptionStatistics/delivered``, and if the handler throws it is redelivered and
    /// dead-lettered on its own.
    public static let duplicate = DeliveryFault(action: .duplicate)

    /// `drop`, `delay(…)` or `duplicate`.
    public var description: String {
        switch self.action {
        case .drop: "drop"
        case .delay(let duration): "delay(\(duration))"
        case .duplicate: "duplicate"
        }
    }
}
