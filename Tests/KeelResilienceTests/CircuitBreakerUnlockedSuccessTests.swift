import KeelCore
import KeelTesting
import Testing

@testable import KeelResilience

/// A closed breaker counts a success with one compare-and-swap, outside its lock, and folds the
/// count into its window the next time anything takes the lock. These tests pin down when it may
/// (no success could open the breaker, no event consumer, a count-based window) and that nothing
/// is lost, counted twice or counted in the wrong generation.
@Suite("Circuit breaker: successes counted outside the lock", .timeLimit(.minutes(2)))
struct CircuitBreakerUnlockedSuccessTests {
    typealias Fixtures = CircuitBreakerFixtures
    typealias Machine = CircuitBreakerStateMachine

    static func breaker(
        clock: TestClock = TestClock(),
        telemetry: any Telemetry = NoOpTelemetry(),
        _ configure: (inout CircuitBreaker.Configuration) -> Void = { _ in }
    ) -> CircuitBreaker {
        var configuration = CircuitBreaker.Configuration()
        configure(&configuration)
        return CircuitBreaker(
            name: "test",
            configuration: configuration,
            clock: clock,
            random: RandomSource(seed: 5),
            telemetry: telemetry
        )
    }

    @Test("a success is counted outside the lock, and the metrics fold it in")
    func countedAndFolded() async throws {
        let breaker = Self.breaker()
        try await Fixtures.succeed(breaker, times: 3)
        #expect(breaker.unfoldedSuccesses == 3)
        let metrics = breaker.metrics
        #expect(metrics.bufferedCalls == 3)
        #expect(metrics.failedCalls == 0)
        #expect(breaker.unfoldedSuccesses == 0)
    }

    @Test("a success that brings the window to its minimum opens the breaker when the failures reach the rate")
    func successAtTheMinimumOpens() async throws {
        let breaker = Self.breaker {
            $0.minimumNumberOfCalls = 4
            $0.failureRateThreshold = 0.5
        }
        try await Fixtures.fail(breaker, times: 2)
        try await Fixtures.succeed(breaker)
        #expect(breaker.state == .closed)
        #expect(breaker.unfoldedSuccesses == 0, "2 failures of a minimum of 4 reach the rate: under the lock")
        try await Fixtures.succeed(breaker)
        #expect(breaker.state == .open)
    }

    @Test("successes counted outside the lock reset the consecutive failures before the next failure counts")
    func consecutiveFailuresReset() async throws {
        let breaker = Self.breaker {
            $0.failureRateThreshold = nil
            $0.consecutiveFailureThreshold = 3
        }
        try await Fixtures.fail(breaker, times: 2)
        try await Fixtures.succeed(breaker)
        #expect(breaker.unfoldedSuccesses == 1)
        try await Fixtures.fail(breaker, times: 2)
        #expect(breaker.state == .closed)
        try await Fixtures.fail(breaker)
        #expect(breaker.state == .open)
    }

    @Test("a success of an older generation is not counted, though the breaker is closed again")
    func olderGenerationDropped() async throws {
        let breaker = Self.breaker()
        let permit = try breaker.acquirePermit()
        await breaker.forceOpen()
        await breaker.reset()
        #expect(breaker.state == .closed)
        permit.recordSuccess()
        #expect(breaker.unfoldedSuccesses == 0)
        #expect(breaker.metrics.bufferedCalls == 0)
    }

    @Test("with an event consumer, or a time-based window, every success is recorded under the lock")
    func lockedWhenNeeded() async throws {
        let observed = Self.breaker()
        let events = observed.events()
        try await Fixtures.succeed(observed, times: 2)
        #expect(observed.unfoldedSuccesses == 0)
        await observed.shutdown()
        var kinds: [CircuitBreakerEvent.Kind] = []
        for await event in events { kinds.append(event.kind) }
        #expect(kinds == [.success, .success])

        let timed = Self.breaker { $0.window = .lastDuration(.seconds(10), buckets: 10) }
        try await Fixtures.succeed(timed, times: 2)
        #expect(timed.unfoldedSuccesses == 0)
        #expect(timed.metrics.bufferedCalls == 2)
    }

    @Test("successes counted outside the lock still reach the telemetry")
    func telemetry() async throws {
        let recorder = InMemoryRecorder()
        let breaker = Self.breaker(telemetry: recorder)
        try await Fixtures.succeed(breaker, times: 4)
        #expect(breaker.unfoldedSuccesses == 4)
        #expect(
            recorder.counter("keel.breaker.calls", dimensions: [("breaker", "test"), ("outcome", "success")]) == 4
        )
    }

    @Test("under contention, with metrics read meanwhile, every call lands in the window exactly once")
    func contention() async throws {
        let breaker = Self.breaker {
            $0.failureRateThreshold = nil
            $0.window = .lastCalls(10_000)
            $0.minimumNumberOfCalls = 10_000
        }
        let tasks = 8
        let calls = 500
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<tasks {
                group.addTask {
                    for call in 0..<calls {
                        if call % 50 == 49 {
                            try await Fixtures.fail(breaker)
                        } else {
                            try await Fixtures.succeed(breaker)
                        }
                        if call % 97 == 0 { _ = breaker.metrics }
                    }
                }
            }
            try await group.waitForAll()
        }
        let metrics = breaker.metrics
        #expect(metrics.bufferedCalls == tasks * calls)
        #expect(metrics.failedCalls == tasks * calls / 50)
        #expect(metrics.consecutiveFailures <= tasks)
        #expect(breaker.state == .closed)
    }

    @Test("the machine accepts successes outside the lock only when no run of them could open it")
    func machineAccepts() {
        var configuration = CircuitBreaker.Configuration()
        configuration.minimumNumberOfCalls = 4
        configuration.failureRateThreshold = 0.5
        configuration.window = .lastCalls(8)
        var machine = Machine(configuration: configuration, random: RandomSource(seed: 1))
        #expect(machine.acceptsSuccessesOutsideLock)
        let permit = Machine.Permit(generation: 0, kind: .closed)
        _ = machine.record(permit, .failure, isSlow: false, now: .zero)
        #expect(machine.acceptsSuccessesOutsideLock, "1 of at least 4 is under half")
        _ = machine.record(permit, .failure, isSlow: false, now: .zero)
        #expect(!machine.acceptsSuccessesOutsideLock, "2 of 4 reach half")
        _ = machine.record(permit, .success, isSlow: false, now: .zero)
        _ = machine.record(permit, .success, isSlow: false, now: .zero)
        #expect(machine.publicState == .open)
        #expect(!machine.acceptsSuccessesOutsideLock, "open")
    }

    @Test("folding N successes equals recording them one by one, past the window's size too")
    func foldEqualsRecording() {
        var configuration = CircuitBreaker.Configuration()
        configuration.failureRateThreshold = nil
        configuration.consecutiveFailureThreshold = 100
        configuration.window = .lastCalls(5)
        for count in [1, 4, 5, 6, 13] {
            var folded = Machine(configuration: configuration, random: RandomSource(seed: 1))
            var recorded = Machine(configuration: configuration, random: RandomSource(seed: 1))
            let permit = Machine.Permit(generation: 0, kind: .closed)
            for _ in 0..<3 {
                _ = folded.record(permit, .failure, isSlow: false, now: .zero)
                _ = recorded.record(permit, .failure, isSlow: false, now: .zero)
            }
            folded.foldSuccesses(count, generation: 0)
            for _ in 0..<count { _ = recorded.record(permit, .success, isSlow: false, now: .zero) }
            #expect(folded.windowTotals(at: .zero) == recorded.windowTotals(at: .zero), "after \(count)")
            #expect(folded.consecutiveFailures == 0)
            // The next failures evict the same calls from both.
            for _ in 0..<4 {
                _ = folded.record(permit, .failure, isSlow: false, now: .zero)
                _ = recorded.record(permit, .failure, isSlow: false, now: .zero)
            }
            #expect(folded.windowTotals(at: .zero) == recorded.windowTotals(at: .zero), "after \(count), then 4")
        }
        var stale = Machine(configuration: configuration, random: RandomSource(seed: 1))
        stale.foldSuccesses(3, generation: 7)
        #expect(stale.windowTotals(at: .zero).calls == 0)
    }
}
