extension RateLimiter {
    /// Which algorithm a ``RateLimiter`` uses and how long a caller may wait for permits.
    ///
    /// The default is a token bucket of 100 permits refilled at 100 per second, refusing at once
    /// when no permit is free (`maxWait` `.zero`).
    ///
    /// Invariant, checked with `precondition`: `maxWait` is `nil` or not negative.
    public struct Configuration: Sendable, Hashable {
        /// How permits are counted. Default `.tokenBucket(capacity: 100, refillAmount: 100,
        /// refillInterval: .seconds(1))`.
        public var algorithm: Algorithm
        /// How long a caller may wait for its permits. `.zero` (the default) refuses at once with
        /// ``RateLimiterError/Code/rateLimited`` when they are not free; `nil` waits as long as it
        /// takes (cancellation still ends the wait). A caller is refused at once, without waiting,
        /// if its permits would not come due within `maxWait`.
        public var maxWait: Duration?

        /// Creates a configuration.
        /// - Parameters:
        ///   - algorithm: How permits are counted.
        ///   - maxWait: The longest wait; `.zero` never waits, `nil` waits without limit.
        public init(
            algorithm: Algorithm = .tokenBucket(capacity: 100, refillAmount: 100, refillInterval: .seconds(1)),
            maxWait: Duration? = .zero
        ) {
            self.algorithm = algorithm
            self.maxWait = maxWait
            self.validate()
        }

        func validate() {
            precondition(
                self.maxWait.map { $0 >= .zero } ?? true,
                "maxWait must not be negative, got \(String(describing: self.maxWait))"
            )
        }
    }

    /// How a ``RateLimiter`` counts permits. The set may grow.
    public struct Algorithm: Sendable, Hashable, CustomStringConvertible {
        enum Kind: Sendable, Hashable {
            case tokenBucket(capacity: Int, refillAmount: Int, refillInterval: Duration)
            case slidingWindow(limit: Int, window: Duration)
        }

        let kind: Kind

        private init(_ kind: Kind) {
            self.kind = kind
        }

        /// A token bucket: up to `capacity` permits at once (a burst), refilled continuously at
        /// `refillAmount` per `refillInterval`.
        ///
        /// Refill is continuous: with 10 per second, one permit comes back every 100 ms. The bucket
        /// starts full. Arithmetic is exact in `Duration` when `refillInterval` divides evenly by
        /// `refillAmount`.
        /// - Parameters:
        ///   - capacity: The most permits held; at least 1.
        ///   - refillAmount: Permits added per interval; at least 1.
        ///   - refillInterval: The interval; positive.
        /// - Returns: The algorithm.
        public static func tokenBucket(capacity: Int, refillAmount: Int, refillInterval: Duration) -> Algorithm {
            precondition(capacity >= 1, "capacity must be at least 1, got \(capacity)")
            precondition(refillAmount >= 1, "refillAmount must be at least 1, got \(refillAmount)")
            precondition(refillInterval > .zero, "refillInterval must be positive, got \(refillInterval)")
            return Algorithm(
                .tokenBucket(capacity: capacity, refillAmount: refillAmount, refillInterval: refillInterval)
            )
        }

        /// A sliding window log: at most `limit` permits granted in any span of `window`.
        ///
        /// Every grant is remembered until `window` after it was made (at most `limit` entries), so
        /// the limit holds exactly over every window, with no burst at a bucket boundary.
        /// - Parameters:
        ///   - limit: The most permits per window; at least 1.
        ///   - window: The window; positive.
        /// - Returns: The algorithm.
        public static func slidingWindow(limit: Int, window: Duration) -> Algorithm {
            precondition(limit >= 1, "limit must be at least 1, got \(limit)")
            precondition(window > .zero, "window must be positive, got \(window)")
            return Algorithm(.slidingWindow(limit: limit, window: window))
        }

        /// The algorithm and its parameters.
        public var description: String {
            switch self.kind {
            case .tokenBucket(let capacity, let amount, let interval):
                return "tokenBucket(capacity: \(capacity), \(amount) per \(interval))"
            case .slidingWindow(let limit, let window):
                return "slidingWindow(\(limit) per \(window))"
            }
        }

        var initialState: RateLimiterAlgorithmState {
            switch self.kind {
            case .tokenBucket(let capacity, let amount, let interval):
                return .tokenBucket(capacity: capacity, cost: interval / amount, tat: .zero)
            case .slidingWindow(let limit, let window):
                return .slidingWindow(limit: limit, window: window, log: [])
            }
        }
    }
}
