import KeelCore

extension SagaRunner {
    /// How persistently a runner's sagas compensate and go forward past their pivot.
    ///
    /// Invariant, checked with `precondition`: both attempt counts are at least 1.
    public struct Configuration: Sendable {
        /// The most attempts of one compensation before it counts as failed and the run needs
        /// intervention. Default 5.
        public var compensationAttempts: Int
        /// The delays between a compensation's attempts, on the runner's clock. Default
        /// exponential from 100 ms up to 10 s, with jitter.
        public var compensationBackoff: Backoff
        /// The most attempts of one retriable step before it fails (past the pivot, the run then
        /// needs intervention). Default 10.
        public var retriableAttempts: Int
        /// The delays between a retriable step's attempts. Default exponential from 100 ms up to
        /// 10 s, with jitter.
        public var retriableBackoff: Backoff

        /// Creates a configuration.
        /// - Parameters:
        ///   - compensationAttempts: The most attempts of one compensation; at least 1.
        ///   - compensationBackoff: The delays between them.
        ///   - retriableAttempts: The most attempts of one retriable step; at least 1.
        ///   - retriableBackoff: The delays between them.
        public init(
            compensationAttempts: Int = 5,
            compensationBackoff: Backoff = .exponential(initial: .milliseconds(100), maximum: .seconds(10)),
            retriableAttempts: Int = 10,
            retriableBackoff: Backoff = .exponential(initial: .milliseconds(100), maximum: .seconds(10))
        ) {
            precondition(
                compensationAttempts >= 1,
                "compensationAttempts must be at least 1, got \(compensationAttempts)"
            )
            precondition(retriableAttempts >= 1, "retriableAttempts must be at least 1, got \(retriableAttempts)")
            self.compensationAttempts = compensationAttempts
            self.compensationBackoff = compensationBackoff
            self.retriableAttempts = retriableAttempts
            self.retriableBackoff = retriableBackoff
        }
    }
}
