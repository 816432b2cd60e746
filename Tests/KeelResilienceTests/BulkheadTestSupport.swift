import KeelCore
import KeelResilience
import Synchronization

/// Counts arrivals and lets the test wait until a number of them happened.
final class BulkheadTestArrivals: Sendable {
    private let state = Lock<(count: Int, waiters: [(Int, CheckedContinuation<Void, Never>)])>((0, []))

    var count: Int { self.state.withLock { $0.count } }

    func arrive() {
        let ready = self.state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.count += 1
            let count = state.count
            let ready = state.waiters.filter { $0.0 <= count }.map(\.1)
            state.waiters.removeAll { $0.0 <= count }
            return ready
        }
        for waiter in ready { waiter.resume() }
    }

    func wait(for count: Int) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let isReached = self.state.withLock { state -> Bool in
                if state.count >= count { return true }
                state.waiters.append((count, continuation))
                return false
            }
            if isReached { continuation.resume() }
        }
    }
}

/// Tracks how many operations run at once and the most that ever did.
final class BulkheadTestHighWater: Sendable {
    private let current = Atomic<Int>(0)
    private let peak = Atomic<Int>(0)

    var maximum: Int { self.peak.load(ordering: .relaxed) }

    func enter() {
        let now = self.current.wrappingAdd(1, ordering: .relaxed).newValue
        var seen = self.peak.load(ordering: .relaxed)
        while now > seen {
            let (exchanged, original) = self.peak.compareExchange(
                expected: seen,
                desired: now,
                ordering: .relaxed
            )
            if exchanged { break }
            seen = original
        }
    }

    func leave() {
        self.current.wrappingSubtract(1, ordering: .relaxed)
    }
}

/// A counter that tasks share.
final class BulkheadTestCounter: Sendable {
    private let storage = Atomic<Int>(0)

    var value: Int { self.storage.load(ordering: .relaxed) }

    func increment() {
        self.storage.add(1, ordering: .relaxed)
    }
}

/// Counts outcomes by name.
final class BulkheadTestTally: Sendable {
    private let counts = Lock<[String: Int]>([:])

    var all: [String: Int] { self.counts.withLock { $0 } }

    func count(_ result: Result<Void, any Error>) {
        let key: String
        switch result {
        case .success: key = "ran"
        case .failure(is CancellationError): key = "cancelled"
        case .failure(let error as BulkheadError): key = error.code.description
        case .failure(let error): key = "\(error)"
        }
        self.counts.withLock { $0[key, default: 0] += 1 }
    }

    /// Counts a step that moved the clock instead of calling the bulkhead.
    func countAdvance() {
        self.counts.withLock { $0["advanced", default: 0] += 1 }
    }
}
