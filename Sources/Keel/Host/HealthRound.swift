import KeelCore
import Synchronization

/// The instances whose health report one round (or the end of shutdown) still waits for.
///
/// The host's health probes run in tasks of their own, so that a round can stop waiting for an
/// instance that does not answer in time; the round waits here, and the wait ends when every
/// instance answered, when ``finish()`` is called, or when the waiting task is cancelled.
final class HealthRound: Sendable {
    private struct State {
        var pending: Set<InstanceID>
        var waiter: CheckedContinuation<Void, Never>?
        var isFinished = false

        /// Ends the wait when nothing is pending or the round is finished: the waiter to resume.
        mutating func takeWaiterIfDone() -> CheckedContinuation<Void, Never>? {
            guard self.isFinished || self.pending.isEmpty else { return nil }
            defer { self.waiter = nil }
            return self.waiter
        }
    }

    private let state: Lock<State>

    /// Creates a round that waits for `pending`.
    /// - Parameter pending: The instances asked.
    init(pending: Set<InstanceID>) {
        self.state = Lock(State(pending: pending))
    }

    /// The instances that have not answered.
    var unanswered: Set<InstanceID> {
        self.state.withLock { $0.pending }
    }

    /// Records `id`'s answer.
    /// - Parameter id: The instance that answered.
    func answered(_ id: InstanceID) {
        let waiter = self.state.withLock { state in
            state.pending.remove(id)
            return state.takeWaiterIfDone()
        }
        waiter?.resume()
    }

    /// Ends the wait whatever is still pending.
    func finish() {
        let waiter = self.state.withLock { state in
            state.isFinished = true
            return state.takeWaiterIfDone()
        }
        waiter?.resume()
    }

    /// Suspends until every instance answered, ``finish()`` is called or the task is cancelled.
    /// One task waits on a round.
    func wait() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = self.state.withLock { state in
                    if state.isFinished || state.pending.isEmpty { return true }
                    precondition(state.waiter == nil, "one task waits on a health round")
                    state.waiter = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            self.finish()
        }
    }
}
