/// How a request picks one of a service's serving instances.
public struct LoadBalancing: Sendable, Hashable, CustomStringConvertible {
    private enum Base: String, Hashable, Sendable {
        case roundRobin, random, leastOutstanding
    }
    private let base: Base
    private init(_ base: Base) { self.base = base }

    /// Each serving instance in turn.
    public static let roundRobin = LoadBalancing(.roundRobin)
    /// A serving instance chosen at random from the host's ``/KeelCore/RandomSource``.
    public static let random = LoadBalancing(.random)
    /// The serving instance with the fewest requests in flight; ties go round-robin.
    public static let leastOutstanding = LoadBalancing(.leastOutstanding)

    /// The strategy's name.
    public var description: String { self.base.rawValue }

    var isRoundRobin: Bool { self.base == .roundRobin }
    var isRandom: Bool { self.base == .random }
    var isLeastOutstanding: Bool { self.base == .leastOutstanding }
}
