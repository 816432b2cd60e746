extension Hedging {
    /// How many attempts a ``Hedging`` strategy may start, and when.
    ///
    /// The defaults start one hedge after two seconds (as Polly's hedging strategy does) and hedge
    /// at once on a failure. Set ``delay`` from the latency you measure — typically the 95th
    /// percentile of the call — rather than keeping the default.
    ///
    /// Invariants, checked with `precondition` when the configuration is made and again when the
    /// strategy is made: `maxAttempts >= 1` and `delay >= .zero`.
    public struct Configuration: Sendable, Hashable {
        /// The most attempts one call starts, the first one included. Default 2 (one hedge); at
        /// least 1, and 1 turns hedging off (the operation runs once, on the calling task).
        public var maxAttempts: Int
        /// How long the latest attempt may run without a success before the next one starts.
        /// Default two seconds; not negative. `.zero` starts all ``maxAttempts`` attempts at once.
        public var delay: Duration
        /// Whether a failed attempt starts the next attempt at once, without waiting for
        /// ``delay``. Default `true`.
        ///
        /// When `false`, only the delay starts attempts, and the call fails as soon as every
        /// attempt started so far has failed, even if more attempts are allowed. A
        /// `CancellationError` thrown by an attempt never starts another attempt.
        public var hedgeOnFailure: Bool

        /// Creates a configuration.
        /// - Parameters:
        ///   - maxAttempts: The most attempts per call, the first included; at least 1.
        ///   - delay: How long to wait for the latest attempt before starting another; not
        ///     negative.
        ///   - hedgeOnFailure: Whether a failure starts the next attempt at once.
        public init(maxAttempts: Int = 2, delay: Duration = .seconds(2), hedgeOnFailure: Bool = true) {
            self.maxAttempts = maxAttempts
            self.delay = delay
            self.hedgeOnFailure = hedgeOnFailure
            self.validate()
        }

        /// Checks the invariants.
        func validate() {
            precondition(self.maxAttempts >= 1, "maxAttempts must be at least 1, got \(self.maxAttempts)")
            precondition(self.delay >= .zero, "delay must not be negative, got \(self.delay)")
        }
    }
}
