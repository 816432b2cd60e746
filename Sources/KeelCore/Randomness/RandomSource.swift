import Synchronization

/// The one source of randomness a Keel host draws from.
///
/// Every random choice the framework makes (load balancing, jitter, sampling) and every id it
/// generates (event ids, trace and span ids) draws from a `RandomSource`. Seed it to make a run
/// repeatable; the default draws its seed from the system generator.
///
/// The generator is SplitMix64, a small, fast, well-distributed generator that is fully
/// determined by its seed. `RandomSource` is a reference type so that one source can be shared by
/// every component of a host; drawing is one atomic add, lock-free, and never suspends.
///
/// ```swift
/// let random = RandomSource(seed: 42)
/// let roll = random.next(upperBound: 6)
/// ```
public final class RandomSource: Sendable {
    private let state: Atomic<UInt64>

    /// The seed this source started from; log it to replay a run.
    public let seed: UInt64

    /// Creates a source that produces the same sequence for the same seed.
    /// - Parameter seed: The seed.
    public init(seed: UInt64) {
        self.seed = seed
        self.state = Atomic(seed)
    }

    /// Creates a source seeded from the system's random number generator.
    public convenience init() {
        var system = SystemRandomNumberGenerator()
        self.init(seed: system.next())
    }

    /// Returns the next 64 random bits.
    public func next() -> UInt64 {
        // SplitMix64 advances its state by a constant, so drawing is one atomic add; the
        // sequence depends only on the seed and the order of draws.
        Self.mix(self.state.wrappingAdd(Self.gamma, ordering: .relaxed).newValue)
    }

    /// The next three values of the sequence, in order, for one atomic add: what three calls of
    /// ``next()`` return when nothing else draws in between (a new trace's ids).
    package func nextThree() -> (UInt64, UInt64, UInt64) {
        let last = self.state.wrappingAdd(3 &* Self.gamma, ordering: .relaxed).newValue
        return (Self.mix(last &- 2 &* Self.gamma), Self.mix(last &- Self.gamma), Self.mix(last))
    }

    /// SplitMix64's increment.
    private static let gamma: UInt64 = 0x9E37_79B9_7F4A_7C15

    /// SplitMix64's output function of a state.
    @inline(__always)
    private static func mix(_ state: UInt64) -> UInt64 {
        var z = state
        z = (z ^ (z &>> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z &>> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z &>> 31)
    }

    /// Returns a random integer in `0..<upperBound`.
    /// - Parameter upperBound: The exclusive upper bound; must be greater than zero.
    /// - Returns: A uniformly distributed value below `upperBound`.
    public func next(upperBound: Int) -> Int {
        precondition(upperBound > 0, "upperBound must be positive, got \(upperBound)")
        var generator = Generator(source: self)
        return Int.random(in: 0..<upperBound, using: &generator)
    }

    /// Returns a random `Double` in `0..<1`.
    public func nextUnitDouble() -> Double {
        Double(self.next() >> 11) * 0x1.0p-53
    }

    /// A `RandomNumberGenerator` view of this source, for APIs such as `shuffled(using:)`.
    public struct Generator: RandomNumberGenerator {
        /// The source this generator draws from.
        public let source: RandomSource

        /// Creates a generator drawing from `source`.
        /// - Parameter source: The source to draw from.
        public init(source: RandomSource) {
            self.source = source
        }

        /// Returns the next 64 random bits of the underlying source.
        public mutating func next() -> UInt64 {
            self.source.next()
        }
    }
}
