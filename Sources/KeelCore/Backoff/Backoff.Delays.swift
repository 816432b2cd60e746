extension Backoff {
    /// The delays of one retrying call, in order: an endless sequence that is its own iterator.
    ///
    /// ``next()`` never returns `nil`; the caller stops drawing when it stops retrying. A
    /// `Delays` is a value that draws jitter from the shared ``RandomSource`` it was
    /// made with; use it from one task at a time.
    public struct Delays: Sequence, IteratorProtocol, Sendable {
        private let kind: Kind
        private let random: RandomSource
        /// How many delays were drawn so far.
        private var index = 0
        /// The last cap (exponential) or the last delay (decorrelated jitter).
        private var previous: Duration?

        init(kind: Kind, random: RandomSource) {
            self.kind = kind
            self.random = random
        }

        /// The next delay.
        /// - Returns: The delay before the next attempt; never `nil`.
        public mutating func next() -> Duration? {
            defer { self.index += 1 }
            switch self.kind {
            case .constant(let delay):
                return delay
            case .linear(let initial, let increment, let maximum):
                // Stop adding once the cap is reached, so that the sum never overflows.
                let previous = self.previous ?? initial
                let delay = self.index == 0 ? initial : Swift.min(maximum, previous + increment)
                self.previous = delay
                return delay
            case .exponential(let initial, let multiplier, let maximum, let jitter):
                let cap = self.previous.map { Swift.min(maximum, $0 * multiplier) } ?? initial
                self.previous = cap
                return jitter ? cap * self.random.nextUnitDouble() : cap
            case .decorrelatedJitter(let base, let maximum):
                let previous = self.previous ?? base
                let upper = previous * 3
                let delay = Swift.min(maximum, base + (upper - base) * self.random.nextUnitDouble())
                self.previous = delay
                return delay
            }
        }
    }
}
