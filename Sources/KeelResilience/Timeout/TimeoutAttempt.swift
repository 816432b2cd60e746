import KeelCore
import Synchronization

/// One call of ``Timeout/execute(_:)`` whose operation runs in a child task: the handshake
/// between that child, the caller parked in ``TimeoutTimer/wait(for:until:)``, the timer and the
/// caller's cancellation. The first of them to resolve it decides the outcome; the others find it
/// resolved and do nothing.
final class TimeoutAttempt: Sendable {
    /// How the caller's wait ended.
    enum Outcome: Equatable, Sendable {
        /// The operation returned or threw.
        case finished
        /// The deadline came first.
        case expired
        /// The caller was cancelled first.
        case cancelled
        /// The timer was shut down: the caller must time the attempt itself.
        case orphaned
    }

    private enum State {
        /// The operation runs; the caller has not parked.
        case running
        /// The caller waits for the outcome.
        case parked(CheckedContinuation<Outcome, Never>)
        /// The outcome is decided (the caller had not parked, or has been resumed).
        case resolved(Outcome)
    }

    private let state = Lock(State.running)

    /// Whether the operation has finished (before the caller parked).
    var hasFinished: Bool {
        self.state.withLock {
            if case .resolved(.finished) = $0 { return true }
            return false
        }
    }

    /// Called by the operation's child task when the operation returns or throws.
    func finish() {
        self.resolve(.finished)
    }

    /// Decides the outcome, if it is not decided yet, and resumes the caller if it waits.
    /// - Parameter outcome: The outcome.
    func resolve(_ outcome: Outcome) {
        let continuation = self.state.withLock { state -> CheckedContinuation<Outcome, Never>? in
            switch state {
            case .running:
                state = .resolved(outcome)
                return nil
            case .parked(let continuation):
                state = .resolved(outcome)
                return continuation
            case .resolved:
                return nil
            }
        }
        continuation?.resume(returning: outcome)
    }

    /// Stores the caller's continuation, or resumes it at once when the outcome is decided.
    /// - Parameter continuation: The caller's continuation.
    /// - Returns: `true` when it is stored; `false` when it was resumed.
    func park(_ continuation: CheckedContinuation<Outcome, Never>) -> Bool {
        let decided = self.state.withLock { state -> Outcome? in
            switch state {
            case .running:
                state = .parked(continuation)
                return nil
            case .resolved(let outcome):
                return outcome
            case .parked:
                preconditionFailure("a timeout attempt parked twice")
            }
        }
        guard let decided else { return true }
        continuation.resume(returning: decided)
        return false
    }
}
