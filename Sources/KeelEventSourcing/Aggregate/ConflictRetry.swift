import KeelCore

/// Whether ``AggregateRepository/execute(_:expecting:retry:_:)`` retries a command after an
/// optimistic-concurrency conflict, how often, and how long it waits first.
///
/// On a conflict (another writer appended to the stream between the load and the append) a retry
/// reloads the aggregate and runs the command again on the new state, so the command decides
/// afresh, under its invariants, with what the other writer did. Retry only commands that may
/// safely run more than once: pure functions of the aggregate and their arguments.
///
/// By default a retry runs at once (``/KeelCore/Backoff/immediate``), since the conflicting writer
/// has already finished. Where many writers contend for one aggregate, give the retries a
/// ``/KeelCore/Backoff`` with jitter so that the writers that lost together do not collide again:
///
/// ```swift
/// let retry = ConflictRetry.attempts(5, backoff: .exponential(initial: .milliseconds(5), maximum: .seconds(1)))
/// try await carts.execute(cartID, retry: retry) { cart in
///     try cart.add(item)
/// }
/// ```
///
/// The waits run on the repository's clock and draw their jitter from its
/// ``/KeelCore/RandomSource``.
public struct ConflictRetry: Hashable, Sendable, CustomStringConvertible {
    /// The most times the command runs, at least 1.
    public let maxAttempts: Int
    /// The waits before the second and later runs; ``/KeelCore/Backoff/immediate`` unless given.
    public let backoff: Backoff

    private init(maxAttempts: Int, backoff: Backoff) {
        self.maxAttempts = maxAttempts
        self.backoff = backoff
    }

    /// No retry: a conflict fails the command with ``AggregateError/Code/conflict``.
    public static let disabled = ConflictRetry(maxAttempts: 1, backoff: .immediate)

    /// Runs the command up to `count` times in all; a conflict on the last attempt fails with
    /// ``AggregateError/Code/conflict``.
    /// - Parameters:
    ///   - count: The attempts, at least 1 (1 is ``disabled``).
    ///   - backoff: The waits before the retries; at once by default.
    /// - Returns: The policy.
    /// - Precondition: `count >= 1`.
    public static func attempts(_ count: Int, backoff: Backoff = .immediate) -> ConflictRetry {
        precondition(count >= 1, "a command needs at least 1 attempt, got \(count)")
        return ConflictRetry(maxAttempts: count, backoff: backoff)
    }

    /// `disabled`, `up to n attempts`, or `up to n attempts, backoff …` when the retries wait.
    public var description: String {
        if self.maxAttempts == 1 { return "disabled" }
        if self.backoff == .immediate { return "up to \(self.maxAttempts) attempts" }
        return "up to \(self.maxAttempts) attempts, backoff \(self.backoff)"
    }
}
