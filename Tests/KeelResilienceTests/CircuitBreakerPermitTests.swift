import KeelCore
import KeelTesting
import Testing

@testable import KeelResilience

/// The permit API: `acquirePermit()`, the call, then one recorded outcome.
@Suite("Circuit breaker permits", .timeLimit(.minutes(2)))
struct CircuitBreakerPermitTests {
    typealias Fixtures = CircuitBreakerFixtures
    typealias Failure = CircuitBreakerFixtures.Failure

    static func breaker(clock: TestClock, _ configure: (inout CircuitBreaker.Configuration) -> Void) -> CircuitBreaker {
        var configuration = CircuitBreaker.Configuration()
        configuration.failureRateThreshold = nil
        configure(&configuration)
        return CircuitBreaker(
            name: "permits",
            configuration: configuration,
            clock: clock,
            random: RandomSource(seed: 5)
        )
    }

    /// Acquires a permit and returns the rejection, if any.
    static func rejection(_ breaker: CircuitBreaker) -> CircuitBreakerError? {
        do {
            let permit = try breaker.acquirePermit()
            permit.release()
            return nil
        } catch {
            return error
        }
    }

    @Test("recorded outcomes count as run's do; the lazy open state says how long it stays open")
    func outcomesCount() throws {
        let clock = TestClock()
        let breaker = Self.breaker(clock: clock) {
            $0.consecutiveFailureThreshold = 2
            $0.openDuration = .fixed(.seconds(5))
        }
        try breaker.acquirePermit().recordSuccess()
        try breaker.acquirePermit().recordFailure(Failure())
        #expect(breaker.metrics.bufferedCalls == 2)
        #expect(breaker.metrics.consecutiveFailures == 1)
        try breaker.acquirePermit().recordFailure(Failure())
        #expect(breaker.state == .open)

        clock.advance(by: .seconds(2))
        let error = try #require(Self.rejection(breaker))
        #expect(error.code == .open)
        #expect(error.remainingOpenDuration == .seconds(3))
        #expect(breaker.metrics.notPermittedCalls == 1)
    }

    @Test("a permit dropped without an outcome counts nothing and gives back its half-open slot")
    func droppedPermit() throws {
        let clock = TestClock()
        let breaker = Self.breaker(clock: clock) {
            $0.consecutiveFailureThreshold = 1
            $0.permittedCallsInHalfOpen = 1
            $0.openDuration = .fixed(.seconds(5))
        }
        do {
            _ = try breaker.acquirePermit()
        }
        #expect(breaker.metrics.bufferedCalls == 0, "a dropped closed-state permit is not a call")

        try breaker.acquirePermit().recordFailure(Failure())
        clock.advance(by: .seconds(5))
        func probeAndDrop() throws {
            let permit = try breaker.acquirePermit()
            #expect(breaker.metrics.halfOpenPermitsTaken == 1)
            #expect(Self.rejection(breaker)?.code == .halfOpenFull)
            _ = consume permit
        }
        for _ in 0..<3 {
            try probeAndDrop()
            #expect(breaker.state == .halfOpen)
            #expect(breaker.metrics.halfOpenPermitsTaken == 0, "the dropped probe gave its slot back")
        }
        try breaker.acquirePermit().recordSuccess()
        #expect(breaker.state == .closed)
    }

    @Test("release() counts nothing; an early exit between admission and recording is a release")
    func releaseAndEarlyExit() throws {
        let clock = TestClock()
        let breaker = Self.breaker(clock: clock) {
            $0.consecutiveFailureThreshold = 1
            $0.permittedCallsInHalfOpen = 1
            $0.openDuration = .fixed(.seconds(5))
        }
        try breaker.acquirePermit().recordFailure(Failure())
        clock.advance(by: .seconds(5))
        try breaker.acquirePermit().release()
        #expect(breaker.state == .halfOpen)
        #expect(breaker.metrics.halfOpenPermitsTaken == 0)

        struct Validation: Error {}
        func call(valid: Bool) throws -> Int {
            let permit = try breaker.acquirePermit()
            guard valid else { throw Validation() }  // the permit is dropped here
            permit.recordSuccess()
            return 1
        }
        #expect(throws: Validation.self) { try call(valid: false) }
        #expect(breaker.metrics.halfOpenPermitsTaken == 0)
        #expect(try call(valid: true) == 1)
        #expect(breaker.state == .closed)
    }

    @Test("recordResult and recordFailure classify as the configuration says")
    func classification() throws {
        struct Response: Sendable { var status: Int }
        let breaker = Self.breaker(clock: TestClock()) {
            $0.consecutiveFailureThreshold = 3
            $0.isFailureResult = { ($0 as? Response)?.status == 503 }
            $0.errorClassification = .lists(ignore: [Fixtures.Ignorable.self])
        }
        try breaker.acquirePermit().recordResult(Response(status: 503))
        try breaker.acquirePermit().recordResult(Response(status: 503))
        #expect(breaker.metrics.consecutiveFailures == 2)
        try breaker.acquirePermit().recordFailure(Fixtures.Ignorable())
        try breaker.acquirePermit().recordFailure(CancellationError())
        #expect(breaker.metrics.consecutiveFailures == 2, "ignored and cancelled outcomes do not count")
        #expect(breaker.metrics.bufferedCalls == 2)
        try breaker.acquirePermit().recordResult(Response(status: 200))
        #expect(breaker.metrics.consecutiveFailures == 0)
        #expect(breaker.state == .closed)
    }

    @Test("with automatic half-open, an open rejection reads no clock; after shutdown it does again")
    func automaticRejectionReadsNoClock() async throws {
        let clock = TestClock()
        let breaker = Self.breaker(clock: clock) {
            $0.consecutiveFailureThreshold = 1
            $0.openDuration = .fixed(.seconds(10))
            $0.halfOpenTransition = .automatic
            $0.permittedCallsInHalfOpen = 1
        }
        try breaker.acquirePermit().recordFailure(Failure())
        #expect(breaker.state == .open)
        await clock.waitForSleepers(count: 1)
        let fast = try #require(Self.rejection(breaker))
        #expect(fast.code == .open)
        #expect(fast.remainingOpenDuration == nil)

        await breaker.shutdown()
        #expect(clock.sleeperCount == 0)
        clock.advance(by: .seconds(4))
        #expect(Self.rejection(breaker)?.remainingOpenDuration == .seconds(6))
        clock.advance(by: .seconds(6))
        // Without its timer, the breaker moves to half-open on the next call.
        try breaker.acquirePermit().recordSuccess()
        #expect(breaker.state == .closed)
    }

    @Test("1,000 concurrent callers with permits: probes never exceed the limit, dropped permits free slots")
    func permitsUnderContention() async throws {
        let clock = TestClock()
        let permitted = 5
        let breaker = Self.breaker(clock: clock) {
            $0.consecutiveFailureThreshold = 1
            $0.failureRateThreshold = 0.5
            $0.permittedCallsInHalfOpen = permitted
            $0.openDuration = .fixed(.seconds(10))
        }
        try breaker.acquirePermit().recordFailure(Failure())
        clock.advance(by: .seconds(10))

        let probes = Fixtures.HighWaterMark()
        let admitted = Fixtures.HighWaterMark()
        await withDiscardingTaskGroup { group in
            for index in 0..<1_000 {
                group.addTask {
                    guard let permit = try? breaker.acquirePermit() else { return }
                    probes.enter()
                    admitted.enter()
                    await Task.yield()
                    probes.leave()
                    if index.isMultiple(of: 2) {
                        _ = consume permit  // no outcome: the slot goes back
                    } else {
                        permit.recordFailure(Failure())
                    }
                }
            }
        }
        #expect(probes.maximum <= permitted)
        #expect(probes.maximum >= 1)
        #expect(breaker.metrics.notPermittedCalls + admitted.inFlight == 1_000)
        // Every slot still taken belongs to a recorded failure: no dropped permit kept one. So
        // failing the free slots decides the phase, and it re-opens.
        if breaker.state == .halfOpen {
            #expect(breaker.metrics.halfOpenPermitsTaken == breaker.metrics.failedCalls)
        }
        var extraFailures = 0
        while breaker.state == .halfOpen, extraFailures < permitted {
            try breaker.acquirePermit().recordFailure(Failure())
            extraFailures += 1
        }
        #expect(breaker.state == .open)
    }
}
