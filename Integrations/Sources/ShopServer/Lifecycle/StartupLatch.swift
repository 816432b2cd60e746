import Synchronization

/// Tells when the server is up: the HTTP server listens (and on which port) and the Keel host has
/// started. Or that it never will be, because the server ended first.
///
/// **Concurrency.** A `Mutex` around the state; waiters are resumed after it is released, and a
/// cancelled waiter returns `nil` at once.
final class StartupLatch: Sendable {
    private struct State {
        var port: Int?
        var isHostRunning = false
        var isFinished = false
        var nextWaiter: UInt64 = 0
        var waiters: [UInt64: CheckedContinuation<Int?, Never>] = [:]

        /// The answer for waiters, once there is one: the port when both are up, `nil` when the
        /// server ended first.
        var outcome: Int?? {
            if let port, self.isHostRunning { return .some(port) }
            if self.isFinished { return .some(nil) }
            return nil
        }

        mutating func takeWaiters() -> (Int?, [CheckedContinuation<Int?, Never>])? {
            guard let outcome else { return nil }
            let waiters = Array(self.waiters.values)
            self.waiters = [:]
            return (outcome, waiters)
        }
    }

    private let state = Mutex(State())

    /// Records the port the HTTP server listens on.
    func listening(on port: Int) {
        self.update { $0.port = port }
    }

    /// Records that the host has started.
    func hostRunning() {
        self.update { $0.isHostRunning = true }
    }

    /// Records that the server has ended: waiters that are still waiting get `nil`.
    func finish() {
        self.update { $0.isFinished = true }
    }

    /// Suspends until the server listens and its host runs, or it ended first.
    /// - Returns: The port, or `nil` when the server ended before it was up or the task was
    ///   cancelled.
    func wait() async -> Int? {
        let id = self.state.withLock { state -> UInt64 in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Int?, Never>) in
                let answer = self.state.withLock { state -> Int?? in
                    if let outcome = state.outcome { return .some(outcome) }
                    if Task.isCancelled { return .some(nil) }
                    state.waiters[id] = continuation
                    return nil
                }
                if let answer { continuation.resume(returning: answer) }
            }
        } onCancel: {
            let waiter = self.state.withLock { $0.waiters.removeValue(forKey: id) }
            waiter?.resume(returning: nil)
        }
    }

    private func update(_ change: (inout State) -> Void) {
        let ready = self.state.withLock { state in
            change(&state)
            return state.takeWaiters()
        }
        guard let (outcome, waiters) = ready else { return }
        for waiter in waiters { waiter.resume(returning: outcome) }
    }
}
