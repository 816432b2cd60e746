/// The runner's published checkpoint and the callers waiting for it to pass a position: a pure
/// state machine behind the runner's lock. Methods return the continuations to resume; the
/// caller resumes them after releasing the lock.
struct CaughtUpWaiters {
    typealias Continuation = CheckedContinuation<Void, any Error>

    enum WaitAction {
        /// Already caught up: resume at once.
        case resume
        /// The task was cancelled before it parked.
        case cancel
        /// The runner is not running; the checkpoint is below the target.
        case fail
        /// Parked; the runner will resume it.
        case suspend
    }

    private(set) var checkpoint: UInt64 = 0
    private(set) var isRunning = false
    private var waiters: [UInt64: (target: UInt64, continuation: Continuation)] = [:]
    private var nextID: UInt64 = 0

    mutating func makeID() -> UInt64 {
        defer { self.nextID += 1 }
        return self.nextID
    }

    /// Parks `continuation` until the checkpoint passes `position`, unless it already has, the
    /// task is cancelled or the runner is not running.
    mutating func wait(
        id: UInt64,
        beyond position: UInt64,
        isCancelled: Bool,
        continuation: Continuation
    ) -> WaitAction {
        if self.checkpoint > position { return .resume }
        if isCancelled { return .cancel }
        if !self.isRunning { return .fail }
        self.waiters[id] = (position, continuation)
        return .suspend
    }

    /// Removes a cancelled waiter; returns it if it was still parked.
    mutating func cancel(id: UInt64) -> Continuation? {
        self.waiters.removeValue(forKey: id)?.continuation
    }

    /// Publishes a new checkpoint; returns the waiters it satisfies.
    mutating func advance(to checkpoint: UInt64) -> [Continuation] {
        self.checkpoint = checkpoint
        var ready: [Continuation] = []
        for (id, waiter) in self.waiters where checkpoint > waiter.target {
            ready.append(waiter.continuation)
            self.waiters[id] = nil
        }
        return ready
    }

    mutating func markRunning() {
        self.isRunning = true
    }

    /// The runner stopped: returns every waiter, to fail.
    mutating func markStopped() -> [Continuation] {
        self.isRunning = false
        let all = self.waiters.values.map(\.continuation)
        self.waiters = [:]
        return all
    }
}
