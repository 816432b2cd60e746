/// A snapshot of a ``CircuitBreaker``'s state and its window, taken at one instant.
///
/// Read with ``CircuitBreaker/metrics``, which never suspends. Rates are `nil` until the window
/// holds ``CircuitBreaker/Configuration/minimumNumberOfCalls`` calls (or all the calls of a smaller
/// count-based window), because the breaker does not act on them before that.
public struct CircuitBreakerMetrics: Sendable, Hashable {
    /// The state.
    public var state: CircuitBreaker.State
    /// The fraction of buffered calls that failed, once there are enough of them.
    public var failureRate: Double?
    /// The fraction of buffered calls that were slow, once there are enough of them.
    public var slowCallRate: Double?
    /// The calls in the sliding window (closed and metrics-only), or the completed probes
    /// (half-open).
    public var bufferedCalls: Int
    /// The failed calls among ``bufferedCalls``.
    public var failedCalls: Int
    /// The slow calls among ``bufferedCalls``: ``slowFailedCalls`` plus ``slowSuccessfulCalls``.
    public var slowCalls: Int
    /// The slow calls that failed.
    public var slowFailedCalls: Int
    /// The slow calls that succeeded: the dependency answered, late.
    public var slowSuccessfulCalls: Int { self.slowCalls - self.slowFailedCalls }
    /// Failures in a row, as the consecutive-failure policy counts them.
    public var consecutiveFailures: Int
    /// Calls rejected since the breaker was made.
    public var notPermittedCalls: Int
    /// Half-open probe permits currently handed out (in flight or completed); 0 in other states.
    public var halfOpenPermitsTaken: Int
    /// Openings since the last close or reset (the backoff step).
    public var consecutiveOpenings: Int
}
