import Synchronization

/// A task parks on a continuation here until another task wakes it: the bare wake-up hop the
/// latency scenario compares the bus with.
final class Parker: Sendable {
    private struct State {
        var parked: CheckedContinuation<Bool, Never>?
        var pendingWakes = 0
        var isClosed = false
    }

    private let state = Mutex(State())

    /// Suspends until ``wake()`` or ``close()``; returns at once for a wake that came first.
    /// - Returns: `true` when woken, `false` when closed.
    func park() async -> Bool {
        await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            let immediate = self.state.withLock { state -> Bool? in
                if state.isClosed { return false }
                if state.pendingWakes > 0 {
                    state.pendingWakes -= 1
                    return true
                }
                precondition(state.parked == nil, "two tasks park on one parker")
                state.parked = continuation
                return nil
            }
            if let immediate { continuation.resume(returning: immediate) }
        }
    }

    /// Resumes the parked task, or lets its next ``park()`` return at once.
    func wake() {
        let parked = self.state.withLock { state -> CheckedContinuation<Bool, Never>? in
            guard let parked = state.parked else {
                state.pendingWakes += 1
                return nil
            }
            state.parked = nil
            return parked
        }
        parked?.resume(returning: true)
    }

    /// Resumes the parked task with `false`; every later ``park()`` returns `false`.
    func close() {
        let parked = self.state.withLock { state -> CheckedContinuation<Bool, Never>? in
            state.isClosed = true
            defer { state.parked = nil }
            return state.parked
        }
        parked?.resume(returning: false)
    }
}
