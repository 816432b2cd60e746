/// The one place where Keel starts a task that is not a child of a task group.
///
/// Every such task passes on the owner's task executor preference, so that a whole host can be
/// run on one (for example seeded, deterministic) executor: a bare `Task {}` does not inherit a
/// preference. The caller owns the returned task: it must cancel and await it before it is
/// itself finished.
///
/// Without an executor, the task is made with plain `Task(operation:)`, not with a `nil`
/// preference: a task made with `Task(executorPreference: nil)` is still marked as having a
/// preference, and then every executor switch it makes (each `await` that returns to it) looks
/// the preference up under the task's status-record lock. Profiling the bus's subscriber loop
/// showed that lookup at 17% of its samples; made plainly, the task skips it.
package enum TaskSpawner {
    /// Starts `operation` as an unstructured task that prefers `executor`.
    /// - Parameters:
    ///   - executor: The task executor preference, or `nil` for the global executor.
    ///   - operation: The work.
    /// - Returns: The task, which the caller owns.
    @discardableResult
    package static func spawn(
        executor: (any TaskExecutor)?,
        _ operation: sending @escaping @isolated(any) () async -> Void
    ) -> Task<Void, Never> {
        // Unstructured by design: the caller keeps the handle, cancels it and awaits it.
        guard let executor else { return Task(operation: operation) }
        return Task(executorPreference: executor, operation: operation)
    }

    /// Starts `operation`, which returns a value or throws, as an unstructured task that prefers
    /// `executor`.
    /// - Parameters:
    ///   - executor: The task executor preference, or `nil` for the global executor.
    ///   - operation: The work.
    /// - Returns: The task, which the caller owns.
    package static func spawn<Success: Sendable>(
        executor: (any TaskExecutor)?,
        _ operation: sending @escaping @isolated(any) () async throws -> Success
    ) -> Task<Success, any Error> {
        guard let executor else { return Task(operation: operation) }
        return Task(executorPreference: executor, operation: operation)
    }

    /// Starts `operation`, which returns a value and does not throw, as an unstructured task that
    /// prefers `executor`.
    /// - Parameters:
    ///   - executor: The task executor preference, or `nil` for the global executor.
    ///   - operation: The work.
    /// - Returns: The task, which the caller owns.
    package static func spawn<Success: Sendable>(
        executor: (any TaskExecutor)?,
        _ operation: sending @escaping @isolated(any) () async -> Success
    ) -> Task<Success, Never> {
        guard let executor else { return Task(operation: operation) }
        return Task(executorPreference: executor, operation: operation)
    }
}
