/// When a fault rule fires among the calls or deliveries it matches.
///
/// ```swift
/// test.faults.inject(.failure(GatewayDown()), into: ChargePayment.self, when: .always)
/// test.faults.inject(.failure(GatewayDown()), into: ChargePayment.self, when: .next(3))
/// test.faults.inject(.drop, intoTopics: "order.#", when: .probability(0.25))
/// ```
public struct FaultSchedule: Sendable, Hashable, CustomStringConvertible {
    enum Kind: Hashable {
        case always
        case next(Int)
        case probability(Double)
    }

    let kind: Kind

    /// Every matching call or delivery.
    public static let always = FaultSchedule(kind: .always)

    /// The next `count` matching calls or deliveries, counted from when the rule is added; after
    /// them the rule no longer fires.
    /// - Parameter count: How many; not negative.
    /// - Returns: The schedule.
    public static func next(_ count: Int) -> FaultSchedule {
        precondition(count >= 0, "a fault's count must not be negative, got \(count)")
        return FaultSchedule(kind: .next(count))
    }

    /// Each matching call or delivery with probability `probability`, drawn from the rule's own
    /// random source, which derives from the host's seed (see ``FaultInjector``).
    /// - Parameter probability: In `0...1`.
    /// - Returns: The schedule.
    public static func probability(_ probability: Double) -> FaultSchedule {
        precondition((0...1).contains(probability), "a probability must be in 0...1, got \(probability)")
        return FaultSchedule(kind: .probability(probability))
    }

    /// `always`, `next(n)` or `probability(p)`.
    public var description: String {
        switch self.kind {
        case .always: "always"
        case .next(let count): "next(\(count))"
        case .probability(let probability): "probability(\(probability))"
        }
    }
}
