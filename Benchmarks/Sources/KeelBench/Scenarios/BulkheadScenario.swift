import KeelResilience
import Synchronization

/// A ``Bulkhead`` permit around a trivial operation against a minimal `Mutex` semaphore doing the
/// same job, either uncontended (one caller, a free permit every time) or contended (64 tasks on
/// a limit of 8, each suspending once inside its permit).
///
/// Ours is `bulkhead.run { … }`; `maxWait` is off, as the baseline has no timeout, and the
/// telemetry is the default no-op, which makes no gauges. Uncontended, that is the bulkhead's
/// lock-free path: a compare-and-exchange on its atomic word to take the permit, a relaxed add
/// to the `admitted` total and a relaxed load of the peak, and a compare-and-exchange to give it
/// back; no lock, no clock read. Contended, callers queue, and while anyone is queued every call
/// goes through the `Mutex` state machine: its FIFO queue, cancellation handling, metrics totals
/// and the clock read for wait times. The baseline is ``MinimalSemaphore``: a counter and a
/// ring-buffer FIFO of continuations in a `Mutex` (two lock sections per operation), no
/// cancellation, no timeout, no metrics. Contended, the 64 callers are child tasks of a task
/// group on the cooperative pool (one thread per core), on both sides. Both report nanoseconds
/// per operation.
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
    ///   - goal: The README's goal for the ratio, if any.
    ///   - recorded: The ratio recorded on the project's machine kind.
    init(name: String, tasks: Int, limit: Int, goal: Double? = nil, recorded: Double?) {
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
            ? "minimal Mutex semaphore (ring-buffer FIFO), uncontended, sequential from one task; "
                + "ours: bulkhead.run, \(limit) permits"
            : "minimal Mutex semaphore (ring-buffer FIFO), \(tasks) tasks (task group, on \(Machine.pool)) "
                + "on \(limit) permits, one Task.yield() inside; ours: bulkhead.run, the same"
        self.metrics = [Metric(name: name, baseline: baseline, unit: "operation", goal: goal, recorded: recorded)]
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
/// The FIFO is a ring buffer with a head index over a fixed array of slots, reused for as long
/// as the semaphore lives: enqueueing and dequeueing are O(1) and allocate nothing once the ring
/// has grown (by doubling, only when it is full) to the most waiters there ever were, which is
/// the callers less the permits.
///
/// `acquire()` and `release()` are `@inline(never)`, as a semaphore in another module (like the
/// bulkhead) is a real call; only `run` and its closure are specialised at the call site, which
/// `Bulkhead.run` (`@inlinable`) gets too.
final class MinimalSemaphore: Sendable {
    /// The state under the lock.
    private struct State {
        /// Free permits.
        var permits: Int
        /// The ring of waiters' slots; `nil` where empty.
        var slots: [UnsafeContinuation<Void, Never>?] = Array(repeating: nil, count: 16)
        /// The index of the first waiter.
        var head = 0
        /// How many wait.
        var count = 0

        /// Queues a waiter last, doubling the ring when it is full.
        mutating func enqueue(_ waiter: UnsafeContinuation<Void, Never>) {
            if self.count == self.slots.count {
                var grown = [UnsafeContinuation<Void, Never>?](repeating: nil, count: self.slots.count * 2)
                for offset in 0..<self.count {
                    grown[offset] = self.slots[(self.head + offset) % self.slots.count]
                }
                self.slots = grown
                self.head = 0
            }
            self.slots[(self.head + self.count) % self.slots.count] = waiter
            self.count += 1
        }

        /// Removes and returns the first waiter, if any.
        mutating func dequeue() -> UnsafeContinuation<Void, Never>? {
            guard self.count > 0 else { return nil }
            defer {
                self.slots[self.head] = nil
                self.head = (self.head + 1) % self.slots.count
                self.count -= 1
            }
            return self.slots[self.head]
        }
    }

    private let state: Mutex<State>

    /// Creates a semaphore with `permits` permits.
    /// - Parameter permits: The permits.
    init(permits: Int) {
        self.state = Mutex(State(permits: permits))
    }

    /// Runs `operation` holding one permit.
    /// - Parameter operation: The work.
    /// - Returns: What `operation` returns.
    /// - Throws: What `operation` throws.
    func run<T>(_ operation: () async throws -> T) async rethrows -> T {
        await self.acquire()
        defer { self.release() }
        return try await operation()
    }

    /// Takes a permit, parking last in the queue while none is free.
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
                state.enqueue(continuation)
                return false
            }
            if isAcquired { continuation.resume() }
        }
    }

    /// Hands the permit to the first waiter, or frees it.
    @inline(never)
    private func release() {
        let next = self.state.withLock { state -> UnsafeContinuation<Void, Never>? in
            guard let next = state.dequeue() else {
                state.permits += 1
                return nil
            }
            return next
        }
        next?.resume()
    }
}
