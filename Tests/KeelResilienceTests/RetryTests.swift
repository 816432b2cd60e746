import KeelCore
import KeelTesting
import Synchronization
import Testing

@testable import KeelResilience

private struct Flaky: Error, Equatable {
    var attempt: Int
}

/// Records when each attempt ran, on the test clock.
private final class AttemptLog: Sendable {
    private let times = Lock<[Duration]>([])
    let clock: TestClock

    init(clock: TestClock) {
        self.clock = clock
    }

    /// Records an attempt and returns its number, from 1.
    func record() -> Int {
        let now = self.clock.now.offset
        return self.times.withLock {
            $0.append(now)
            return $0.count
        }
    }

    var all: [Duration] { self.times.withLock { $0 } }
}

/// A shared counter for concurrent tasks.
final class RetryCounter: Sendable {
    private let value = Atomic(0)

    func increment() -> Int { self.value.add(1, ordering: .relaxed).newValue }
    var current: Int { self.value.load(ordering: .relaxed) }
}

/// Runs an always-failing operation under `policy`, stepping the clock through `delays`, and
/// returns the offsets at which the attempts ran.
private func attemptTimes(policy: Retry, clock: TestClock, stepping delays: [Duration]) async throws -> [Duration] {
    let log = AttemptLog(clock: clock)
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask {
            do {
                _ = try await policy.run { () async throws -> Int in throw Flaky(attempt: log.record()) }
                Issue.record("expected the last error")
            } catch let error as Flaky {
                #expect(error.attempt == delays.count + 1)
            }
        }
        for delay in delays {
            await clock.waitForSleepers(count: 1)
            clock.advance(by: delay)
        }
        try await group.waitForAll()
    }
    return log.all
}

private func cumulative(_ delays: [Duration]) -> [Duration] {
    var times: [Duration] = [.zero]
    for delay in delays { times.append(times.last! + delay) }
    return times
}

@Suite("Retry", .timeLimit(.minutes(2)))
struct RetryTests {
    static let backoffs: [Backoff] = [
        .constant(.milliseconds(250)),
        .linear(initial: .milliseconds(100), increment: .milliseconds(50), maximum: .milliseconds(220)),
        .exponential(initial: .milliseconds(100), multiplier: 3, maximum: .seconds(2), jitter: false),
        .exponential(initial: .milliseconds(100), maximum: .seconds(1)),
        .decorrelatedJitter(base: .milliseconds(50), maximum: .seconds(1)),
    ]

    @Test(arguments: RetryTests.backoffs)
    func attemptsRunExactlyOnTheScheduleUnderTheTestClock(backoff: Backoff) async throws {
        let clock = TestClock()
        let delays = Array(backoff.makeDelays(using: RandomSource(seed: 42)).prefix(4))
        let policy = Retry(
            configuration: .init(maxAttempts: 5, backoff: backoff),
            clock: clock,
            random: RandomSource(seed: 42)
        )
        let times = try await attemptTimes(policy: policy, clock: clock, stepping: delays)
        #expect(times == cumulative(delays))
    }

    @Test func theBackoffDoesNotWakeEarly() async throws {
        let clock = TestClock()
        let log = AttemptLog(clock: clock)
        let policy = Retry(configuration: .init(maxAttempts: 2, backoff: .constant(.seconds(1))), clock: clock)
        async let value = policy.run { () async throws -> String in
            if log.record() == 1 { throw Flaky(attempt: 1) }
            return "ok"
        }
        await clock.waitForSleepers(count: 1)
        clock.advance(by: .milliseconds(999))
        #expect(clock.sleeperCount == 1)
        #expect(log.all.count == 1)
        clock.advance(by: .milliseconds(1))
        #expect(try await value == "ok")
        #expect(log.all == [.zero, .seconds(1)])
    }

    @Test func errorsThePredicateRejectsAreNotRetried() async throws {
        let clock = TestClock()
        let log = AttemptLog(clock: clock)
        let policy = Retry(
            configuration: .init(maxAttempts: 5, backoff: .constant(.zero), shouldRetryError: { !($0 is Flaky) }),
            clock: clock
        )
        await #expect(throws: Flaky.self) {
            try await policy.run { () async throws -> Int in throw Flaky(attempt: log.record()) }
        }
        #expect(log.all.count == 1)
    }

    @Test func retriedResultsAreRetriedAndTheLastOneIsReturned() async throws {
        let clock = TestClock()
        let log = AttemptLog(clock: clock)
        let policy = Retry(
            configuration: .init(
                maxAttempts: 3,
                backoff: .constant(.zero),
                shouldRetryResult: { ($0 as? String) == "busy" }
            ),
            clock: clock
        )
        let eventually = try await policy.run { log.record() < 2 ? "busy" : "done" }
        #expect(eventually == "done")
        let last = try await policy.run { () async throws -> String in
            _ = log.record()
            return "busy"
        }
        #expect(last == "busy")
        #expect(log.all.count == 5)
    }

    @Test func neverSleepsPastTheCallersDeadline() async throws {
        let clock = TestClock()
        let log = AttemptLog(clock: clock)
        let recorder = InMemoryRecorder()
        let policy = Retry(
            name: "deadline",
            configuration: .init(maxAttempts: 10, backoff: .constant(.milliseconds(100))),
            clock: clock,
            telemetry: recorder
        )
        var context = TraceContext.makeRoot(using: RandomSource(seed: 3))
        context.deadline = .after(.milliseconds(250), on: clock)
        let bound = context
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                await #expect(throws: Flaky.self) {
                    try await TraceContext.$current.withValue(bound) {
                        try await policy.run { () async throws -> Int in throw Flaky(attempt: log.record()) }
                    }
                }
            }
            for _ in 0..<2 {
                await clock.waitForSleepers(count: 1)
                clock.advance(by: .milliseconds(100))
            }
            try await group.waitForAll()
        }
        // Attempts at 0, 100 and 200 ms; a third sleep would end at 300 ms, after the deadline.
        #expect(log.all == [.zero, .milliseconds(100), .milliseconds(200)])
        #expect(clock.now.offset == .milliseconds(200))
        #expect(clock.sleeperCount == 0)
        #expect(
            recorder.counter("keel.retry.stopped", dimensions: [("retry", "deadline"), ("reason", "deadline")]) == 1
        )
    }

    @Test func cancellationErrorIsNeverRetried() async throws {
        let clock = TestClock()
        let log = AttemptLog(clock: clock)
        let policy = Retry(configuration: .init(maxAttempts: 5, backoff: .constant(.zero)), clock: clock)
        await #expect(throws: CancellationError.self) {
            try await policy.run { () async throws -> Int in
                _ = log.record()
                throw CancellationError()
            }
        }
        #expect(log.all.count == 1)
    }

    @Test func cancellingTheCallerStopsRetrying() async throws {
        let clock = TestClock()
        let log = AttemptLog(clock: clock)
        let policy = Retry(configuration: .init(maxAttempts: 5, backoff: .constant(.seconds(1))), clock: clock)
        let task = Task {
            try await policy.run { () async throws -> Int in throw Flaky(attempt: log.record()) }
        }
        await clock.waitForSleepers(count: 1)
        task.cancel()
        await #expect(throws: CancellationError.self) { try await task.value }
        #expect(log.all.count == 1)
        #expect(clock.sleeperCount == 0)
    }

    @Test func aCancelledCallerMakesNoFurtherAttempt() async throws {
        let clock = TestClock()
        let log = AttemptLog(clock: clock)
        let policy = Retry(configuration: .init(maxAttempts: 5, backoff: .constant(.zero)), clock: clock)
        await withTaskGroup(of: Void.self) { group in
            group.cancelAll()
            group.addTask {
                await #expect(throws: Flaky.self) {
                    try await policy.run { () async throws -> Int in throw Flaky(attempt: log.record()) }
                }
            }
        }
        #expect(log.all.count == 1)
    }

    @Test func theBudgetStopsARetryStorm() async throws {
        let clock = TestClock()
        let recorder = InMemoryRecorder()
        let budget = RetryBudget(configuration: .init(ratio: 0.1, minimumRetries: 5), clock: clock)
        let policy = Retry(
            name: "storm",
            configuration: .init(maxAttempts: 5, backoff: .constant(.zero), budget: budget),
            clock: clock,
            telemetry: recorder
        )
        let attempts = RetryCounter()
        await withDiscardingTaskGroup { group in
            for _ in 0..<200 {
                group.addTask {
                    await #expect(throws: Flaky.self) {
                        try await policy.run { () async throws -> Int in
                            throw Flaky(attempt: attempts.increment())
                        }
                    }
                }
            }
        }
        // Without the budget: 200 × 5 = 1,000 attempts. With it: 200 calls + at most 5 + 10% of 200.
        let total = attempts.current
        #expect(total >= 200 && total <= 225)
        let snapshot = budget.snapshot
        #expect(snapshot.calls == 200)
        #expect(snapshot.retries == total - 200)
        #expect(snapshot.retries <= 25)
        #expect(snapshot.refused >= 175)
        #expect(
            recorder.counter("keel.retry.stopped", dimensions: [("retry", "storm"), ("reason", "budget")])
                == Int64(snapshot.refused)
        )
    }

    @Test func theBudgetWindowForgetsOldRetries() async throws {
        let clock = TestClock()
        let budget = RetryBudget(
            configuration: .init(ratio: 0.5, minimumRetries: 1, window: .seconds(10), buckets: 10),
            clock: clock
        )
        budget.recordCall()
        budget.recordCall()
        #expect(budget.tryRetry())  // 0 < 1 + 1
        #expect(budget.tryRetry())  // 1 < 2
        #expect(!budget.tryRetry())  // 2 < 2 fails
        clock.advance(by: .seconds(9))
        #expect(!budget.tryRetry())
        clock.advance(by: .seconds(1))
        #expect(budget.snapshot == .init(calls: 0, retries: 0, refused: 2))
        #expect(budget.tryRetry())  // the minimum again
        #expect(!budget.tryRetry())
    }

    @Test func executeIsTheStrategyForm() async throws {
        let strategy: any ResilienceStrategy = Retry(
            configuration: .init(maxAttempts: 3, backoff: .constant(.zero)),
            clock: TestClock()
        )
        let calls = RetryCounter()
        let value = try await strategy.execute { () async throws -> Int in
            if calls.increment() < 3 { throw Flaky(attempt: 0) }
            return 7
        }
        #expect(value == 7)
        #expect(calls.current == 3)
    }
}
