extension Bulkhead {
    /// How many operations a ``Bulkhead`` runs at once, and how many may wait and for how long.
    ///
    /// The defaults suit a call to a dependency that answers in milliseconds: 25 at once (as
    /// Resilience4j's semaphore bulkhead), up to 100 waiting, for at most one second.
    ///
    /// Invariants, checked with `precondition` when the bulkhead is made: `maxConcurrent >= 1`,
    /// `maxQueued >= 0`, and `maxWait` is `nil` or positive. To refuse rather than wait when every
    /// permit is taken, set `maxQueued` to 0.
    public struct Configuration: Sendable, Hashable {
        /// The most operations running at once. Default 25; at least 1.
        public var maxConcurrent: Int
        /// The most operations waiting for a permit; one more is refused at once with
        /// ``BulkheadError/Code/queueFull``. Default 100; 0 means never wait.
        public var maxQueued: Int
        /// How long an operation may wait for a permit before it is refused with
        /// ``BulkheadError/Code/waitTimedOut``; `nil` waits without limit (cancellation still
        /// ends the wait). Default one second; positive when set.
        public var maxWait: Duration?

        /// Creates a configuration.
        /// - Parameters:
        ///   - maxConcurrent: The most operations running at once; at least 1.
        ///   - maxQueued: The most operations waiting; at least 0.
        ///   - maxWait: The longest wait, or `nil` for no limit; positive when set.
        public init(maxConcurrent: Int = 25, maxQueued: Int = 100, maxWait: Duration? = .seconds(1)) {
            self.maxConcurrent = maxConcurrent
            self.maxQueued = maxQueued
            self.maxWait = maxWait
            self.validate()
        }

        /// Checks the invariants.
        func validate() {
            precondition(self.maxConcurrent >= 1, "maxConcurrent must be at least 1, got \(self.maxConcurrent)")
            precondition(self.maxQueued >= 0, "maxQueued must not be negative, got \(self.maxQueued)")
            precondition(
                self.maxWait.map { $0 > .zero } ?? true,
                "maxWait must be positive or nil, got \(String(describing: self.maxWait))"
            )
        }
    }
}
