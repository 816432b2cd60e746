extension ProjectionRunner {
    /// How a runner reads, commits and treats events its projection cannot handle.
    public struct Configuration: Sendable {
        /// Events read, handled and committed as one batch (with one checkpoint write). At least
        /// 1; default 256. Larger pages rebuild faster; smaller pages make each commit (and so
        /// the delay before ``ProjectionRunner/waitUntilCaughtUp(to:)`` returns) shorter.
        public var pageSize: Int = 256
        /// How many times the projection is called with an event before it counts as poison. At
        /// least 1; default 3.
        public var maxAttempts: Int = 3
        /// The pause before each retry, on the runner's clock.
        public var backoff: Backoff = .exponential(initial: .milliseconds(100), maximum: .seconds(5))
        /// What to do with a poison event; default ``PoisonEventPolicy/park``.
        public var poisonEvents: PoisonEventPolicy = .park

        /// The default configuration.
        public init() {}
    }

    /// The pauses between attempts at an event: a pure schedule of durations.
    public struct Backoff: Sendable, Hashable {
        /// The pause before the second attempt.
        public var initial: Duration
        /// Each later pause is the previous one times this, at least 1.
        public var multiplier: Double
        /// No pause is longer.
        public var maximum: Duration

        /// A schedule starting at `initial`, doubling, capped at `maximum`.
        /// - Parameters:
        ///   - initial: The first pause.
        ///   - maximum: The longest pause.
        /// - Returns: The schedule.
        public static func exponential(initial: Duration, maximum: Duration) -> Backoff {
            Backoff(initial: initial, multiplier: 2, maximum: maximum)
        }

        /// Retry at once.
        public static let none = Backoff(initial: .zero, multiplier: 1, maximum: .zero)

        /// Creates a schedule.
        /// - Parameters:
        ///   - initial: The first pause, not negative.
        ///   - multiplier: The growth factor, at least 1.
        ///   - maximum: The longest pause, not below `initial`.
        public init(initial: Duration, multiplier: Double, maximum: Duration) {
            precondition(
                initial >= .zero && multiplier >= 1 && maximum >= initial,
                "invalid backoff \(initial), \(multiplier), \(maximum)"
            )
            self.initial = initial
            self.multiplier = multiplier
            self.maximum = maximum
        }

        /// The pause after failed attempt number `attempt` (from 1).
        /// - Parameter attempt: The attempt that failed.
        /// - Returns: The pause.
        public func delay(afterAttempt attempt: Int) -> Duration {
            var delay = self.initial
            for _ in 1..<max(1, attempt) {
                delay = delay * self.multiplier
                if delay >= self.maximum { return self.maximum }
            }
            return min(delay, self.maximum)
        }
    }

    /// What a runner does with an event its projection threw for on every attempt.
    public struct PoisonEventPolicy: Sendable, Hashable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case park
            case stop
        }

        private let base: Base

        private init(_ base: Base) {
            self.base = base
        }

        /// Record a ``DeadLetter`` and go on with the next event; the dead letter and the
        /// checkpoint past the event are committed together.
        public static let park = PoisonEventPolicy(.park)
        /// Commit the events before it and stop with ``ProjectionError/Code/handlerFailed``;
        /// the checkpoint stays at the event, so the next start tries it again.
        public static let stop = PoisonEventPolicy(.stop)

        /// `park` or `stop`.
        public var description: String { self.base.rawValue }
    }
}
