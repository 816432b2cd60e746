import Foundation

/// One crash trial at a time, across every test target of a `swift test` run (they share one test
/// process): tests that run child processes against file stores, kill them and recover what they
/// left, or that cut a store's power, enter the lane first and leave it when they end.
///
/// Run side by side, such tests slowed each other down far more than their own work explains: on a
/// slow two-core machine the trials that took 130 s one after the other took 250–270 s together
/// (all of them write, `fsync` and reopen stores on one disk), pushing unrelated tests past their
/// time limits. A test that waits for the lane counts the wait in its own time limit,
/// so the lane's suites have limits long enough for the others' turns.
package enum CrashTrialLane {
    private struct State {
        var isBusy = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    /// `NSLock` rather than `Mutex`: ThreadSanitizer sees it on Linux.
    private static let lock = NSLock()
    nonisolated(unsafe) private static var state = State()

    /// Waits for the lane to be free and takes it. Not cancellable: the test that waits gets its
    /// turn, then ends as its cancellation says.
    package static func enter() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let isFree = Self.lock.withLock {
                guard Self.state.isBusy else {
                    Self.state.isBusy = true
                    return true
                }
                Self.state.waiters.append(continuation)
                return false
            }
            if isFree { continuation.resume() }
        }
    }

    /// Hands the lane to the next waiter, or frees it.
    package static func leave() {
        let next = Self.lock.withLock { () -> CheckedContinuation<Void, Never>? in
            guard !Self.state.waiters.isEmpty else {
                Self.state.isBusy = false
                return nil
            }
            return Self.state.waiters.removeFirst()
        }
        next?.resume()
    }
}
