import KeelCore
import KeelResilience
import KeelTesting
import Synchronization
import Testing

@Suite("Hedging", .timeLimit(.minutes(2)))
struct HedgingTests {
    @Test func aFastFirstAttemptStartsNoHedge() async throws {
        let clock = TestClock()
        let recorder = InMemoryRecorder()
        let hedging = Hedging(
            name: "fast",
            configuration: .init(maxAttempts: 3, delay: .milliseconds(100)),
            clock: clock,
            telemetry: recorder
        )
        let value = try await hedging.run { attempt in attempt * 10 }
        #expect(value == 10)
        #expect(clock.sleeperCount == 0)  // the timer was cancelled and awaited
        #expect(recorder.counter("keel.hedging.attempts", dimensions: [("hedging", "fast")]) == 1)
        #expect(recorder.counterTotal("keel.hedging.hedges") == 0)
    }

    @Test func theHedgeStartsOnlyAfterTheDelay() async throws {
        let clock = TestClock()
        let probe = HedgingProbe()
        let hedging = Hedging(configuration: .init(maxAttempts: 2, delay: .milliseconds(100)), clock: clock)
        async let result = hedging.run { try await probe.attempt($0) }

        await probe.waitForStarted(count: 1)
        await clock.waitForSleepers(count: 1)
        clock.advance(by: .milliseconds(99))
        #expect(clock.sleeperCount == 1)  // the timer did not fire: no hedge can have started
        #expect(probe.started == [1])

        clock.advance(by: .milliseconds(1))
        await probe.waitForStarted(count: 2)
        #expect(probe.started == [1, 2])
        #expect(clock.sleeperCount == 0)  // maxAttempts reached: no further timer

        probe.succeed(1, value: 1)
        let value = try await result
        #expect(value == 1)
        #expect(probe.cancelled == [2])
    }

    @Test func theHedgeWinsAndTheLoserObservesCancellation() async throws {
        let clock = TestClock()
        let recorder = InMemoryRecorder()
        let probe = HedgingProbe()
        let hedging = Hedging(
            name: "race",
            configuration: .init(maxAttempts: 3, delay: .milliseconds(50)),
            clock: clock,
            telemetry: recorder
        )
        async let result = hedging.run { try await probe.attempt($0) }
        for count in 1...2 {
            await probe.waitForStarted(count: count)
            await clock.waitForSleepers(count: 1)
            clock.advance(by: .milliseconds(50))
        }
        await probe.waitForStarted(count: 3)

        probe.succeed(2, value: 200)
        let value = try await result
        #expect(value == 200)
        // Losers were cancelled and awaited before `run` returned.
        #expect(Set(probe.cancelled) == [1, 3])
        #expect(clock.sleeperCount == 0)
        let dimensions = [("hedging", "race")]
        #expect(recorder.counter("keel.hedging.attempts", dimensions: dimensions) == 3)
        #expect(recorder.counter("keel.hedging.hedges", dimensions: dimensions + [("reason", "delay")]) == 2)
        #expect(recorder.counter("keel.hedging.hedge_won", dimensions: dimensions) == 1)
    }

    @Test func theFirstSuccessWinsEvenIfAnEarlierAttemptSucceedsLater() async throws {
        let clock = TestClock()
        let probe = HedgingProbe(stubborn: true)  // attempts ignore cancellation
        let hedging = Hedging(configuration: .init(maxAttempts: 2, delay: .seconds(1)), clock: clock)
        async let result = hedging.run { try await probe.attempt($0) }
        await probe.waitForStarted(count: 1)
        await clock.waitForSleepers(count: 1)
        clock.advance(by: .seconds(1))
        await probe.waitForStarted(count: 2)

        probe.succeed(2, value: 2)
        await probe.waitForCancellation(of: 1)  // the hedging chose attempt 2 and cancelled attempt 1
        probe.succeed(1, value: 1)  // attempt 1 ignores the cancellation and succeeds afterwards
        let value = try await result
        #expect(value == 2)
    }

    @Test func aFailureStartsTheNextAttemptAtOnceAndTheLastErrorIsThrown() async throws {
        let clock = TestClock()
        let recorder = InMemoryRecorder()
        let probe = HedgingProbe()
        let hedging = Hedging(
            name: "failing",
            configuration: .init(maxAttempts: 3, delay: .seconds(10), hedgeOnFailure: true),
            clock: clock,
            telemetry: recorder
        )
        async let result = hedging.run { try await probe.attempt($0) }
        for attempt in 1...3 {
            await probe.waitForStarted(count: attempt)
            probe.fail(attempt, HedgingTestError(attempt: attempt))
        }
        do {
            _ = try await result
            Issue.record("expected an error")
        } catch {
            #expect(error as? HedgingTestError == HedgingTestError(attempt: 3))
        }
        #expect(clock.now == TestClock.Instant(offset: .zero))  // no delay was waited for
        #expect(clock.sleeperCount == 0)
        let dimensions = [("hedging", "failing")]
        #expect(recorder.counter("keel.hedging.hedges", dimensions: dimensions + [("reason", "failure")]) == 2)
        #expect(recorder.counter("keel.hedging.exhausted", dimensions: dimensions) == 1)
    }

    @Test func allAttemptsFailingAfterDelaysThrowsTheLastError() async throws {
        let clock = TestClock()
        let probe = HedgingProbe()
        let hedging = Hedging(
            configuration: .init(maxAttempts: 2, delay: .milliseconds(10), hedgeOnFailure: false),
            clock: clock
        )
        async let result = hedging.run { try await probe.attempt($0) }
        await probe.waitForStarted(count: 1)
        await clock.waitForSleepers(count: 1)
        clock.advance(by: .milliseconds(10))
        await probe.waitForStarted(count: 2)
        probe.fail(2, HedgingTestError(attempt: 2))
        // Attempt 1 is still in flight and may succeed: the call goes on; fail it too.
        probe.fail(1, HedgingTestError(attempt: 1))
        do {
            _ = try await result
            Issue.record("expected an error")
        } catch {
            #expect(error is HedgingTestError)
        }
        #expect(probe.started == [1, 2])
    }

    @Test func withoutHedgeOnFailureAnEarlyFailureEndsTheCall() async throws {
        let clock = TestClock()
        let probe = HedgingProbe()
        let hedging = Hedging(
            configuration: .init(maxAttempts: 3, delay: .seconds(1), hedgeOnFailure: false),
            clock: clock
        )
        async let result = hedging.run { try await probe.attempt($0) }
        await probe.waitForStarted(count: 1)
        probe.fail(1, HedgingTestError(attempt: 1))
        do {
            _ = try await result
            Issue.record("expected an error")
        } catch {
            #expect(error as? HedgingTestError == HedgingTestError(attempt: 1))
        }
        #expect(probe.started == [1])
        #expect(clock.sleeperCount == 0)
    }

    @Test func aFailureDuringTheDelayRestartsTheDelayFromTheNewAttempt() async throws {
        let clock = TestClock()
        let probe = HedgingProbe()
        let hedging = Hedging(configuration: .init(maxAttempts: 3, delay: .milliseconds(100)), clock: clock)
        async let result = hedging.run { try await probe.attempt($0) }
        await probe.waitForStarted(count: 1)
        await clock.waitForSleepers(count: 1)
        clock.advance(by: .milliseconds(60))
        probe.fail(1, HedgingTestError(attempt: 1))
        await probe.waitForStarted(count: 2)  // started at 60 ms, on the failure

        // The timer armed at 0 fires at 100 ms and re-arms for 160 ms: no hedge yet.
        await clock.waitForSleepers(count: 1)
        clock.advance(by: .milliseconds(40))
        await clock.waitForSleepers(count: 1)
        #expect(probe.started == [1, 2])
        clock.advance(by: .milliseconds(59))
        #expect(clock.sleeperCount == 1)
        clock.advance(by: .milliseconds(1))
        await probe.waitForStarted(count: 3)

        probe.succeed(3, value: 3)
        let value = try await result
        #expect(value == 3)
        #expect(probe.cancelled == [2])
    }

    @Test func callerCancellationCancelsEveryAttemptAndThrowsCancellationError() async throws {
        let clock = TestClock()
        let probe = HedgingProbe()
        let hedging = Hedging(configuration: .init(maxAttempts: 3, delay: .milliseconds(5)), clock: clock)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                await #expect(throws: CancellationError.self) {
                    _ = try await hedging.run { try await probe.attempt($0) }
                }
                // Every attempt ended before `run` threw.
                #expect(Set(probe.cancelled) == [1, 2])
            }
            await probe.waitForStarted(count: 1)
            await clock.waitForSleepers(count: 1)
            clock.advance(by: .milliseconds(5))
            await probe.waitForStarted(count: 2)
            await clock.waitForSleepers(count: 1)
            group.cancelAll()
            try await group.waitForAll()
        }
        #expect(probe.started == [1, 2])  // no attempt started after the cancellation
        #expect(clock.sleeperCount == 0)
    }

    @Test func anAlreadyCancelledCallerStartsNoAttempt() async throws {
        let started = HedgingCounter()
        let hedging = Hedging(configuration: .init(maxAttempts: 2, delay: .seconds(1)), clock: TestClock())
        await withTaskGroup(of: Void.self) { group in
            group.cancelAll()
            group.addTask {
                await #expect(throws: CancellationError.self) {
                    try await hedging.run { _ in started.increment() }
                }
            }
        }
        #expect(started.count == 0)
    }

    @Test func aZeroDelayStartsEveryAttemptAtOnce() async throws {
        let clock = TestClock()
        let probe = HedgingProbe()
        let hedging = Hedging(configuration: .init(maxAttempts: 3, delay: .zero), clock: clock)
        async let result = hedging.run { try await probe.attempt($0) }
        await probe.waitForStarted(count: 3)
        #expect(clock.sleeperCount == 0)
        probe.succeed(3, value: 3)
        let value = try await result
        #expect(value == 3)
        #expect(Set(probe.cancelled) == [1, 2])
    }

    @Test func oneAttemptRunsTheOperationOnceWithoutATimer() async throws {
        let clock = TestClock()
        let hedging = Hedging(configuration: .init(maxAttempts: 1, delay: .milliseconds(1)), clock: clock)
        await #expect(throws: HedgingTestError(attempt: 1)) {
            try await hedging.run { attempt -> Int in throw HedgingTestError(attempt: attempt) }
        }
        #expect(clock.sleeperCount == 0)
    }

    @Test func attemptsRunInTheCallersTraceContext() async throws {
        let random = RandomSource(seed: 7)
        let root = TraceContext.makeRoot(using: random)
        let seen = Lock<[TraceContext?]>([])
        let hedging = Hedging(configuration: .init(maxAttempts: 3, delay: .zero), clock: TestClock())
        try await TraceContext.$current.withValue(root) {
            _ = try await hedging.run { attempt in
                seen.withLock { $0.append(TraceContext.current) }
                if attempt < 3 { try await hedgingParkUntilCancelled() }
                return attempt
            }
        }
        let contexts = seen.withLock { $0 }
        #expect(contexts.count == 3)
        #expect(contexts.allSatisfy { $0 == root })
    }

    @Test func asAResilienceStrategyItHedgesTheOperation() async throws {
        let strategy: any ResilienceStrategy = Hedging(
            configuration: .init(maxAttempts: 2, delay: .zero),
            clock: TestClock()
        )
        let calls = Atomic<Int>(0)
        let value = try await strategy.execute { () async throws -> String in
            if calls.add(1, ordering: .relaxed).newValue == 1 {
                try await hedgingParkUntilCancelled()
            }
            return "hedged"
        }
        #expect(value == "hedged")
        #expect(calls.load(ordering: .relaxed) == 2)
    }

    @Test func underContentionNoAttemptOutlivesItsCall() async throws {
        let hedging = Hedging(configuration: .init(maxAttempts: 3, delay: .zero), clock: TestClock())
        let random = RandomSource(seed: 42)
        try await withThrowingDiscardingTaskGroup { group in
            for _ in 0..<300 {
                let winner = 1 + random.next(upperBound: 3)
                group.addTask {
                    let live = Atomic<Int>(0)
                    let value = try await hedging.run { attempt in
                        live.add(1, ordering: .relaxed)
                        defer { live.subtract(1, ordering: .relaxed) }
                        if attempt != winner { try await hedgingParkUntilCancelled() }
                        return attempt
                    }
                    #expect(value == winner)
                    #expect(live.load(ordering: .relaxed) == 0)
                }
            }
        }
    }

    @Test func configurationDefaults() {
        let configuration = Hedging.Configuration()
        #expect(configuration.maxAttempts == 2)
        #expect(configuration.delay == .seconds(2))
        #expect(configuration.hedgeOnFailure)
        let hedging = Hedging(name: "n", configuration: configuration)
        #expect(hedging.name == "n")
        #expect(hedging.configuration == configuration)
    }
}
