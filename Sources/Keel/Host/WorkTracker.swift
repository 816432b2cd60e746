import KeelCore
import Synchronization

/// Counts the work in flight in a host (requests being handled, events buffered or being
/// handled) and lets shutdown wait until it reaches zero.
///
/// The count, the draining flag and a flag saying somebody waits are one atomic word, so admitting
/// outside work (the draining flag is clear, and the count goes up) is one compare-and-exchange:
/// shutdown can never see the flag set and the count at zero while an admission it did not count
/// is under way. Leaving is one atomic; only the transition to zero while somebody waits takes the
/// lock (a sequential caller goes from one to zero on every request). Once draining starts, work
/// from outside any handler is refused while work started by in-flight handlers (nested requests,
/// events they publish) is still accepted, so that in-flight work can finish.
package final class WorkTracker: Sendable {
    /// The draining flag (``drainingBit``), the waiting flag (``waitingBit``) and, below them,
    /// the work in flight.
    private let state = Atomic<Int>(0)
    /// The waiters; ``waitingBit`` is set exactly while this is not empty (both change under its
    /// lock).
    private let waiters = Lock<[UInt64: CheckedContinuation<Void, Never>]>([:])
    private let nextWaiter = Atomic<UInt64>(0)

    private static let drainingBit = 1 << 62
    private static let waitingBit = 1 << 61
    private static let countMask = waitingBit - 1

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
        let state = self.state.wrappingSubtract(amount, ordering: .acquiringAndReleasing).newValue
        let now = state & Self.countMask
        // A count below zero wraps to the top of the mask: far more work than can be in flight.
        precondition(now <= Self.countMask / 2, "work tracker went negative")
        // A waiter sets its flag before it reads the count, in the same word: either this
        // subtraction sees the flag, or the waiter sees the count this subtraction left.
        if now == 0 && state & Self.waitingBit != 0 {
            let resumed = self.waiters.withLock { waiters -> [CheckedContinuation<Void, Never>] in
                guard self.inFlight == 0 else { return [] }
                defer {
                    waiters.removeAll()
                    self.state.bitwiseAnd(~Self.waitingBit, ordering: .acquiringAndReleasing)
                }
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
                    if Task.isCancelled { return true }
                    // The flag first, then the count, from the same read-modify-write: a `leave`
                    // that brings the count to zero after this sees the flag and takes the lock.
                    let state = self.state.bitwiseOr(Self.waitingBit, ordering: .acquiringAndReleasing).newValue
                    if state & Self.countMask == 0 {
                        if waiters.isEmpty { self.state.bitwiseAnd(~Self.waitingBit, ordering: .acquiringAndReleasing) }
                        return true
                    }
                    waiters[id] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = self.waiters.withLock { waiters in
                defer {
                    if waiters.isEmpty { self.state.bitwiseAnd(~Self.waitingBit, ordering: .acquiringAndReleasing) }
                }
                return waiters.removeValue(forKey: id)
            }
            waiter?.resume()
        }
    }
}
