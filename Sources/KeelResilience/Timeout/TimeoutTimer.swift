import KeelCore
import Synchronization

/// The one timer a ``Timeout`` shares among all its calls: one task that sleeps on the injected
/// clock until the earliest pending deadline and expires the attempts that are due.
///
/// An attempt whose operation did not finish at once parks in ``wait(for:until:)``: its
/// continuation is stored in its ``TimeoutAttempt`` and its deadline added to the
/// ``TimeoutSchedule``. When no timer task is running, one is started (through ``TaskSpawner``,
/// with the timeout's executor preference); when the new deadline is earlier than the one the
/// task sleeps until, the task is cancelled and a new one started, which first awaits the old one.
/// A task that wakes expires the due attempts, then sleeps until the next pending deadline, or
/// ends when none is pending. An attempt that finishes or is cancelled removes its entry; the task
/// is not woken for that: it ends (or sleeps again) when it wakes at the deadline it had. So a
/// stream of calls that finish in time costs one clock sleep per `duration`, not one per call.
///
/// ``shutdown()`` cancels the task and awaits it (and through it every task it replaced). The
/// attempts still pending are resumed with ``TimeoutAttempt/Outcome/orphaned``, and so is every
/// later attempt: the caller then races its operation against a sleep of its own (see
/// ``Timeout``). Dropping the timer without a shutdown cancels the task (it holds the timer
/// weakly).
final class TimeoutTimer: Sendable {
    private struct State: ~Copyable {
        var schedule = TimeoutSchedule<TimeoutAttempt>()
        /// The last timer task started; it awaits every task started before it.
        var task: Task<Void, Never>?
        /// Tests waiting in ``waitForPending(count:)``, by id.
        var pendingWaiters: [UInt64: (count: Int, continuation: CheckedContinuation<Void, Never>?)] = [:]
        var nextWaiterID: UInt64 = 0

        /// Removes the waiters whose count is reached and returns their continuations.
        mutating func satisfiedWaiters() -> [CheckedContinuation<Void, Never>] {
            let pending = self.schedule.pendingCount
            let satisfied = self.pendingWaiters.filter { $0.value.count <= pending && $0.value.continuation != nil }
            for id in satisfied.keys { self.pendingWaiters.removeValue(forKey: id) }
            return satisfied.values.compactMap(\.continuation)
        }
    }

    /// Reads the time on the clock, in `Duration` since the timer's origin.
    let now: @Sendable () -> Duration
    /// Sleeps on the clock until a time since the origin.
    let sleep: @Sendable (Duration) async throws -> Void
    /// A deadline `duration` from now, both as the ``/KeelCore/Deadline`` an operation sees and as
    /// the time since the origin the timer compares; one clock reading for both.
    let deadline: @Sendable (Duration) -> (Deadline, Duration)

    private let executor: (any TaskExecutor)?
    private let state = Lock(State())

    /// Creates an idle timer on `clock`: no task runs until an attempt waits.
    /// - Parameters:
    ///   - clock: The clock to sleep on and read.
    ///   - executor: The executor preference of the timer task; `nil` for the global executor.
    init(clock: any Clock<Duration>, executor: (any TaskExecutor)?) {
        func open<C: Clock<Duration>>(
            _ clock: C
        ) -> (
            now: @Sendable () -> Duration,
            sleep: @Sendable (Duration) async throws -> Void,
            deadline: @Sendable (Duration) -> (Deadline, Duration)
        ) {
            let origin = clock.now
            return (
                { origin.duration(to: clock.now) },
                { try await clock.sleep(until: origin.advanced(by: $0), tolerance: nil) },
                { duration in
                    let instant = clock.now.advanced(by: duration)
                    return (Deadline(instant), origin.duration(to: instant))
                }
            )
        }
        (self.now, self.sleep, self.deadline) = open(clock)
        self.executor = executor
    }

    deinit {
        self.state.withLock { $0.task }?.cancel()
    }

    /// The attempts waiting for their deadline.
    var pendingCount: Int {
        self.state.withLock { $0.schedule.pendingCount }
    }

    /// The deadlines the timer stores, pending and stale.
    var storedCount: Int {
        self.state.withLock { $0.schedule.storedCount }
    }

    /// Whether a timer task is sleeping (or about to end).
    var isArmed: Bool {
        self.state.withLock { $0.schedule.armedUntil != nil }
    }

    /// Suspends until at least `count` attempts wait for the timer at once: the handshake tests
    /// use, as `TestClock.waitForSleepers(count:)`, before they advance the clock. Returns at once
    /// when the count is reached or the task is cancelled.
    /// - Parameter count: The number of pending attempts to wait for.
    func waitForPending(count: Int) async {
        let id = self.state.withLock { state in
            defer { state.nextWaiterID += 1 }
            state.pendingWaiters[state.nextWaiterID] = (count, nil)
            return state.nextWaiterID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let ready = self.state.withLock { state -> Bool in
                    // Gone when cancelled before it got here.
                    guard state.pendingWaiters[id] != nil else { return true }
                    if state.schedule.pendingCount >= count || Task.isCancelled {
                        state.pendingWaiters.removeValue(forKey: id)
                        return true
                    }
                    state.pendingWaiters[id] = (count, continuation)
                    return false
                }
                if ready { continuation.resume() }
            }
        } onCancel: {
            let waiter = self.state.withLock { $0.pendingWaiters.removeValue(forKey: id) }
            waiter?.continuation?.resume()
        }
    }

    /// Parks the calling task until `attempt` finishes, is cancelled, or reaches `deadline`.
    ///
    /// Cancelling the calling task resumes it at once with ``TimeoutAttempt/Outcome/cancelled``.
    /// The attempt's entry is gone when this returns, whatever the outcome.
    /// - Parameters:
    ///   - attempt: The attempt; its operation runs in a child task that calls
    ///     ``TimeoutAttempt/finish()`` when it returns.
    ///   - deadline: When the attempt expires, in time since the origin.
    /// - Returns: How the wait ended.
    func wait(for attempt: TimeoutAttempt, until deadline: Duration) async -> TimeoutAttempt.Outcome {
        var id: UInt64?
        let outcome = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<TimeoutAttempt.Outcome, Never>) in
                guard attempt.park(continuation) else { return }
                if let added = self.add(attempt, deadline: deadline) {
                    id = added
                } else {
                    attempt.resolve(.orphaned)
                }
            }
        } onCancel: {
            attempt.resolve(.cancelled)
        }
        if let id, outcome != .expired {
            self.state.withLock { _ = $0.schedule.remove(id: id) }
        }
        return outcome
    }

    /// Stops the timer task and waits for it; attempts pending now and later are resumed with
    /// ``TimeoutAttempt/Outcome/orphaned``. Calling it again does nothing more.
    func shutdown() async {
        let (task, orphans) = self.state.withLock { state in
            (state.task, state.schedule.shutDown())
        }
        for attempt in orphans { attempt.resolve(.orphaned) }
        if let task {
            task.cancel()
            await task.value
        }
    }

    /// Adds the attempt's deadline and starts or replaces the timer task if needed.
    /// - Returns: The entry's id; `nil` after shutdown.
    private func add(_ attempt: TimeoutAttempt, deadline: Duration) -> UInt64? {
        let (id, replaced, waiters) = self.state.withLock { state in
            guard let (id, action) = state.schedule.add(attempt, deadline: deadline) else {
                return (UInt64?.none, Task<Void, Never>?.none, [CheckedContinuation<Void, Never>]())
            }
            let waiters = state.pendingWaiters.isEmpty ? [] : state.satisfiedWaiters()
            switch action {
            case .none:
                return (id, nil, waiters)
            case .start(let generation, let until):
                state.task = self.spawn(generation: generation, until: until, after: state.task)
                return (id, nil, waiters)
            case .replace(let generation, let until):
                let previous = state.task
                state.task = self.spawn(generation: generation, until: until, after: previous)
                return (id, previous, waiters)
            }
        }
        replaced?.cancel()
        for waiter in waiters { waiter.resume() }
        return id
    }

    /// Starts a timer task; it first awaits `previous` (already ended, ending or cancelled), so
    /// that awaiting the last task awaits them all.
    private func spawn(
        generation: UInt64,
        until first: Duration,
        after previous: Task<Void, Never>?
    ) -> Task<Void, Never> {
        let sleep = self.sleep
        let now = self.now
        // Owned by this timer: kept in `state.task`, cancelled and awaited by `shutdown()`,
        // cancelled by `deinit`. It holds the timer weakly and ends when nothing is pending.
        return TaskSpawner.spawn(executor: self.executor) { [weak self] in
            if let previous { await previous.value }
            var until = first
            while true {
                do {
                    try await sleep(until)
                } catch {
                    // Cancelled: replaced by a task for an earlier deadline, or shut down. A clock
                    // whose sleep fails otherwise puts the timer out of service, as a shutdown
                    // does: the calls pending now and later time themselves (and meet the
                    // clock's error there) instead of waiting for a timer that no longer runs.
                    if !Task.isCancelled, let self {
                        let orphans = self.state.withLock { $0.schedule.shutDown() }
                        for attempt in orphans { attempt.resolve(.orphaned) }
                    }
                    return
                }
                guard let self else { return }
                let (expired, next) = self.state.withLock { $0.schedule.fire(now: now(), generation: generation) }
                for attempt in expired { attempt.resolve(.expired) }
                guard let next else { return }
                until = next
            }
        }
    }
}
