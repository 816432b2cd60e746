import KeelCore
import Synchronization

/// Counts the work in flight in a host (requests being handled, events buffered or being
/// handled) and lets shutdown wait until it reaches zero.
///
/// The count and the draining flag are one atomic word, so admitting outside work (the flag is
/// clear, and the count goes up) is one compare-and-exchange: shutdown can never see the flag
/// set and the count at zero while an admission it did not count is under way. Leaving is one
/// atomic; only the transition to zero while somebody waits takes the lock. Once draining starts,
/// work from outside any handler is refused while work started by in-flight handlers (nested
/// requests, events they publish) is still accepted, so that in-flight work can finish.
package final class WorkTracker: Sendable {
    /// The draining flag (``drainingBit``) and, below it, the work in flight.
    private let state = Atomic<Int>(0)
    private let waiters = Lock<[UInt64: CheckedContinuation<Void, Never>]>([:])
    private let nextWaiter = Atomic<UInt64>(0)

    private static let drainingBit = 1 << 62
    private static let countMask = drainingBit - 1

    /// Tests: runs between reading the state and committing an outside admission, where a drain
    /// that starts must still refuse the work (the exchange then fails and the state is read again).
    private let beforeAdmission: (@Sendable () -> Void)?

    package init(beforeAdmission: (@Sendable () -> Void)? = nil) {
        self.beforeAdmission = beforeAdmission
    }

    /// Whether new work from outside a handler is refused.
    package var isDraining: Bool { self.state.load(ordering: .acquiring) & Self.drainingBit != 0 }

    /// The work in flight now.
    package var inFlight: Int { self.state.load(ordering: .acquiring) & Self.countMask }

    /// Counts `amount` units of work in, unless draining and the work is not nested.
    /// - Returns: `false` when refused.
    package func enter(_ amount: Int = 1, nested: Bool) -> Bool {
        if nested {
            self.state.wrappingAdd(amount, ordering: .acquiringAndReleasing)
            return true
        }
        var current = self.state.load(ordering: .acquiring)
        while current & Self.drainingBit == 0 {
            self.beforeAdmission?()
            let (exchanged, original) = self.state.weakCompareExchange(
                expected: current,
                desired: current + amount,
                successOrdering: .acquiringAndReleasing,
                failureOrdering: .acquiring
            )
            if exchanged { return true }
            current = original
        }
        return false
    }

    /// Counts `amount` units of work out.
    package func leave(_ amount: Int = 1) {
        let now = self.state.wrappingSubtract(amount, ordering: .acquiringAndReleasing).newValue & Self.countMask
        // A count below zero wraps to the top of the mask: far more work than can be in flight.
        precondition(now <= Self.countMask / 2, "work tracker went negative")
        if now == 0 {
            let resumed = self.waiters.withLock { waiters -> [CheckedContinuation<Void, Never>] in
                guard self.inFlight == 0 else { return [] }
                defer { waiters.removeAll() }
                return Array(waiters.values)
            }
            for waiter in resumed { waiter.resume() }
        }
    }

    /// Refuses new outside work from now on.
    package func startDraining() {
        self.state.bitwiseOr(Self.drainingBit, ordering: .acquiringAndReleasing)
    }

    /// Suspends until no work is in flight, or the task is cancelled.
    package func waitUntilIdle() async {
        let id = self.nextWaiter.wrappingAdd(1, ordering: .relaxed).oldValue
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = self.waiters.withLock { waiters -> Bool in
                    if self.inFlight == 0 || Task.isCancelled { return true }
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
