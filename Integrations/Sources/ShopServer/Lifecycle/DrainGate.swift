import Synchronization

/// Counts the API requests the server has accepted, and turns new ones away once a graceful
/// shutdown begins, so that the requests it accepted can finish before Keel stops taking work.
///
/// ``enter()`` and ``leave()`` bracket each request; ``startDraining()`` closes the gate, and
/// ``waitUntilIdle()`` suspends until every request that got in has left.
///
/// **Concurrency.** A `Mutex` around a small state; no method suspends while holding it, and the
/// continuations are resumed after it is released. Waits honour cancellation: a cancelled waiter
/// returns at once, even when the cancellation came before it was stored.
package final class DrainGate: Sendable {
    /// What a waiter waits for.
    private enum Condition {
        /// No admitted request in flight (the drain).
        case idle
        /// At least this many in flight (a test's handshake).
        case inFlight(atLeast: Int)
        /// The gate closed.
        case draining
    }

    private struct Waiter {
        var condition: Condition
        var continuation: CheckedContinuation<Void, Never>
    }

    private struct State {
        var isDraining = false
        var inFlight = 0
        var nextWaiter: UInt64 = 0
        var waiters: [UInt64: Waiter] = [:]

        func holds(_ condition: Condition) -> Bool {
            switch condition {
            case .idle: self.inFlight == 0
            case .inFlight(let count): self.inFlight >= count
            case .draining: self.isDraining
            }
        }

        /// Removes and returns the waiters whose condition holds.
        mutating func takeSatisfied() -> [CheckedContinuation<Void, Never>] {
            let ready = self.waiters.filter { self.holds($0.value.condition) }
            for id in ready.keys { self.waiters[id] = nil }
            return ready.values.map(\.continuation)
        }
    }

    private let state = Mutex(State())

    /// Whether a graceful shutdown has closed the gate.
    var isDraining: Bool { self.state.withLock { $0.isDraining } }

    /// The requests inside now.
    var inFlight: Int { self.state.withLock { $0.inFlight } }

    /// Lets a request in, unless the gate is closed.
    /// - Returns: `true` when the request got in: call ``leave()`` once when it is done.
    func enter() -> Bool {
        let (admitted, ready) = self.state.withLock { state -> (Bool, [CheckedContinuation<Void, Never>]) in
            guard !state.isDraining else { return (false, []) }
            state.inFlight += 1
            return (true, state.takeSatisfied())
        }
        for continuation in ready { continuation.resume() }
        return admitted
    }

    /// Lets a request that ``enter()`` admitted out.
    func leave() {
        let ready = self.state.withLock { state in
            precondition(state.inFlight > 0, "leave() without enter(): \(state.inFlight) in flight")
            state.inFlight -= 1
            return state.takeSatisfied()
        }
        for continuation in ready { continuation.resume() }
    }

    /// Closes the gate: from now on ``enter()`` returns `false`. Idempotent.
    func startDraining() {
        let ready = self.state.withLock { state in
            state.isDraining = true
            return state.takeSatisfied()
        }
        for continuation in ready { continuation.resume() }
    }

    /// Suspends until no admitted request is in flight, or the task is cancelled.
    func waitUntilIdle() async {
        await self.wait(for: .idle)
    }

    /// Suspends until at least `count` requests are in flight, or the task is cancelled: a test's
    /// handshake that its request got past the gate.
    /// - Parameter count: The number to wait for.
    package func waitUntilInFlight(atLeast count: Int) async {
        await self.wait(for: .inFlight(atLeast: count))
    }

    /// Suspends until the gate has closed, or the task is cancelled: a test's handshake that a
    /// graceful shutdown has begun.
    package func waitUntilDraining() async {
        await self.wait(for: .draining)
    }

    private func wait(for condition: Condition) async {
        let id = self.state.withLock { state -> UInt64 in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = self.state.withLock { state -> Bool in
                    // A cancellation that came before this point finds no waiter to resume: check
                    // for it here, under the lock that the handler takes too.
                    if state.holds(condition) || Task.isCancelled { return true }
                    state.waiters[id] = Waiter(condition: condition, continuation: continuation)
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = self.state.withLock { $0.waiters.removeValue(forKey: id) }
            waiter?.continuation.resume()
        }
    }
}
