import KeelCore
import Synchronization

/// The shared engine of every bulkhead kind: a ``BulkheadStateMachine`` in a `Mutex`, the parked
/// waiters' continuations, and the one timer task that enforces `maxWait`.
///
/// The uncontended path is one lock to acquire and one to release; nothing is allocated and the
/// clock is not read. Only a caller that must queue reads the clock, parks a continuation inside
/// `withTaskCancellationHandler`, and, if no timer is running yet, starts one.
///
/// `maxWait` is enforced by a single timer task per storage, not a task or a task-group race per
/// waiter: every waiter waits the same `maxWait`, so deadlines grow in queue order and the timer
/// sleeps on the injected clock until the head's deadline, times out whatever is due, and sleeps
/// again until the next head's; when the queue empties it ends, and the next waiter starts a new
/// one. The task is started through ``TaskSpawner`` (passing on the owner's executor preference),
/// holds the storage weakly, and is cancelled when the storage is deinitialised.
@usableFromInline
final class BulkheadStorage: Sendable {
    typealias Waiter = UnsafeContinuation<BulkheadWaitOutcome, Never>
    typealias Machine = BulkheadStateMachine<Waiter>

    private struct Locked {
        var machine: Machine
        var timer: Task<Void, Never>?
        /// Counts the states the gauges may be set to: they are set after the lock is released,
        /// and only a newer state than the one they show replaces it (see `Gauges.update`).
        var gaugeVersion: UInt64 = 0
        /// Tasks waiting for the queue to reach a length (a test handshake).
        var queueWatchers: [(count: Int, continuation: CheckedContinuation<Void, Never>)] = []

        mutating func takeSatisfiedWatchers() -> [CheckedContinuation<Void, Never>] {
            let queued = self.machine.queued
            let ready = self.queueWatchers.filter { $0.count <= queued }.map(\.continuation)
            self.queueWatchers.removeAll { $0.count <= queued }
            return ready
        }
    }

    let name: String
    private let state: Lock<Locked>
    private let clock: any Clock<Duration>
    private let reader: ClockReader
    private let executor: (any TaskExecutor)?
    private let instruments: BulkheadInstruments
    private let queueFullCode: BulkheadError.Code
    private let unit: String
    private let waitedCount = Atomic<Int>(0)
    private let waitNanoseconds = Atomic<Int64>(0)

    /// The units available in total.
    let capacity: Int

    init(
        name: String,
        capacity: Int,
        maxQueued: Int,
        maxWait: Duration?,
        clock: any Clock<Duration>,
        executor: (any TaskExecutor)?,
        instruments: BulkheadInstruments,
        queueFullCode: BulkheadError.Code = .queueFull,
        unit: String = "permits"
    ) {
        self.name = name
        self.capacity = capacity
        self.state = Lock(Locked(machine: Machine(capacity: capacity, maxQueued: maxQueued, maxWait: maxWait)))
        self.clock = clock
        self.reader = ClockReader(clock)
        self.executor = executor
        self.instruments = instruments
        self.queueFullCode = queueFullCode
        self.unit = unit
    }

    deinit {
        self.state.withLock { $0.timer }?.cancel()
    }

    /// A place in the queue, to wait on with ``wait(_:)``.
    @usableFromInline
    struct Ticket: Sendable {
        let id: UInt64
        let weight: Int
        let enqueuedAt: Duration
    }

    /// Takes `weight` units, waiting in line if needed.
    ///
    /// - Throws: ``BulkheadError`` when refused or timed out; `CancellationError` when the task
    ///   is cancelled while waiting, or is found cancelled when granted (the units are then
    ///   passed on at once).
    @inlinable
    func acquire(weight: Int) async throws {
        if let ticket = try self.acquireOrEnqueue(weight: weight) {
            try await self.wait(ticket)
        }
    }

    /// Takes `weight` units at once, or queues for them and returns the ticket to wait with.
    /// Never suspends.
    /// - Throws: ``BulkheadError`` when refused at once.
    @usableFromInline
    func acquireOrEnqueue(weight: Int) throws -> Ticket? {
        let (action, used, queued, watchers, version) = self.state.withLock { locked in
            // The clock is read only when the caller must queue.
            let action = locked.machine.acquire(weight: weight, now: { self.reader.now() })
            let watchers = locked.queueWatchers.isEmpty ? nil : locked.takeSatisfiedWatchers()
            locked.gaugeVersion += 1
            return (action, locked.machine.used, locked.machine.queued, watchers, locked.gaugeVersion)
        }
        switch action {
        case .acquired:
            self.instruments.gauges?.update(version: version, used: used, queued: queued, capacity: self.capacity)
            return nil
        case .rejected(let rejection):
            throw self.rejectionError(rejection, weight: weight, used: used, queued: queued)
        case .enqueued(let id, let enqueuedAt, let startTimer):
            if startTimer { self.startTimer() }
            self.instruments.gauges?.update(version: version, used: used, queued: queued, capacity: self.capacity)
            for watcher in watchers ?? [] { watcher.resume() }
            return Ticket(id: id, weight: weight, enqueuedAt: enqueuedAt)
        }
    }

    /// Gives back `weight` units held by one holder; they go to the waiters in line first.
    @usableFromInline
    func release(weight: Int) {
        let (grants, used, queued, version) = self.state.withLock { locked in
            locked.gaugeVersion += 1
            return (
                locked.machine.release(weight: weight), locked.machine.used, locked.machine.queued, locked.gaugeVersion
            )
        }
        self.instruments.gauges?.update(version: version, used: used, queued: queued, capacity: self.capacity)
        if case .none = grants {} else { Self.resume(grants) }
    }

    /// A snapshot of the state and totals.
    func metrics() -> BulkheadMetrics {
        let machine = self.state.withLock { $0.machine }
        return BulkheadMetrics(
            name: self.name,
            capacity: machine.capacity,
            used: machine.used,
            inFlight: machine.inFlight,
            queued: machine.queued,
            peakUsed: machine.peakUsed,
            admitted: machine.admitted,
            rejected: machine.rejected,
            timedOut: machine.timedOut,
            cancelled: machine.cancelled,
            waited: self.waitedCount.load(ordering: .relaxed),
            totalWaitTime: .nanoseconds(self.waitNanoseconds.load(ordering: .relaxed))
        )
    }

    /// Suspends until at least `count` waiters are queued at once: a handshake for tests, which
    /// may then cancel them, release units or advance the clock.
    func waitForQueued(count: Int) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let isReached = self.state.withLock { locked -> Bool in
                if locked.machine.queued >= count { return true }
                locked.queueWatchers.append((count, continuation))
                return false
            }
            if isReached { continuation.resume() }
        }
    }

    // MARK: Waiting

    /// Waits for the ticket's units; see ``acquire(weight:)``.
    @usableFromInline
    func wait(_ ticket: Ticket) async throws {
        let id = ticket.id
        let weight = ticket.weight
        let enqueuedAt = ticket.enqueuedAt
        let outcome = await withTaskCancellationHandler {
            await withUnsafeContinuation { (continuation: Waiter) in
                let action = self.state.withLock { $0.machine.park(id: id, waiter: continuation) }
                if case .resume(let outcome) = action {
                    continuation.resume(returning: outcome)
                }
            }
        } onCancel: {
            let cancellation = self.state.withLock { $0.machine.cancel(id: id) }
            cancellation.waiter?.resume(returning: .cancelled)
            Self.resume(cancellation.grants)
        }
        switch outcome {
        case .granted:
            let waited = self.reader.now() - enqueuedAt
            self.waitedCount.wrappingAdd(1, ordering: .relaxed)
            self.waitNanoseconds.wrappingAdd(Self.nanoseconds(waited), ordering: .relaxed)
            self.instruments.events?.wait.record(waited)
            if Task.isCancelled {
                // Granted and cancelled at the same moment: pass the units on, run nothing.
                self.release(weight: weight)
                throw CancellationError()
            }
        case .timedOut:
            self.instruments.events?.timedOut.increment(by: 1)
            throw BulkheadError(
                code: .waitTimedOut,
                bulkhead: self.name,
                message: "waited \(self.reader.now() - enqueuedAt) for \(weight) of \(self.capacity) \(self.unit)"
            )
        case .cancelled:
            throw CancellationError()
        }
    }

    private func rejectionError(
        _ rejection: BulkheadRejection,
        weight: Int,
        used: Int,
        queued: Int
    ) -> BulkheadError {
        let maxQueued = self.state.withLock { $0.machine.maxQueued }
        switch rejection {
        case .queueFull:
            self.instruments.events?.queueFull.increment(by: 1)
            return BulkheadError(
                code: self.queueFullCode,
                bulkhead: self.name,
                message: "\(used) of \(self.capacity) \(self.unit) in use and \(queued) of \(maxQueued) waiters queued"
            )
        case .exceedsCapacity:
            self.instruments.events?.exceedsCapacity.increment(by: 1)
            return BulkheadError(
                code: .exceedsCapacity,
                bulkhead: self.name,
                message: "asked for \(weight) \(self.unit), more than the capacity of \(self.capacity)"
            )
        }
    }

    // MARK: Timer

    private func startTimer() {
        let clock = self.clock
        let reader = self.reader
        // Owned by this storage: cancelled in deinit; it holds the storage weakly and ends by
        // itself when the queue is empty.
        let task = TaskSpawner.spawn(executor: self.executor) { [weak self] in
            while let next = self?.expireDue(now: reader.now()) {
                let delay = next - reader.now()
                guard delay > .zero else { continue }
                do {
                    try await clock.sleep(for: delay)
                } catch {
                    self?.state.withLock { $0.machine.timerStopped() }
                    return
                }
            }
        }
        self.state.withLock { $0.timer = task }
    }

    /// Times out the due waiters; returns the next deadline, or `nil` when the timer must stop.
    private func expireDue(now: Duration) -> Duration? {
        let (expiry, used, queued, version) = self.state.withLock { locked in
            locked.gaugeVersion += 1
            return (locked.machine.expire(now: now), locked.machine.used, locked.machine.queued, locked.gaugeVersion)
        }
        if !expiry.timedOut.isEmpty {
            self.instruments.gauges?.update(version: version, used: used, queued: queued, capacity: self.capacity)
        }
        for waiter in expiry.timedOut { waiter.resume(returning: .timedOut) }
        Self.resume(expiry.grants)
        return expiry.nextDeadline
    }

    private static func resume(_ grants: Machine.Grants) {
        switch grants {
        case .none:
            break
        case .one(let waiter):
            waiter.resume(returning: .granted)
        case .many(let waiters):
            for waiter in waiters { waiter.resume(returning: .granted) }
        }
    }

    private static func nanoseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
