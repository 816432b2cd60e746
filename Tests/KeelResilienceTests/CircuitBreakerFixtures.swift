import KeelCore
import Synchronization

@testable import KeelResilience

/// Helpers shared by the circuit breaker suites: gates and countdowns instead of sleeps.
enum CircuitBreakerFixtures {
    /// An error that a test operation throws.
    struct Failure: Error, Equatable {
        var id = 0
    }

    /// Another error type, for classification lists.
    struct Ignorable: Error, Equatable {}

    /// Suspends callers of `wait()` until `open()`; open stays open.
    typealias Gate = TestGate

    /// Resumes ``wait()`` once ``signal()`` has been called `count` times.
    final class Countdown: Sendable {
        private let state: Lock<(remaining: Int, waiter: CheckedContinuation<Void, Never>?)>

        init(_ count: Int) {
            self.state = Lock((count, nil))
        }

        func signal() {
            let waiter = self.state.withLock { state -> CheckedContinuation<Void, Never>? in
                state.remaining -= 1
                guard state.remaining == 0 else { return nil }
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume()
        }

        func wait() async {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = self.state.withLock { state -> Bool in
                    if state.remaining <= 0 { return true }
                    state.waiter = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        }
    }

    /// Hands out 1, 2, 3, … to its callers, in the order they call.
    final class Tickets: Sendable {
        private let issued = Atomic<Int>(0)

        var count: Int { self.issued.load(ordering: .relaxed) }

        func take() -> Int {
            self.issued.add(1, ordering: .relaxed).newValue
        }
    }

    /// Counts operations in flight and remembers the most at once.
    final class HighWaterMark: Sendable {
        private let current = Atomic<Int>(0)
        private let highest = Atomic<Int>(0)

        var maximum: Int { self.highest.load(ordering: .relaxed) }
        var inFlight: Int { self.current.load(ordering: .relaxed) }

        func enter() {
            let now = self.current.add(1, ordering: .relaxed).newValue
            _ = self.highest.max(now, ordering: .relaxed)
        }

        func leave() {
            self.current.subtract(1, ordering: .relaxed)
        }
    }

    /// Fails `count` times through `breaker`, expecting each failure to be the operation's own.
    static func fail(_ breaker: CircuitBreaker, times count: Int = 1) async throws {
        for _ in 0..<count {
            // Only the operation's own failure is expected: a rejection (the breaker refused the
            // call, so nothing was recorded) reaches the test as an error.
            do {
                _ = try await breaker.run { () async throws -> Int in throw Failure() }
            } catch is Failure {}
        }
    }

    /// Succeeds `count` times through `breaker`.
    static func succeed(_ breaker: CircuitBreaker, times count: Int = 1) async throws {
        for _ in 0..<count {
            _ = try await breaker.run { 1 }
        }
    }

    /// The rejection code of a call, or `nil` if the call ran.
    static func rejection(_ breaker: CircuitBreaker) async -> CircuitBreakerError.Code? {
        do {
            _ = try await breaker.run { 1 }
            return nil
        } catch let error as CircuitBreakerError {
            return error.code
        } catch {
            return nil
        }
    }

    /// Waits in `events` for the next transition and returns its target state.
    static func nextTransition(
        _ iterator: inout CircuitBreakerEvents.Iterator
    ) async -> CircuitBreaker.State? {
        while let event = await iterator.next() {
            if event.kind == .stateTransition { return event.toState }
        }
        return nil
    }
}
