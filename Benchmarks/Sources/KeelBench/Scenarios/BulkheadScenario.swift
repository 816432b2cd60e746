import KeelResilience
import Synchronization

/// A ``Bulkhead`` permit around a trivial operation against a minimal `Mutex` semaphore doing the
/// same job, either uncontended (one caller, a free permit every time) or contended (64 tasks on
/// a limit of 8, each suspending once inside its permit).
///
/// Ours is `bulkhead.run { … }`: the state machine's FIFO queue, cancellation handling, metrics
/// totals and (when contended) the clock read for wait times; `maxWait` is off, as the baseline
/// has no timeout, and the instrumentation is the default no-op. The baseline is
/// ``MinimalSemaphore``: a counter and a FIFO array of continuations in a `Mutex`, no
/// cancellation, no timeout, no metrics. Both report nanoseconds per operation.
final class BulkheadScenario: Scenario {
    let metrics: [Metric]
    let workload = Workload.calibrated(minimum: 4_096)

    private let tasks: Int
    private let limit: Int
    private let bulkhead: Bulkhead
    private let semaphore: MinimalSemaphore

    /// Creates the scenario.
    /// - Parameters:
    ///   - name: The metric's name.
    ///   - tasks: How many tasks call at once; 1 calls sequentially from the measuring task.
    ///   - limit: The permits.
    init(name: String, tasks: Int, limit: Int) {
        precondition(tasks >= 1 && limit >= 1, "at least one task and one permit")
        self.tasks = tasks
        self.limit = limit
        self.bulkhead = Bulkhead(
            name: name,
            configuration: .init(maxConcurrent: limit, maxQueued: tasks, maxWait: nil)
        )
        self.semaphore = MinimalSemaphore(permits: limit)
        let baseline =
            tasks == 1
            ? "minimal Mutex semaphore, uncontended"
            : "minimal Mutex semaphore, \(tasks) tasks on \(limit) permits, one suspension inside"
        self.metrics = [Metric(name: name, baseline: baseline, unit: "operation")]
    }

    func setUp() async throws {}

    func runOurs(_ count: Int) async throws -> [Double] {
        let bulkhead = self.bulkhead
        if self.tasks == 1 {
            return [try await self.measure(count) { _ = try await bulkhead.run { 1 } }]
        }
        return [try await self.measure(count) { try await bulkhead.run { await Task.yield() } }]
    }

    func runBaseline(_ count: Int) async throws -> [Double] {
        let semaphore = self.semaphore
        if self.tasks == 1 {
            return [try await self.measure(count) { _ = await semaphore.run { 1 } }]
        }
        return [try await self.measure(count) { await semaphore.run { await Task.yield() } }]
    }

    func tearDown() async {}

    /// Runs `count` operations, spread evenly over the tasks.
    /// - Returns: Nanoseconds per operation.
    private func measure(_ count: Int, _ operation: @escaping @Sendable () async throws -> Void) async throws -> Double
    {
        let perTask = max(count / self.tasks, 1)
        let clock = ContinuousClock()
        let start = clock.now
        if self.tasks == 1 {
            for _ in 0..<perTask { try await operation() }
        } else {
            try await withThrowingDiscardingTaskGroup { group in
                for _ in 0..<self.tasks {
                    group.addTask {
                        for _ in 0..<perTask { try await operation() }
                    }
                }
            }
        }
        return start.duration(to: clock.now).nanoseconds / Double(perTask * self.tasks)
    }
}

/// The smallest correct async semaphore: permits and a FIFO of parked continuations in a `Mutex`.
/// No cancellation, no timeout, no metrics: the floor a bulkhead is measured against.
///
/// `acquire()` and `release()` are `@inline(never)`, as a semaphore in another module (like the
/// bulkhead) is a real call; only `run` and its closure are specialised at the call site, which
/// `Bulkhead.run` (`@inlinable`) gets too.
final class MinimalSemaphore: Sendable {
    private struct State {
        var permits: Int
        var waiters: [UnsafeContinuation<Void, Never>] = []
        var head = 0
    }

    private let state: Mutex<State>

    /// Creates a semaphore with `permits` permits.
    init(permits: Int) {
        self.state = Mutex(State(permits: permits))
    }

    /// Runs `operation` holding one permit.
    func run<T>(_ operation: () async throws -> T) async rethrows -> T {
        await self.acquire()
        defer { self.release() }
        return try await operation()
    }

    @inline(never)
    private func acquire() async {
        let isAcquired = self.state.withLock { state -> Bool in
            guard state.permits > 0 else { return false }
            state.permits -= 1
            return true
        }
        if isAcquired { return }
        await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
            let isAcquired = self.state.withLock { state -> Bool in
                if state.permits > 0 {
                    state.permits -= 1
                    return true
                }
                state.waiters.append(continuation)
                return false
            }
            if isAcquired { continuation.resume() }
        }
    }

    @inline(never)
    private func release() {
        let next = self.state.withLock { state -> UnsafeContinuation<Void, Never>? in
            guard state.head < state.waiters.count else {
                state.permits += 1
                return nil
            }
            let next = state.waiters[state.head]
            state.head += 1
            if state.head == state.waiters.count {
                state.waiters.removeAll(keepingCapacity: true)
                state.head = 0
            }
            return next
        }
        next?.resume()
    }
}
