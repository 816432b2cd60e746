/// Whether ``AggregateRepository/execute(_:expecting:retry:_:)`` retries a command after an
/// optimistic-concurrency conflict, and how often.
///
/// On a conflict (another writer appended to the stream between the load and the append) a retry
/// reloads the aggregate and runs the command again on the new state, so the command decides
/// afresh, under its invariants, with what the other writer did. Retry only commands that may
/// safely run more than once: pure functions of the aggregate and their arguments. Retries run at
/// once, without a delay, since the conflicting writer has already finished.
public struct ConflictRetry: Hashable, Sendable, CustomStringConvertible {
    /// The most times the command runs, at least 1.
    public let maxAttempts: Int

    private init(maxAttempts: Int) {
        self.maxAttempts = maxAttempts
    }

    /// No retry: a conflict fails the command with ``AggregateError/Code/conflict``.
    public static let disabled = ConflictRetry(maxAttempts: 1)

    /// Runs the command up to `count` times in all; a conflict on the last attempt fails with
    /// ``AggregateError/Code/conflict``.
    /// - Parameter count: The attempts, at least 1 (1 is ``disabled``).
    /// - Returns: The policy.
    /// - Precondition: `count >= 1`.
    public static func attempts(_ count: Int) -> ConflictRetry {
        precondition(count >= 1, "a command needs at least 1 attempt, got \(count)")
        return ConflictRetry(maxAttempts: count)
    }

    /// `disabled` or `up to n attempts`.
    public var description: String {
        self.maxAttempts == 1 ? "disabled" : "up to \(self.maxAttempts) attempts"
    }
}
