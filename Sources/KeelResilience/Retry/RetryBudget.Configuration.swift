extension RetryBudget {
    /// How many retries a ``RetryBudget`` allows.
    ///
    /// Over the last ``window``, retries may number at most `minimumRetries + ratio × calls`.
    /// The defaults are Finagle's: 20 % of calls, plus 10 retries per 10-second window so that a
    /// service with little traffic can still retry.
    ///
    /// Invariants, checked with `precondition`: `ratio` is between 0 and 1000 (finite),
    /// `minimumRetries >= 0`, `window` is positive and `buckets >= 1`.
    public struct Configuration: Sendable, Hashable {
        /// Retries allowed per call in the window (0.2 = one retry for every five calls).
        /// Default 0.2; 0 allows only ``minimumRetries``.
        public var ratio: Double
        /// Retries allowed in every window whatever the traffic. Default 10.
        public var minimumRetries: Int
        /// How far back calls and retries count. Default 10 seconds.
        public var window: Duration
        /// How many buckets the window is divided into; a bucket ages out as a whole. Default 10.
        public var buckets: Int

        /// Creates a configuration.
        /// - Parameters:
        ///   - ratio: Retries allowed per call; between 0 and 1000.
        ///   - minimumRetries: Retries allowed per window whatever the traffic; at least 0.
        ///   - window: How far back calls count; positive.
        ///   - buckets: How many buckets the window has; at least 1.
        public init(ratio: Double = 0.2, minimumRetries: Int = 10, window: Duration = .seconds(10), buckets: Int = 10) {
            self.ratio = ratio
            self.minimumRetries = minimumRetries
            self.window = window
            self.buckets = buckets
            self.validate()
        }

        func validate() {
            precondition(self.ratio >= 0 && self.ratio <= 1000, "ratio must be between 0 and 1000, got \(self.ratio)")
            precondition(self.minimumRetries >= 0, "minimumRetries must not be negative, got \(self.minimumRetries)")
            precondition(self.window > .zero, "window must be positive, got \(self.window)")
            precondition(self.buckets >= 1, "buckets must be at least 1, got \(self.buckets)")
        }
    }
}
