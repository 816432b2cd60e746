import KeelCore
import Synchronization

/// Counts the work in flight in a host (requests being handled, events buffered or being
/// handled) and lets shutdown wait until it reaches zero.
///
/// Entering and leaving are one atomic each; only the transition to zero while somebody waits
/// takes the lock. Once draining starts, work from outside any handler is refused while work
/// started by in-flight handlers (nested requests, events they publish) is still accepted, so
/// that in-flight work can finish.
package final class WorkTracker: Sendable {
    private let count = Atomic<Int>(0)
    private let draining = Atomic<Bool>(false)
    private let waiters = Lock<[UInt64: CheckedContinuation<Void, Never>]>([:])
    private let nextWaiter = Atomic<UInt64>(0)

    package init() {}

    /// Whether new work from outside a handler is refused.
    package var isDraining: Bool { self.draining.load(ordering: .acquiring) }

    /// The work in flight now.
    package var inFlight: Int { self.count.load(ordering: .acquiring) }

    /// Counts `amount` units of work in, unless draining and the work is not nested.
    /// - Returns: `false` when refused.
    package func enter(_ amount: Int = 1, nested: Bool) -> Bool {
        if !nested && self.draining.load(ordering: .acquiring) { return false }
        self.count.wrappingAdd(amount, ordering: .acquiringAndReleasing)
        return true
    }

    /// Counts `amount` units of work out.
    package func leave(_ amount: Int = 1) {
        let now = self.count.wrappingSubtract(amount, ordering: .acquiringAndReleasing).newValue
        precondition(now >= 0, "work tracker went negative: \(now)")
        if now == 0 {
            let resumed = self.waiters.withLock { waiters -> [CheckedContinuation<Void, Never>] in
                guard self.count.load(ordering: .acquiring) == 0 else { return [] }
                defer { waiters.removeAll() }
                return Array(waiters.values)
            }
            for waiter in resumed { waiter.resume() }
        }
    }

    /// Refuses new outside work from now on.
    package func startDraining() {
        self.draining.store(true, ordering: .releasing)
    }

    /// Suspends until no work is in flight, or the task is cancelled.
    package func waitUntilIdle() async {
        let id = self.nextWaiter.wrappingAdd(1, ordering: .relaxed).oldValue
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = self.waiters.withLock { waiters -> Bool in
                    if self.count.load(ordering: .acquiring) == 0 || Task.isCancelled { return true }
                    waiters[id] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = self.waiters.withLock { $0.removeValue(forKey: id) }
            waiter?.resume()
        }
    }
}
