import KeelCore
import Synchronization

/// Scripted attempts for hedging tests: each attempt parks until the test completes it, records
/// that it started, and records when it observes cancellation.
///
/// A `stubborn` probe records the cancellation but keeps the attempt parked until the test
/// completes it, as an operation that ignores cancellation would.
final class HedgingProbe: Sendable {
    private struct State {
        var started: [Int] = []
        var cancelled: [Int] = []
        var parked: [Int: CheckedContinuation<Int, any Error>] = [:]
        var results: [Int: Result<Int, any Error>] = [:]
        var startWaiters: [(Int, CheckedContinuation<Void, Never>)] = []
        var cancelWaiters: [(Int, CheckedContinuation<Void, Never>)] = []
    }

    private let state = Lock(State())
    private let isStubborn: Bool

    init(stubborn: Bool = false) {
        self.isStubborn = stubborn
    }

    /// The attempts that started, in order.
    var started: [Int] { self.state.withLock { $0.started } }
    /// The attempts that observed cancellation, in order.
    var cancelled: [Int] { self.state.withLock { $0.cancelled } }

    /// One attempt: parks until completed or cancelled.
    func attempt(_ number: Int) async throws -> Int {
        let ready = self.state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.started.append(number)
            let count = state.started.count
            let ready = state.startWaiters.filter { $0.0 <= count }.map(\.1)
            state.startWaiters.removeAll { $0.0 <= count }
            return ready
        }
        for waiter in ready { waiter.resume() }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Int, any Error>) in
                let action = self.state.withLock { state -> Result<Int, any Error>? in
                    if let result = state.results.removeValue(forKey: number) { return result }
                    if !self.isStubborn, state.cancelled.contains(number) { return .failure(CancellationError()) }
                    state.parked[number] = continuation
                    return nil
                }
                if let action { continuation.resume(with: action) }
            }
        } onCancel: {
            let (parked, waiters) = self.state.withLock { state in
                state.cancelled.append(number)
                let waiters = state.cancelWaiters.filter { $0.0 == number }.map(\.1)
                state.cancelWaiters.removeAll { $0.0 == number }
                return (self.isStubborn ? nil : state.parked.removeValue(forKey: number), waiters)
            }
            parked?.resume(throwing: CancellationError())
            for waiter in waiters { waiter.resume() }
        }
    }

    /// Completes attempt `number` (now, or as soon as it parks).
    func complete(_ number: Int, with result: Result<Int, any Error>) {
        let parked = self.state.withLock { state -> CheckedContinuation<Int, any Error>? in
            if let parked = state.parked.removeValue(forKey: number) { return parked }
            state.results[number] = result
            return nil
        }
        parked?.resume(with: result)
    }

    func succeed(_ number: Int, value: Int) { self.complete(number, with: .success(value)) }
    func fail(_ number: Int, _ error: any Error) { self.complete(number, with: .failure(error)) }

    /// Suspends until `count` attempts have started.
    func waitForStarted(count: Int) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let isReached = self.state.withLock { state -> Bool in
                if state.started.count >= count { return true }
                state.startWaiters.append((count, continuation))
                return false
            }
            if isReached { continuation.resume() }
        }
    }

    /// Suspends until attempt `number` has observed cancellation.
    func waitForCancellation(of number: Int) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let isReached = self.state.withLock { state -> Bool in
                if state.cancelled.contains(number) { return true }
                state.cancelWaiters.append((number, continuation))
                return false
            }
            if isReached { continuation.resume() }
        }
    }
}

/// An error with a number, to tell attempts apart.
struct HedgingTestError: Error, Equatable {
    var attempt: Int
}

/// Suspends until the current task is cancelled, then throws `CancellationError`.
func hedgingParkUntilCancelled() async throws {
    let parked = Lock<(cancelled: Bool, continuation: CheckedContinuation<Void, any Error>?)>((false, nil))
    try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let isCancelled = parked.withLock { state -> Bool in
                if state.cancelled { return true }
                state.continuation = continuation
                return false
            }
            if isCancelled { continuation.resume(throwing: CancellationError()) }
        }
    } onCancel: {
        let continuation = parked.withLock { state in
            state.cancelled = true
            defer { state.continuation = nil }
            return state.continuation
        }
        continuation?.resume(throwing: CancellationError())
    }
}

/// A counter to share with child tasks.
final class HedgingCounter: Sendable {
    private let value = Atomic<Int>(0)

    var count: Int { self.value.load(ordering: .relaxed) }

    func increment() { self.value.add(1, ordering: .relaxed) }
}
