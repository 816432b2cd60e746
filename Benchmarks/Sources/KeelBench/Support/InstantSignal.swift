import Synchronization

/// A one-shot hand-off of a clock reading from the task being measured to the measuring task.
///
/// The woken side calls ``fire(_:)`` with the instant it started; the measuring side calls
/// ``wait()``, which returns that instant whether it fired before or after the call.
final class InstantSignal: Sendable {
    private enum State {
        case idle
        case fired(ContinuousClock.Instant)
        case waiting(CheckedContinuation<ContinuousClock.Instant, Never>)
    }

    private let state = Mutex(State.idle)

    /// Delivers `instant` to the waiter, or keeps it for the next ``wait()``.
    /// - Parameter instant: When the woken side started.
    func fire(_ instant: ContinuousClock.Instant) {
        let waiter = self.state.withLock { state -> CheckedContinuation<ContinuousClock.Instant, Never>? in
            switch state {
            case .idle:
                state = .fired(instant)
                return nil
            case .waiting(let continuation):
                state = .idle
                return continuation
            case .fired:
                preconditionFailure("signal fired twice without a wait in between")
            }
        }
        waiter?.resume(returning: instant)
    }

    /// Suspends until the signal fires, then resets it.
    /// - Returns: The instant passed to ``fire(_:)``.
    func wait() async -> ContinuousClock.Instant {
        await withCheckedContinuation { (continuation: CheckedContinuation<ContinuousClock.Instant, Never>) in
            let fired = self.state.withLock { state -> ContinuousClock.Instant? in
                switch state {
                case .idle:
                    state = .waiting(continuation)
                    return nil
                case .fired(let instant):
                    state = .idle
                    return instant
                case .waiting:
                    preconditionFailure("two tasks wait on one signal")
                }
            }
            if let fired { continuation.resume(returning: fired) }
        }
    }
}
