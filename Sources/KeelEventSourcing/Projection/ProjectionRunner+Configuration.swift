import KeelCore

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
        /// The pauses before the retries of one event, on the runner's clock, with jitter (if
        /// any) drawn from the runner's ``/KeelCore/RandomSource``; each event starts the schedule
        /// again. Default: 100 ms doubling up to 5 s, without jitter
        /// (`.exponential(initial: .milliseconds(100), maximum: .seconds(5), jitter: false)`);
        /// ``/KeelCore/Backoff/immediate`` retries at once.
        public var backoff: Backoff = .exponential(initial: .milliseconds(100), maximum: .seconds(5), jitter: false)
        /// What to do with a poison event; default ``PoisonEventPolicy/park``.
        public var poisonEvents: PoisonEventPolicy = .park

        /// The default configuration.
        public init() {}
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

        /// Record a ``ParkedEvent`` and go on with the next event; the parked event and the
        /// checkpoint past the event are committed together.
        public static let park = PoisonEventPolicy(.park)
        /// Commit the events before it and stop with ``ProjectionError/Code/handlerFailed``;
        /// the checkpoint stays at the event, so the next start tries it again.
        public static let stop = PoisonEventPolicy(.stop)

        /// `park` or `stop`.
        public var description: String { self.base.rawValue }
    }
}
