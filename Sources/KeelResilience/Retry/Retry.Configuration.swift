import KeelCore

extension Retry {
    /// How often and how patiently a ``Retry`` retries, and which outcomes it retries.
    ///
    /// The defaults suit an idempotent call to a dependency: 3 attempts in all, exponential
    /// backoff from 100 ms doubling up to 5 seconds with full jitter, every error retried except
    /// `CancellationError`, no result retried, no budget.
    ///
    /// Invariant, checked with `precondition`: `maxAttempts >= 1` (1 means never retry).
    public struct Configuration: Sendable {
        /// The most attempts in all, the first included. Default 3; at least 1.
        public var maxAttempts: Int
        /// The delays between attempts. Default `.exponential(initial: .milliseconds(100),
        /// maximum: .seconds(5))` with jitter.
        public var backoff: Backoff
        /// Whether an error is worth another attempt. Default: every error but a
        /// ``CircuitBreakerError`` (an open breaker rejects every attempt until its open duration
        /// passes; retrying only spends the budget). `CancellationError` is never retried,
        /// whatever this says. Called on the retrying task, once per failure.
        public var shouldRetryError: @Sendable (any Error) -> Bool
        /// Whether a returned value is worth another attempt (for example a "try later" reply).
        /// The value is passed as `any Sendable`; cast it to your type. Default `nil`: results
        /// are never retried. When attempts run out, the last value is returned.
        public var shouldRetryResult: (@Sendable (any Sendable) -> Bool)?
        /// The budget shared with other calls, or `nil` for none. Default `nil`.
        public var budget: RetryBudget?

        /// Creates a configuration.
        /// - Parameters:
        ///   - maxAttempts: The most attempts in all; at least 1.
        ///   - backoff: The delays between attempts.
        ///   - budget: The shared budget, if any.
        ///   - shouldRetryError: Whether an error is worth another attempt.
        ///   - shouldRetryResult: Whether a value is worth another attempt; `nil` for never.
        public init(
            maxAttempts: Int = 3,
            backoff: Backoff = .exponential(initial: .milliseconds(100), maximum: .seconds(5)),
            budget: RetryBudget? = nil,
            shouldRetryError: @escaping @Sendable (any Error) -> Bool = { !($0 is CircuitBreakerError) },
            shouldRetryResult: (@Sendable (any Sendable) -> Bool)? = nil
        ) {
            self.maxAttempts = maxAttempts
            self.backoff = backoff
            self.budget = budget
            self.shouldRetryError = shouldRetryError
            self.shouldRetryResult = shouldRetryResult
            self.validate()
        }

        func validate() {
            precondition(self.maxAttempts >= 1, "maxAttempts must be at least 1, got \(self.maxAttempts)")
        }
    }
}
