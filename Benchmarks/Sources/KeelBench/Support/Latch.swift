import Synchronization

/// Lets one task wait until a known number of arrivals have happened (events handled, elements
/// consumed), whichever tasks they happen on.
///
/// An arrival is one atomic decrement; only the last one takes the lock, to resume the waiter.
/// Both sides of a throughput scenario detect completion with it, so its cost falls on both.
final class Latch: Sendable {
    private let remaining = Atomic<Int>(0)
    private let waiter = Mutex<CheckedContinuation<Void, Never>?>(nil)

    /// Expects `count` arrivals from now on. Call it only while nobody waits.
    /// - Parameter count: The arrivals to wait for; at least 1.
    func reset(expecting count: Int) {
        precondition(count >= 1, "a latch expects at least one arrival, got \(count)")
        self.remaining.store(count, ordering: .releasing)
    }

    /// Counts one arrival; the last one resumes the waiter.
    func arrive() {
        let now = self.remaining.wrappingSubtract(1, ordering: .acquiringAndReleasing).newValue
        if now == 0 {
            let waiter = self.waiter.withLock { waiter in
                defer { waiter = nil }
                return waiter
            }
            waiter?.resume()
        }
    }

    /// Suspends until every expected arrival has happened; returns at once if they have.
    func wait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let isDone = self.waiter.withLock { waiter -> Bool in
                if self.remaining.load(ordering: .acquiring) <= 0 { return true }
                precondition(waiter == nil, "two tasks wait on one latch")
                waiter = continuation
                return false
            }
            if isDone { continuation.resume() }
        }
    }
}
