import KeelCore
import KeelTestSupport
import KeelTesting
import Synchronization
import Testing

@testable import KeelResilience

/// How one call under a timeout ended, as the calling task saw it.
private struct Ending: Sendable {
    var index: Int
    /// The test clock's time when the call threw.
    var at: Duration
    var error: TimeoutError?
}

/// A count that tasks add to.
private final class Tally: Sendable {
    private let state = Lock(0)
    func add() { self.state.withLock { $0 += 1 } }
    var count: Int { self.state.withLock { $0 } }
}

/// What happened, in order.
private final class EventLog: Sendable {
    private let state = Lock<[String]>([])
    func append(_ event: String) { self.state.withLock { $0.append(event) } }
    var events: [String] { self.state.withLock { $0 } }
}

/// Waits until `count` calls wait for the shared timer (a call registers right after its
/// operation suspends, so waiting for the operation's sleep on the clock is not enough).
private func waitForPending(_ timeout: Timeout, count: Int) async {
    await timeout.sharedTimer.waitForPending(count: count)
}

/// The task's value. Cancelling the waiting test (its time limit) cancels the task, so that a
/// call that never ends fails the test instead of hanging the run.
private func value<T: Sendable>(of task: Task<T, any Error>) async throws -> T {
    try await withTaskCancellationHandler {
        try await task.value
    } onCancel: {
        task.cancel()
    }
}

/// An operation that sleeps on `clock` for a long time, unless cancelled.
private func sleeper(_ clock: TestClock) -> @Sendable () async throws -> Void {
    { try await clock.sleep(for: .seconds(1_000)) }
}

/// A clock whose sleeps fail at once with an error of their own, not cancellation; its time is
/// a test clock's.
private struct FailingClock: Clock {
    struct Broken: Error {}

    let base: TestClock

    var now: TestClock.Instant { self.base.now }
    var minimumResolution: Duration { self.base.minimumResolution }

    func sleep(until deadline: TestClock.Instant, tolerance: Duration?) async throws {
        throw Broken()
    }
}

@Suite("Timeout's shared timer", .timeLimit(.minutes(2)))
struct TimeoutSharedTimerTests {
    /// A timer whose clock fails its sleep goes out of service instead of leaving its calls
    /// waiting for it: the pending call times itself, meets the clock's error and throws it, and
    /// so does a later call.
    @Test func aClockWhoseSleepFailsDoesNotStrandTheCalls() async throws {
        let clock = TestClock()
        let timeout = Timeout(duration: .seconds(1), clock: FailingClock(base: clock))
        for _ in 0..<2 {
            let call = Task { try await timeout.execute(sleeper(clock)) }
            await #expect(throws: FailingClock.Broken.self) { try await value(of: call) }
            #expect(timeout.pendingCount == 0)
        }
        await timeout.shutdown()
    }

    /// Calls with different deadlines on one timeout: some by their start time, some by the
    /// caller's deadline, some equal; each times out exactly at its own deadline, never before.
    @Test func concurrentCallsEachTimeOutAtTheirOwnDeadline() async throws {
        let clock = TestClock()
        let timeout = Timeout(name: "shared", duration: .milliseconds(40), clock: clock, random: RandomSource(seed: 7))
        let (endings, sink) = AsyncStream.makeStream(of: Ending.self)
        // (start, caller's deadline from the start or nil, expected end) in milliseconds.
        var plan: [(start: Int, callerDeadline: Int?)] = []
        let shuffled = RandomSource(seed: 11)
        for index in 0..<24 {
            let start = index < 16 ? 0 : 10
            let callerDeadline: Int? = index % 3 == 0 ? nil : 1 + shuffled.next(upperBound: 50)
            plan.append((start, callerDeadline))
        }
        let expected = plan.map { $0.start + min($0.callerDeadline ?? 40, 40) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            func start(_ index: Int) {
                let operation = sleeper(clock)
                var context = TraceContext.makeRoot(using: RandomSource(seed: UInt64(index)))
                if let callerDeadline = plan[index].callerDeadline {
                    context.deadline = .after(.milliseconds(callerDeadline), on: clock)
                }
                let bound = context
                group.addTask {
                    do {
                        try await TraceContext.$current.withValue(bound) { try await timeout.execute(operation) }
                        sink.yield(Ending(index: index, at: clock.now.offset, error: nil))
                    } catch let error as TimeoutError {
                        sink.yield(Ending(index: index, at: clock.now.offset, error: error))
                    }
                }
            }
            var iterator = endings.makeAsyncIterator()
            var ended: [Ending] = []
            var started = 0
            for now in 0...60 {
                let due = expected.indices.filter { expected[$0] == now }.count
                for _ in 0..<due {
                    ended.append(try #require(await iterator.next()))
                }
                // Every call due now has ended, and no other: the timer expired exactly these.
                #expect(timeout.pendingCount == started - ended.count, "at \(now) ms")
                let starting = plan.indices.filter { plan[$0].start == now }
                for index in starting { start(index) }
                started += starting.count
                await waitForPending(timeout, count: started - ended.count)
                clock.advance(by: .milliseconds(1))
            }
            try await group.waitForAll()
            #expect(ended.count == plan.count)
            for ending in ended {
                #expect(ending.at == .milliseconds(expected[ending.index]), "call \(ending.index)")
                let error = try #require(ending.error)
                // A caller's deadline at or before the timeout's own end is the one that fires.
                let ownDuration = (plan[ending.index].callerDeadline ?? 41) > 40
                #expect(error.code == (ownDuration ? .timedOut : .deadlineExceeded), "call \(ending.index)")
                #expect(error.timeout == .milliseconds(min(plan[ending.index].callerDeadline ?? 40, 40)))
            }
        }
        #expect(timeout.pendingCount == 0)
        #expect(timeout.sharedTimer.storedCount == 0)
        #expect(clock.sleeperCount == 0)  // the timer ended: nothing was pending when it woke
        await timeout.shutdown()
    }

    /// A deadline earlier than the one the timer sleeps until replaces the timer task.
    @Test func aShorterDeadlineArrivingWhileTheTimerSleepsReArmsIt() async throws {
        let clock = TestClock()
        let timeout = Timeout(duration: .seconds(10), clock: clock)
        let long = Task { try await timeout.execute(sleeper(clock)) }
        await clock.waitForSleepers(count: 2)  // the operation, the timer until 10 s
        var context = TraceContext.makeRoot(using: RandomSource(seed: 3))
        context.deadline = .after(.seconds(1), on: clock)
        let bound = context
        let short = Task {
            try await TraceContext.$current.withValue(bound) { try await timeout.execute(sleeper(clock)) }
        }
        await waitForPending(timeout, count: 2)
        // Two operations and one timer: the one for 10 s was cancelled, one for 1 s sleeps.
        await clock.waitForSleepers(count: 3)
        #expect(clock.sleeperCount == 3)
        clock.advance(by: .milliseconds(999))
        #expect(timeout.pendingCount == 2)
        clock.advance(by: .milliseconds(1))
        do {
            try await value(of: short)
            Issue.record("expected a timeout")
        } catch let error as TimeoutError {
            #expect(error.code == .deadlineExceeded)
            #expect(clock.now.offset == .seconds(1))
        }
        #expect(timeout.pendingCount == 1)
        await clock.waitForSleepers(count: 2)  // the long operation, the timer again until 10 s
        clock.advance(to: .init(offset: .milliseconds(9_999)))
        #expect(timeout.pendingCount == 1)
        clock.advance(by: .milliseconds(1))
        await #expect(throws: TimeoutError.self) { try await value(of: long) }
        #expect(timeout.pendingCount == 0)
        #expect(clock.sleeperCount == 0)
        await timeout.shutdown()
    }

    /// Calls that end first take their deadline with them; the timer's storage does not grow with
    /// the calls made while one long call stays pending.
    @Test func callsThatFinishLeaveNoEntryBehind() async throws {
        let clock = TestClock()
        let timeout = Timeout(duration: .seconds(5), clock: clock)
        // Operations that return without suspending never reach the timer.
        for index in 0..<100 {
            #expect(try await timeout.execute { index } == index)
        }
        #expect(timeout.pendingCount == 0)
        #expect(!timeout.sharedTimer.isArmed)

        // One call that stays pending, and many that suspend and finish, one after the other.
        let gate = TestGate()
        let pinned = Task { try await timeout.execute { await gate.wait() } }
        await waitForPending(timeout, count: 1)
        for index in 0..<1_000 {
            let value = try await timeout.execute { () async throws -> Int in
                await Task.yield()
                return index
            }
            #expect(value == index)
        }
        #expect(timeout.pendingCount == 1)
        #expect(timeout.sharedTimer.storedCount <= 66)
        gate.open()
        try await value(of: pinned)
        #expect(timeout.pendingCount == 0)
        #expect(timeout.sharedTimer.storedCount == 0)

        // Many concurrent calls parked at a gate, then all finishing.
        let many = TestGate()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<200 {
                group.addTask { try await timeout.execute { await many.wait() } }
            }
            await waitForPending(timeout, count: 200)
            many.open()
            try await group.waitForAll()
        }
        #expect(timeout.pendingCount == 0)
        #expect(timeout.sharedTimer.storedCount == 0)
        await timeout.shutdown()
        #expect(clock.sleeperCount == 0)
    }

    @Test func aCancelledCallerRemovesItsEntryAndGetsCancellationError() async throws {
        let clock = TestClock()
        let timeout = Timeout(duration: .seconds(1), clock: clock)
        let cancelled = Task { try await timeout.execute(sleeper(clock)) }
        let other = Task { try await timeout.execute(sleeper(clock)) }
        await waitForPending(timeout, count: 2)
        cancelled.cancel()
        await #expect(throws: CancellationError.self) { try await value(of: cancelled) }
        #expect(timeout.pendingCount == 1)
        // The other call still times out at its deadline.
        await clock.waitForSleepers(count: 2)  // its operation and the timer
        clock.advance(by: .seconds(1))
        await #expect(throws: TimeoutError.self) { try await value(of: other) }
        #expect(timeout.pendingCount == 0)
        await timeout.shutdown()
    }

    /// The documented contract: an operation that ignores cancellation delays the error until it
    /// returns, and the call never returns before its operation.
    @Test func anOperationThatIgnoresCancellationDelaysTheTimeout() async throws {
        let clock = TestClock()
        let timeout = Timeout(duration: .seconds(1), clock: clock)
        let gate = TestGate()
        let cancelled = TestGate()
        let log = EventLog()
        let call = Task {
            do {
                _ = try await timeout.execute {
                    await withTaskCancellationHandler {
                        await gate.wait()
                    } onCancel: {
                        cancelled.open()
                    }
                    log.append("operation returned")
                    return 1
                }
                log.append("call returned")
            } catch is TimeoutError {
                log.append("call timed out")
            }
        }
        await waitForPending(timeout, count: 1)
        await clock.waitForSleepers(count: 1)  // the timer
        clock.advance(by: .seconds(1))
        await cancelled.wait()  // the timer expired the call, which cancelled its operation
        #expect(log.events.isEmpty)
        gate.open()
        try await value(of: call)
        #expect(log.events == ["operation returned", "call timed out"])
        await timeout.shutdown()
    }

    /// Shutdown cancels the timer task and waits for it; the timeout keeps timing calls out.
    @Test func shutdownStopsTheTimerAndCallsStillTimeOut() async throws {
        let clock = TestClock()
        let timeout = Timeout(duration: .seconds(1), clock: clock)
        let inFlight = Task { try await timeout.execute(sleeper(clock)) }
        await clock.waitForSleepers(count: 2)  // its operation and the timer
        await timeout.shutdown()
        #expect(!timeout.sharedTimer.isArmed)
        #expect(timeout.pendingCount == 0)
        // The call in flight now times itself: its operation and its own sleep until 1 s.
        await clock.waitForSleepers(count: 2)
        clock.advance(by: .milliseconds(999))
        #expect(clock.sleeperCount == 2)
        clock.advance(by: .milliseconds(1))
        do {
            try await value(of: inFlight)
            Issue.record("expected a timeout")
        } catch let error as TimeoutError {
            #expect(error.code == .timedOut)
            #expect(error.timeout == .seconds(1))
        }
        #expect(clock.sleeperCount == 0)

        // A call after the shutdown, with a caller's deadline: its own sleep, no timer task.
        var context = TraceContext.makeRoot(using: RandomSource(seed: 9))
        context.deadline = .after(.milliseconds(300), on: clock)
        let bound = context
        let later = Task {
            try await TraceContext.$current.withValue(bound) { try await timeout.execute(sleeper(clock)) }
        }
        await clock.waitForSleepers(count: 2)
        #expect(!timeout.sharedTimer.isArmed)
        clock.advance(by: .milliseconds(300))
        do {
            try await value(of: later)
            Issue.record("expected a timeout")
        } catch let error as TimeoutError {
            #expect(error.code == .deadlineExceeded)
        }
        #expect(clock.sleeperCount == 0)
        // After the shutdown too, a call that finishes first wins and its sleep is cancelled.
        let quick = Task { try await timeout.execute { try await clock.sleep(for: .milliseconds(10)) } }
        await clock.waitForSleepers(count: 2)
        clock.advance(by: .milliseconds(10))
        try await value(of: quick)
        #expect(clock.sleeperCount == 0)
        #expect(try await timeout.execute { 5 } == 5)
        let copy = timeout
        await copy.shutdown()  // again, through a copy, which shares the timer: nothing more
        #expect(!timeout.sharedTimer.isArmed)
    }

    /// Shutdown waits for the timer task, and a timer that had nothing left to do is gone.
    @Test func shutdownAwaitsTheTimerTask() async throws {
        let clock = TestClock()
        let timeout = Timeout(duration: .seconds(5), clock: clock)
        let call = Task { try await timeout.execute { try await clock.sleep(for: .seconds(1)) } }
        await clock.waitForSleepers(count: 2)  // the operation, the timer until 5 s
        clock.advance(by: .seconds(1))
        try await value(of: call)
        #expect(timeout.pendingCount == 0)
        #expect(timeout.sharedTimer.isArmed)  // asleep until 5 s, nothing pending
        #expect(clock.sleeperCount == 1)
        await timeout.shutdown()
        #expect(clock.sleeperCount == 0)
        #expect(!timeout.sharedTimer.isArmed)
    }

    /// A timeout dropped without a shutdown cancels its timer task.
    @Test func aTimeoutDroppedWithoutShutdownCancelsItsTimer() async throws {
        let clock = TestClock()
        do {
            let timeout = Timeout(duration: .seconds(5), clock: clock)
            async let call: Void = timeout.execute { try await clock.sleep(for: .seconds(1)) }
            await clock.waitForSleepers(count: 2)  // the operation, the timer until 5 s
            clock.advance(by: .seconds(1))
            try await call
            #expect(clock.sleeperCount == 1)
        }
        #expect(clock.sleeperCount == 0)
    }

    /// The timer task prefers the executor it was given; the operation keeps the caller's.
    @Test func theTimerAndTheOperationRunOnTheirExecutors() async throws {
        let clock = TestClock()
        let timerExecutor = MarkedExecutor(label: "keel.test.timeout-timer")
        let callerExecutor = MarkedExecutor(label: "keel.test.timeout-caller")
        let timeout = Timeout(duration: .seconds(5), clock: clock, taskExecutor: timerExecutor)
        let inline = try await withTaskExecutorPreference(callerExecutor) {
            try await timeout.execute { callerExecutor.isCurrent }
        }
        #expect(inline)
        #expect(timerExecutor.jobs == 0)  // an operation that did not suspend needs no timer
        let gate = TestGate()
        async let afterSuspending = withTaskExecutorPreference(callerExecutor) {
            try await timeout.execute { () async throws -> Bool in
                await gate.wait()
                return callerExecutor.isCurrent
            }
        }
        await waitForPending(timeout, count: 1)
        #expect(timerExecutor.jobs == 1)  // the timer task, started for the waiting call
        gate.open()
        #expect(try await afterSuspending)
        await timeout.shutdown()
    }

    /// Hundreds of calls at once on one timer and a real clock: half of them with a caller's
    /// deadline of 20 ms and an operation that waits until it is cancelled, which time out; half
    /// with only the timeout's minute, whose operation suspends once and returns.
    @Test func hundredsOfConcurrentCallsOnTheContinuousClock() async throws {
        let timeout = Timeout(duration: .seconds(60))
        let values = Tally()
        let timeouts = Tally()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<400 {
                let slow = index.isMultiple(of: 2)
                var context = TraceContext.makeRoot(using: RandomSource(seed: UInt64(index)))
                if slow {
                    context.deadline = .after(.milliseconds(20), on: ContinuousClock())
                }
                let bound = context
                group.addTask {
                    do {
                        let value = try await TraceContext.$current.withValue(bound) {
                            try await timeout.execute { () async throws -> Int in
                                if slow {
                                    // Waits until the timeout cancels it.
                                    let gate = TestGate()
                                    await withTaskCancellationHandler {
                                        await gate.wait()
                                    } onCancel: {
                                        gate.open()
                                    }
                                    try Task.checkCancellation()
                                } else {
                                    await Task.yield()
                                }
                                return index
                            }
                        }
                        #expect(value == index)
                        values.add()
                    } catch let error as TimeoutError {
                        #expect(slow)
                        #expect(error.code == .deadlineExceeded)
                        timeouts.add()
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(values.count == 200)
        #expect(timeouts.count == 200)
        #expect(timeout.pendingCount == 0)
        await timeout.shutdown()
        #expect(!timeout.sharedTimer.isArmed)
    }

    /// Hundreds of calls at once on the test clock: every one times out at its deadline, after
    /// the timer expires them all in one wake-up.
    @Test func hundredsOfConcurrentCallsOnTheTestClock() async throws {
        let clock = TestClock()
        let timeout = Timeout(duration: .seconds(1), clock: clock)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<500 {
                group.addTask {
                    await #expect(throws: TimeoutError.self) { try await timeout.execute(sleeper(clock)) }
                }
            }
            await waitForPending(timeout, count: 500)
            await clock.waitForSleepers(count: 501)
            #expect(clock.sleeperCount == 501)  // 500 operations and one timer for all the calls
            clock.advance(by: .seconds(1))
            try await group.waitForAll()
        }
        #expect(timeout.pendingCount == 0)
        #expect(clock.sleeperCount == 0)
        await timeout.shutdown()
    }
}
