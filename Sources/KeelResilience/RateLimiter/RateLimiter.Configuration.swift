extension RateLimiter {
    /// Which algorithm a ``RateLimiter`` uses, how long a caller may wait for permits and how many
    /// may wait at once.
    ///
    /// The default is a token bucket of 100 permits refilled at 100 per second, refusing at once
    /// when no permit is free (`maxWait` `.zero`), with no bound on the queue (`maxQueued` `nil`).
    ///
    /// Invariants, checked with `precondition`: `maxWait` is `nil` or not negative; `maxQueued` is
    /// `nil` or not negative.
    public struct Configuration: Sendable, Hashable {
        /// How permits are counted. Default `.tokenBucket(capacity: 100, refillAmount: 100,
        /// refillInterval: .seconds(1))`.
        public var algorithm: Algorithm
        /// How long a caller may wait for its permits. `.zero` (the default) refuses at once with
        /// ``RateLimiterError/Code/rateLimited`` when they are not free; `nil` waits as long as it
        /// takes (cancellation still ends the wait). A caller is refused at once, without waiting,
        /// if its permits would not come due within `maxWait`.
        public var maxWait: Duration?
        /// The most callers waiting for permits at once. A caller that would have to wait while
        /// `maxQueued` others already do is refused at once with
        /// ``RateLimiterError/Code/queueFull``. `nil` (the default) puts no bound on the queue;
        /// `0` means nobody waits. A waiter leaves the queue when it is granted or cancelled, and
        /// its place is free at once. Only matters when `maxWait` is not `.zero`.
        public var maxQueued: Int?

        /// Creates a configuration.
        /// - Parameters:
        ///   - algorithm: How permits are counted.
        ///   - maxWait: The longest wait; `.zero` never waits, `nil` waits without limit.
        ///   - maxQueued: The most callers waiting at once; `nil` for no bound, at least 0 when set.
        public init(
            algorithm: Algorithm = .tokenBucket(capacity: 100, refillAmount: 100, refillInterval: .seconds(1)),
            maxWait: Duration? = .zero,
            maxQueued: Int? = nil
        ) {
            self.algorithm = algorithm
            self.maxWait = maxWait
            self.maxQueued = maxQueued
            self.validate()
        }

        func validate() {
            precondition(
                self.maxWait.map { $0 >= .zero } ?? true,
                "maxWait must not be negative, got \(String(describing: self.maxWait))"
            )
            precondition(
                self.maxQueued.map { $0 >= 0 } ?? true,
                "maxQueued must not be negative, got \(String(describing: self.maxQueued))"
            )
        }
    }

    /// How a ``RateLimiter`` counts permits. The set may grow.
    public struct Algorithm: Sendable, Hashable, CustomStringConvertible {
        enum Kind: Sendable, Hashable {
            case tokenBucket(capacity: Int, refillAmount: Int, refillInterval: Duration)
            case slidingWindow(limit: Int, window: Duration)
            case slidingWindowCounter(limit: Int, window: Duration, buckets: Int)
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
        /// the limit holds exactly over every window, with no burst at a bucket boundary, and each
        /// permit comes back exactly `window` after it was granted. For a large `limit`, prefer
        /// ``slidingWindowCounter(limit:window:buckets:)``, whose memory does not grow with it.
        /// - Parameters:
        ///   - limit: The most permits per window; at least 1.
        ///   - window: The window; positive.
        /// - Returns: The algorithm.
        public static func slidingWindow(limit: Int, window: Duration) -> Algorithm {
            precondition(limit >= 1, "limit must be at least 1, got \(limit)")
            precondition(window > .zero, "window must be positive, got \(window)")
            return Algorithm(.slidingWindow(limit: limit, window: window))
        }

        /// A bucketed sliding window: at most `limit` permits granted in any span of `window`,
        /// counted per bucket of `window / buckets`.
        ///
        /// Time is cut into buckets of `window / buckets` from the limiter's creation, and the
        /// limiter keeps one count of permits per bucket: memory grows with `buckets`, not with
        /// `limit` (`buckets + 1` counts). A caller is granted its permits when they and the
        /// permits counted in the buckets covering the last `window` (the current bucket and the
        /// `buckets` before it) are at most `limit`. The window starts empty.
        ///
        /// Admission is exact to bucket granularity: a permit leaves the window `window` after the
        /// *end of its bucket*, so up to `window / buckets` later than it would leave a
        /// ``slidingWindow(limit:window:)`` log, and never sooner. The limit therefore holds over
        /// every span of `window`, with no burst at a bucket boundary; the price is that permits
        /// come back in steps, at bucket ends, rather than one by one. More buckets bring it closer
        /// to the log, at a cost of one count each.
        ///
        /// With `limit: 100, window: .seconds(1), buckets: 10`, permits granted in the first
        /// bucket (from 0 up to 100 ms after the limiter was made) all come back at 1.1 s.
        /// Arithmetic is exact in `Duration` when `window` divides evenly by `buckets` (otherwise
        /// the bucket width is rounded down to the attosecond).
        /// - Parameters:
        ///   - limit: The most permits per window; at least 1.
        ///   - window: The window; positive.
        ///   - buckets: How many buckets the window is cut into; at least 1, and at most the
        ///     number of attoseconds in `window`.
        /// - Returns: The algorithm.
        public static func slidingWindowCounter(limit: Int, window: Duration, buckets: Int) -> Algorithm {
            precondition(limit >= 1, "limit must be at least 1, got \(limit)")
            precondition(window > .zero, "window must be positive, got \(window)")
            precondition(buckets >= 1, "buckets must be at least 1, got \(buckets)")
            precondition(
                window.attoseconds / Int128(buckets) > 0,
                "window must be at least \(buckets) attoseconds for \(buckets) buckets, got \(window)"
            )
            return Algorithm(.slidingWindowCounter(limit: limit, window: window, buckets: buckets))
        }

        /// The algorithm and its parameters.
        public var description: String {
            switch self.kind {
            case .tokenBucket(let capacity, let amount, let interval):
                return "tokenBucket(capacity: \(capacity), \(amount) per \(interval))"
            case .slidingWindow(let limit, let window):
                return "slidingWindow(\(limit) per \(window))"
            case .slidingWindowCounter(let limit, let window, let buckets):
                return "slidingWindowCounter(\(limit) per \(window), \(buckets) buckets)"
            }
        }

        var initialState: RateLimiterAlgorithmState {
            switch self.kind {
            case .tokenBucket(let capacity, let amount, let interval):
                return .tokenBucket(capacity: capacity, cost: interval / amount, tat: .zero)
            case .slidingWindow(let limit, let window):
                return .slidingWindow(limit: limit, window: window, log: [])
            case .slidingWindowCounter(let limit, let window, let buckets):
                return .slidingWindowCounter(RateLimiterWindowCounter(limit: limit, window: window, buckets: buckets))
            }
        }
    }
}
