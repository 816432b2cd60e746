import KeelCore
import KeelTesting
import Synchronization
import Testing

@testable import KeelResilience

/// The actor façade, driven by a ``TestClock``: no sleeps, no yield loops.
@Suite("Circuit breaker", .timeLimit(.minutes(2)))
struct CircuitBreakerTests {
    typealias Fixtures = CircuitBreakerFixtures
    typealias Failure = CircuitBreakerFixtures.Failure

    static func breaker(
        clock: TestClock,
        telemetry: any Telemetry = NoOpTelemetry(),
        _ configure: (inout CircuitBreaker.Configuration) -> Void
    ) -> CircuitBreaker {
        var configuration = CircuitBreaker.Configuration()
        configure(&configuration)
        return CircuitBreaker(
            name: "test",
            configuration: configuration,
            clock: clock,
            random: RandomSource(seed: 3),
            telemetry: telemetry
        )
    }

    @Test("opens after N consecutive failures and then rejects without running the operation")
    func consecutiveFailures() async throws {
        let clock = TestClock()
        let breaker = Self.breaker(clock: clock) {
            $0.failureRateThreshold = nil
            $0.consecutiveFailureThreshold = 3
            $0.openDuration = .fixed(.seconds(30))
        }
        try await Fixtures.fail(breaker, times: 2)
        try await Fixtures.succeed(breaker)
        try await Fixtures.fail(breaker, times: 2)
        #expect(breaker.state == .closed)
        try await Fixtures.fail(breaker)
        #expect(breaker.state == .open)

        clock.advance(by: .seconds(10))
        let ran = Fixtures.HighWaterMark()
        let error = await #expect(throws: CircuitBreakerError.self) {
            try await breaker.run { ran.enter() }
        }
        #expect(error?.code == .open)
        #expect(error?.breakerName == "test")
        #expect(error?.remainingOpenDuration == .seconds(20))
        #expect(ran.maximum == 0)
        #expect(breaker.metrics.notPermittedCalls == 1)
    }

    @Test("opens on the failure rate only once the minimum number of calls is reached")
    func failureRateMinimum() async throws {
        let clock = TestClock()
        let breaker = Self.breaker(clock: clock) {
            $0.failureRateThreshold = 0.5
            $0.minimumNumberOfCalls = 10
            $0.window = .lastCalls(20)
        }
        try await Fixtures.fail(breaker, times: 9)
        #expect(breaker.state == .closed, "100% failures, but only 9 calls")
        #expect(breaker.metrics.failureRate == nil)
        #expect(breaker.metrics.bufferedCalls == 9)
        try await Fixtures.succeed(breaker)
        #expect(breaker.state == .open, "9 of 10 failed")
    }

    @Test("a count-based window smaller than the minimum number of calls opens once it is full")
    func windowSmallerThanTheMinimum() async throws {
        let clock = TestClock()
        let breaker = Self.breaker(clock: clock) {
            $0.failureRateThreshold = 0.5
            $0.window = .lastCalls(2)
            // The default minimum, 20, is more than the window can ever hold.
        }
        try await Fixtures.fail(breaker)
        #expect(breaker.state == .closed)
        #expect(breaker.metrics.failureRate == nil, "one call: not yet the window's two")
        try await Fixtures.fail(breaker)
        #expect(breaker.state == .open)
    }

    @Test("a time-based window keeps a call until its whole bucket is as old as the window")
    func timeWindowEdge() async throws {
        let clock = TestClock()
        let breaker = Self.breaker(clock: clock) {
            $0.failureRateThreshold = 0.5
            $0.minimumNumberOfCalls = 4
            $0.window = .lastDuration(.seconds(60))
        }
        try await Fixtures.fail(breaker, times: 3)
        clock.advance(by: .seconds(56))
        #expect(breaker.metrics.bufferedCalls == 3, "56 s old: inside a 60 s window")
        clock.advance(by: .milliseconds(9_999))
        #expect(breaker.metrics.bufferedCalls == 3, "their bucket [0 s, 6 s) is not all 60 s old yet")
        clock.advance(by: .milliseconds(1))
        #expect(breaker.metrics.bufferedCalls == 0)
    }

    @Test("a time-based window forgets old calls as the clock moves")
    func timeWindowForgets() async throws {
        let clock = TestClock()
        let breaker = Self.breaker(clock: clock) {
            $0.failureRateThreshold = 0.5
            $0.minimumNumberOfCalls = 4
            $0.window = .lastDuration(.seconds(10), buckets: 10)
        }
        try await Fixtures.fail(breaker, times: 3)
        #expect(breaker.metrics.bufferedCalls == 3)
        clock.advance(by: .seconds(11))
        #expect(breaker.metrics.bufferedCalls == 0, "the three failures aged out")
        try await Fixtures.fail(breaker)
        #expect(breaker.state == .closed, "one failure in the window is below the minimum")
        try await Fixtures.succeed(breaker, times: 3)
        #expect(breaker.state == .closed)
        #expect(breaker.metrics.failureRate == 0.25)
    }

    @Test("slow calls are measured on the injected clock and open on the slow-call rate")
    func slowCalls() async throws {
        let clock = TestClock()
        let breaker = Self.breaker(clock: clock) {
            $0.failureRateThreshold = nil
            $0.slowCallDurationThreshold = .seconds(2)
            $0.slowCallRateThreshold = 0.5
            $0.minimumNumberOfCalls = 4
        }
        var events = breaker.events().makeAsyncIterator()
        for duration in [Duration.seconds(1), .seconds(3), .milliseconds(1_999)] {
            _ = try await breaker.run {
                clock.advance(by: duration)
                return 1
            }
        }
        #expect(breaker.metrics.slowCalls == 1)
        #expect(breaker.state == .closed)
        _ = try await breaker.run {
            clock.advance(by: .seconds(2))
            return 1
        }
        #expect(breaker.state == .open)
        var kinds: [CircuitBreakerEvent.Kind] = []
        for _ in 0..<8 {
            if let event = await events.next() { kinds.append(event.kind) }
        }
        #expect(
            kinds == [
                .success, .success, .slowCall, .success, .success, .slowCall, .slowCallRateExceeded, .stateTransition,
            ]
        )
    }

    @Test("ignored errors do not count and pass through unchanged; unlisted errors count as successes")
    func ignoredErrors() async throws {
        let clock = TestClock()
        let breaker = Self.breaker(clock: clock) {
            $0.failureRateThreshold = nil
            $0.consecutiveFailureThreshold = 2
            $0.errorClassification = .lists(record: [Failure.self], ignore: [Fixtures.Ignorable.self])
        }
        struct Other: Error {}
        for _ in 0..<5 {
            await #expect(throws: Fixtures.Ignorable.self) {
                try await breaker.run { () async throws -> Int in throw Fixtures.Ignorable() }
            }
        }
        try await Fixtures.fail(breaker)
        await #expect(throws: Other.self) {
            try await breaker.run { () async throws -> Int in throw Other() }
        }
        #expect(breaker.metrics.consecutiveFailures == 0, "an unlisted error counts as a success")
        try await Fixtures.fail(breaker)
        #expect(breaker.state == .closed)
        try await Fixtures.fail(breaker)
        #expect(breaker.state == .open)
    }

    @Test("a result predicate turns returned values into failures")
    func resultFailures() async throws {
        let clock = TestClock()
        let breaker = Self.breaker(clock: clock) {
            $0.failureRateThreshold = nil
            $0.consecutiveFailureThreshold = 2
            $0.isFailureResult = { ($0 as? Int) == 503 }
        }
        #expect(try await breaker.run { 503 } == 503)
        #expect(try await breaker.run { 503 } == 503)
        #expect(breaker.state == .open)
    }

    @Test("cancellation is never a failure, and gives back a half-open permit")
    func cancellation() async throws {
        let clock = TestClock()
        let breaker = Self.breaker(clock: clock) {
            $0.failureRateThreshold = nil
            $0.consecutiveFailureThreshold = 1
            $0.permittedCallsInHalfOpen = 1
            $0.openDuration = .fixed(.seconds(5))
        }
        for _ in 0..<5 {
            await #expect(throws: CancellationError.self) {
                try await breaker.run { () async throws -> Int in throw CancellationError() }
            }
        }
        // An error thrown by a cancelled task counts as cancellation too.
        let task = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await breaker.run { () async throws -> Int in throw Failure() }
        }
        _ = await task.result
        #expect(breaker.state == .closed)
        #expect(breaker.metrics.bufferedCalls == 0)

        try await Fixtures.fail(breaker)
        clock.advance(by: .seconds(5))
        await #expect(throws: CancellationError.self) {
            try await breaker.run { () async throws -> Int in throw CancellationError() }
        }
        #expect(breaker.state == .halfOpen)
        #expect(breaker.metrics.halfOpenPermitsTaken == 0, "the cancelled probe gave its permit back")
        try await Fixtures.succeed(breaker)
        #expect(breaker.state == .closed)
    }

    @Test("re-opened from half-open, the metrics show the probes, not the calls of the first opening")
    func reopenedMetricsShowTheProbes() async throws {
        let clock = TestClock()
        let breaker = Self.breaker(clock: clock) {
            $0.failureRateThreshold = 0.5
            $0.minimumNumberOfCalls = 4
            $0.window = .lastCalls(10)
            $0.permittedCallsInHalfOpen = 2
            $0.openDuration = .fixed(.seconds(5))
        }
        try await Fixtures.succeed(breaker, times: 2)
        try await Fixtures.fail(breaker, times: 2)
        #expect(breaker.state == .open)
        #expect(breaker.metrics.bufferedCalls == 4)
        clock.advance(by: .seconds(5))
        try await Fixtures.fail(breaker)
        #expect(breaker.state == .open, "one failed probe of two is the threshold")
        let metrics = breaker.metrics
        #expect(metrics.bufferedCalls == 1)
        #expect(metrics.failedCalls == 1)
    }

    @Test("forcing open and disabling forget the window and the consecutive failures")
    func manualTransitionsForgetTheWindow() async throws {
        let clock = TestClock()
        let breaker = Self.breaker(clock: clock) {
            $0.minimumNumberOfCalls = 10
            $0.consecutiveFailureThreshold = 5
        }
        try await Fixtures.fail(breaker, times: 3)
        #expect(breaker.metrics.bufferedCalls == 3)
        await breaker.forceOpen()
        #expect(breaker.metrics.bufferedCalls == 0)
        #expect(breaker.metrics.consecutiveFailures == 0)
        await breaker.reset()
        try await Fixtures.fail(breaker, times: 3)
        await breaker.disable()
        #expect(breaker.metrics.bufferedCalls == 0)
        #expect(breaker.metrics.consecutiveFailures == 0)
    }

    @Test("every transition is visible in `state` before its event is published")
    func stateBeforeEvent() async throws {
        let breakerBox = Lock<CircuitBreaker?>(nil)
        let stale = Lock<[String]>([])
        var configuration = CircuitBreaker.Configuration()
        configuration.failureRateThreshold = nil
        configuration.consecutiveFailureThreshold = 1
        configuration.permittedCallsInHalfOpen = 1
        configuration.openDuration = .fixed(.seconds(5))
        let clock = TestClock()
        let breaker = CircuitBreaker(
            name: "ordered",
            configuration: configuration,
            clock: clock,
            random: RandomSource(seed: 1),
            telemetry: NoOpTelemetry(),
            taskExecutor: nil,
            onPublish: { event in
                guard event.kind == .stateTransition, let breaker = breakerBox.withLock({ $0 }) else { return }
                // On the publishing thread, before any consumer can see the event.
                let state = breaker.state
                if state != event.toState {
                    stale.withLock { $0.append("event to \(String(describing: event.toState)), state \(state)") }
                }
            }
        )
        breakerBox.withLock { $0 = breaker }
        let events = breaker.events()
        try await Fixtures.fail(breaker)  // closed → open
        clock.advance(by: .seconds(5))
        try await Fixtures.succeed(breaker)  // open → half-open → closed
        await breaker.forceOpen()
        await breaker.disable()
        await breaker.reset()
        #expect(stale.withLock { $0 }.isEmpty, "\(stale.withLock { $0 })")
        _ = events
    }

    @Test("startHalfOpen() moves to half-open from closed and from open; the probes decide")
    func manualHalfOpen() async throws {
        let clock = TestClock()
        let breaker = Self.breaker(clock: clock) {
            $0.failureRateThreshold = nil
            $0.consecutiveFailureThreshold = 1
            $0.permittedCallsInHalfOpen = 1
            $0.openDuration = .fixed(.seconds(30))
        }
        await breaker.startHalfOpen()
        #expect(breaker.state == .halfOpen)
        try await Fixtures.succeed(breaker)
        #expect(breaker.state == .closed)
        try await Fixtures.fail(breaker)
        #expect(breaker.state == .open)
        await breaker.startHalfOpen()
        #expect(breaker.state == .halfOpen, "long before the 30 s are over")
        try await Fixtures.fail(breaker)
        #expect(breaker.state == .open)
    }

    @Test("open(for:) rejects for that long, then half-opens as after any opening, without advancing the backoff")
    func openForADuration() async throws {
        let clock = TestClock()
        let breaker = Self.breaker(clock: clock) {
            $0.permittedCallsInHalfOpen = 1
            $0.openDuration = .exponential(initial: .seconds(1), multiplier: 2, maximum: .seconds(60))
        }
        await breaker.open(for: .seconds(10))
        #expect(breaker.state == .open)
        do {
            _ = try breaker.acquirePermit()
            Issue.record("an open breaker gave a permit")
        } catch {
            #expect(error.code == .open)
            #expect(error.remainingOpenDuration == .seconds(10))
        }
        clock.advance(by: .milliseconds(9_999))
        #expect(await Fixtures.rejection(breaker) == .open)
        clock.advance(by: .milliseconds(1))
        try await Fixtures.succeed(breaker)
        #expect(breaker.state == .closed)
        #expect(breaker.metrics.consecutiveOpenings == 0)
    }

    @Test(
        "when maximumTimeInHalfOpen runs out, the breaker re-opens by default and closes with afterMaximumTimeInHalfOpen = .closed",
        arguments: [CircuitBreaker.State.open, .closed]
    )
    func halfOpenTimesOut(after: CircuitBreaker.State) async throws {
        let clock = TestClock()
        let breaker = Self.breaker(clock: clock) {
            $0.failureRateThreshold = nil
            $0.consecutiveFailureThreshold = 1
            $0.permittedCallsInHalfOpen = 1
            $0.openDuration = .fixed(.seconds(5))
            $0.maximumTimeInHalfOpen = .seconds(3)
            if after == .closed { $0.afterMaximumTimeInHalfOpen = .closed }
        }
        try await Fixtures.fail(breaker)
        clock.advance(by: .seconds(5))
        // A probe that never comes back.
        let probe = try breaker.acquirePermit()
        #expect(breaker.state == .halfOpen)
        clock.advance(by: .seconds(3))
        if after == .closed {
            try await Fixtures.succeed(breaker)
            #expect(breaker.state == .closed)
        } else {
            #expect(await Fixtures.rejection(breaker) == .open)
            #expect(breaker.state == .open)
        }
        probe.release()
    }

    @Test("slow calls are told apart: slow failures and slow successes")
    func slowFailuresAndSlowSuccesses() async throws {
        let clock = TestClock()
        let breaker = Self.breaker(clock: clock) {
            $0.failureRateThreshold = nil
            $0.slowCallDurationThreshold = .seconds(2)
            $0.slowCallRateThreshold = 1.0
        }
        _ = try await breaker.run {
            clock.advance(by: .seconds(3))
            return 1
        }
        await #expect(throws: Failure.self) {
            try await breaker.run { () async throws -> Int in
                clock.advance(by: .seconds(3))
                throw Failure()
            }
        }
        try await Fixtures.fail(breaker)
        try await Fixtures.succeed(breaker)
        let metrics = breaker.metrics
        #expect(metrics.bufferedCalls == 4)
        #expect(metrics.failedCalls == 2)
        #expect(metrics.slowCalls == 2)
        #expect(metrics.slowFailedCalls == 1)
        #expect(metrics.slowSuccessfulCalls == 1)
    }

    @Test("an opening caused by a rate is announced with the rate, just before the transition")
    func rateExceededEvents() async throws {
        let clock = TestClock()
        let breaker = Self.breaker(clock: clock) {
            $0.failureRateThreshold = 0.5
            $0.minimumNumberOfCalls = 4
            $0.window = .lastCalls(10)
            $0.permittedCallsInHalfOpen = 2
            $0.openDuration = .fixed(.seconds(5))
        }
        let events = breaker.events()
        var iterator = events.makeAsyncIterator()
        try await Fixtures.succeed(breaker, times: 2)
        try await Fixtures.fail(breaker, times: 2)
        clock.advance(by: .seconds(5))
        try await Fixtures.fail(breaker)  // one of two probes: 0.5 again
        var kinds: [String] = []
        var rates: [Double] = []
        while kinds.filter({ $0 == "stateTransition" }).count < 3, let event = await iterator.next() {
            guard event.kind != .success, event.kind != .failure else { continue }
            kinds.append("\(event.kind)")
            if let rate = event.rate { rates.append(rate) }
        }
        #expect(
            kinds == [
                "failureRateExceeded", "stateTransition",  // closed → open
                "stateTransition",  // open → half-open
                "failureRateExceeded", "stateTransition",  // half-open → open
            ]
        )
        #expect(rates == [0.5, 0.5])

        let slow = Self.breaker(clock: clock) {
            $0.failureRateThreshold = nil
            $0.consecutiveFailureThreshold = 3
            $0.slowCallDurationThreshold = .seconds(2)
            $0.slowCallRateThreshold = 0.5
            $0.minimumNumberOfCalls = 2
        }
        var slowEvents = slow.events().makeAsyncIterator()
        for _ in 0..<2 {
            _ = try await slow.run {
                clock.advance(by: .seconds(2))
                return 1
            }
        }
        #expect(slow.state == .open)
        var slowKinds: [CircuitBreakerEvent.Kind] = []
        while let event = await slowEvents.next() {
            slowKinds.append(event.kind)
            if event.kind == .slowCallRateExceeded { #expect(event.rate == 1.0) }
            if event.kind == .stateTransition { break }
        }
        #expect(slowKinds.suffix(2) == [.slowCallRateExceeded, .stateTransition])

        // Consecutive failures are not a rate: the transition alone.
        let streak = Self.breaker(clock: clock) {
            $0.failureRateThreshold = nil
            $0.consecutiveFailureThreshold = 2
        }
        var streakEvents = streak.events().makeAsyncIterator()
        try await Fixtures.fail(streak, times: 2)
        var streakKinds: [CircuitBreakerEvent.Kind] = []
        while let event = await streakEvents.next() {
            streakKinds.append(event.kind)
            if event.kind == .stateTransition { break }
        }
        #expect(streakKinds == [.failure, .failure, .stateTransition])
    }

    @Test(
        "an attempt cancelled after the caller's deadline passed is a failure by default; before it, or with the option off, it does not count",
        arguments: [true, false]
    )
    func deadlineCutsAreFailures(counts: Bool) async throws {
        let clock = TestClock()
        let breaker = Self.breaker(clock: clock) {
            $0.failureRateThreshold = nil
            $0.consecutiveFailureThreshold = 2
            $0.countsDeadlineExceededAsFailure = counts
        }
        var root = TraceContext.makeRoot(using: RandomSource(seed: 5))
        root.deadline = Deadline.after(.seconds(1), on: clock)
        let context = root
        // What the request channel does when a deadline fires: it cancels the attempt's task.
        @Sendable func attempt(passingTheDeadline: Bool) async {
            let task = Task {
                try await TraceContext.$current.withValue(context) {
                    try await breaker.run { () async throws -> Int in
                        if passingTheDeadline { clock.advance(by: .seconds(1)) }
                        withUnsafeCurrentTask { $0?.cancel() }
                        throw CancellationError()
                    }
                }
            }
            _ = await task.result
        }
        await attempt(passingTheDeadline: false)
        #expect(breaker.metrics.consecutiveFailures == 0, "a caller that gave up early")
        await attempt(passingTheDeadline: true)
        await attempt(passingTheDeadline: false)  // the deadline has passed now: cut by it
        if counts {
            #expect(breaker.state == .open)
        } else {
            #expect(breaker.state == .closed)
            #expect(breaker.metrics.bufferedCalls == 0)
        }
    }

    @Test("an ignored error gives back its half-open permit")
    func ignoredReleasesPermit() async throws {
        let clock = TestClock()
        let breaker = Self.breaker(clock: clock) {
            $0.failureRateThreshold = nil
            $0.consecutiveFailureThreshold = 1
            $0.permittedCallsInHalfOpen = 1
            $0.openDuration = .fixed(.seconds(5))
            $0.errorClassification = .lists(ignore: [Fixtures.Ignorable.self])
        }
        try await Fixtures.fail(breaker)
        clock.advance(by: .seconds(5))
        for _ in 0..<3 {
            await #expect(throws: Fixtures.Ignorable.self) {
                try await breaker.run { () async throws -> Int in throw Fixtures.Ignorable() }
            }
        }
        #expect(breaker.state == .halfOpen)
        try await Fixtures.succeed(breaker)
        #expect(breaker.state == .closed)
    }

    @Test("the open duration backs off while the breaker keeps re-opening, and restarts after a close")
    func backoff() async throws {
        let clock = TestClock()
        let breaker = Self.breaker(clock: clock) {
            $0.failureRateThreshold = nil
            $0.consecutiveFailureThreshold = 1
            $0.permittedCallsInHalfOpen = 1
            $0.openDuration = .exponential(initial: .seconds(1), multiplier: 3, maximum: .seconds(20))
        }
        var remaining: [Duration?] = []
        try await Fixtures.fail(breaker)
        for _ in 0..<4 {
            do {
                _ = try await breaker.run { 1 }
            } catch let error as CircuitBreakerError {
                remaining.append(error.remainingOpenDuration)
                clock.advance(by: error.remainingOpenDuration!)
            }
            try await Fixtures.fail(breaker)  // the probe fails: re-open
        }
        #expect(remaining == [.seconds(1), .seconds(3), .seconds(9), .seconds(20)])
        #expect(breaker.metrics.consecutiveOpenings == 5)
        clock.advance(by: .seconds(20))
        try await Fixtures.succeed(breaker)
        #expect(breaker.state == .closed)
        try await Fixtures.fail(breaker)
        let error = await #expect(throws: CircuitBreakerError.self) { try await breaker.run { 1 } }
        #expect(error?.remainingOpenDuration == .seconds(1))
    }

    @Test("forced open, disabled and metrics-only; reset closes from each")
    func manualControl() async throws {
        let clock = TestClock()
        let breaker = Self.breaker(clock: clock) {
            $0.failureRateThreshold = nil
            $0.consecutiveFailureThreshold = 1
        }
        await breaker.forceOpen()
        #expect(await Fixtures.rejection(breaker) == .forcedOpen)
        clock.advance(by: .seconds(3_600))
        #expect(await Fixtures.rejection(breaker) == .forcedOpen)

        await breaker.disable()
        try await Fixtures.fail(breaker, times: 10)
        #expect(breaker.state == .disabled)
        #expect(breaker.metrics.bufferedCalls == 0)

        await breaker.enableMetricsOnly()
        try await Fixtures.fail(breaker, times: 10)
        #expect(breaker.state == .metricsOnly)
        #expect(breaker.metrics.failedCalls == 10)
        #expect(await Fixtures.rejection(breaker) == nil)

        await breaker.reset()
        #expect(breaker.state == .closed)
        #expect(breaker.metrics.bufferedCalls == 0)
        try await Fixtures.fail(breaker)
        #expect(breaker.state == .open)
        await breaker.reset()
        #expect(breaker.state == .closed)
    }

    @Test("automatic half-open: the breaker's timer moves it on the clock, without a call")
    func automaticHalfOpen() async throws {
        let clock = TestClock()
        let breaker = Self.breaker(clock: clock) {
            $0.failureRateThreshold = nil
            $0.consecutiveFailureThreshold = 1
            $0.openDuration = .fixed(.seconds(10))
            $0.halfOpenTransition = .automatic
            $0.permittedCallsInHalfOpen = 1
        }
        var events = breaker.events().makeAsyncIterator()
        try await Fixtures.fail(breaker)
        #expect(await Fixtures.nextTransition(&events) == .open)
        await clock.waitForSleepers(count: 1)
        clock.advance(by: .seconds(9))
        #expect(breaker.state == .open)
        clock.advance(by: .seconds(1))
        #expect(await Fixtures.nextTransition(&events) == .halfOpen)
        #expect(breaker.state == .halfOpen)
        try await Fixtures.succeed(breaker)
        #expect(await Fixtures.nextTransition(&events) == .closed)
        await breaker.shutdown()
        #expect(clock.sleeperCount == 0)
    }

    @Test("automatic mode with a maximum time in half-open re-opens when the probes never come")
    func maximumTimeInHalfOpen() async throws {
        let clock = TestClock()
        let breaker = Self.breaker(clock: clock) {
            $0.failureRateThreshold = nil
            $0.consecutiveFailureThreshold = 1
            $0.openDuration = .fixed(.seconds(10))
            $0.halfOpenTransition = .automatic
            $0.maximumTimeInHalfOpen = .seconds(5)
        }
        var events = breaker.events().makeAsyncIterator()
        try await Fixtures.fail(breaker)
        #expect(await Fixtures.nextTransition(&events) == .open)
        await clock.waitForSleepers(count: 1)
        clock.advance(by: .seconds(10))
        #expect(await Fixtures.nextTransition(&events) == .halfOpen)
        await clock.waitForSleepers(count: 1)
        clock.advance(by: .seconds(5))
        #expect(await Fixtures.nextTransition(&events) == .open)
        await breaker.shutdown()
    }

    @Test("lazy half-open: the state stays open until the next call, which becomes the probe")
    func lazyHalfOpen() async throws {
        let clock = TestClock()
        let breaker = Self.breaker(clock: clock) {
            $0.failureRateThreshold = nil
            $0.consecutiveFailureThreshold = 1
            $0.openDuration = .fixed(.seconds(10))
            $0.permittedCallsInHalfOpen = 2
        }
        try await Fixtures.fail(breaker)
        clock.advance(by: .seconds(60))
        #expect(breaker.state == .open)
        #expect(clock.sleeperCount == 0, "no timer in lazy mode")
        try await Fixtures.succeed(breaker)
        #expect(breaker.state == .halfOpen)
        try await Fixtures.succeed(breaker)
        #expect(breaker.state == .closed)
    }

    @Test("calls are not serialized: two calls run at once inside a closed breaker")
    func notSerialized() async throws {
        let breaker = Self.breaker(clock: TestClock()) { _ in }
        let gate = Fixtures.Gate()
        let bothInside = Fixtures.Countdown(2)
        try await withThrowingTaskGroup(of: Int.self) { group in
            for value in 1...2 {
                group.addTask {
                    try await breaker.run {
                        bothInside.signal()
                        await gate.wait()
                        return value
                    }
                }
            }
            await bothInside.wait()  // both operations are inside the breaker at the same time
            gate.open()
            var sum = 0
            for try await value in group { sum += value }
            #expect(sum == 3)
        }
    }

    @Test(
        "half-open under contention: 1,000 callers, probes never exceed the limit, never left half-open",
        arguments: [true, false]
    )
    func halfOpenContention(probesSucceed: Bool) async throws {
        let clock = TestClock()
        let permitted = 5
        let breaker = Self.breaker(clock: clock) {
            $0.failureRateThreshold = 0.5
            $0.consecutiveFailureThreshold = 1
            $0.openDuration = .fixed(.seconds(10))
            $0.permittedCallsInHalfOpen = permitted
        }
        try await Fixtures.fail(breaker)
        clock.advance(by: .seconds(10))

        let callers = 1_000
        let gate = Fixtures.Gate()
        let attempted = Fixtures.Countdown(callers)
        let probes = Fixtures.HighWaterMark()
        let rejected = Fixtures.HighWaterMark()
        await withDiscardingTaskGroup { group in
            for _ in 0..<callers {
                group.addTask {
                    do {
                        _ = try await breaker.run { () async throws -> Int in
                            probes.enter()
                            attempted.signal()
                            await gate.wait()
                            probes.leave()
                            if !probesSucceed { throw Failure() }
                            return 1
                        }
                    } catch is CircuitBreakerError {
                        rejected.enter()
                        attempted.signal()
                    } catch {}
                }
            }
            await attempted.wait()  // every caller was admitted (and is blocked) or rejected
            #expect(probes.inFlight == permitted)
            #expect(breaker.state == .halfOpen)
            gate.open()
        }
        #expect(probes.maximum == permitted)
        #expect(rejected.inFlight == callers - permitted)
        #expect(breaker.state == (probesSucceed ? .closed : .open))
        #expect(breaker.state != .halfOpen)
    }

    @Test("half-open under contention with mixed outcomes: repeated rounds never leave it half-open")
    func halfOpenContentionRounds() async throws {
        let clock = TestClock()
        let permitted = 3
        let callers = 1_000
        let breaker = Self.breaker(clock: clock) {
            $0.failureRateThreshold = 0.5
            $0.consecutiveFailureThreshold = 1
            $0.openDuration = .fixed(.seconds(1))
            $0.permittedCallsInHalfOpen = permitted
        }
        for round in 0..<20 {
            try await Fixtures.fail(breaker)
            clock.advance(by: .seconds(1))
            // The probes' outcomes are fixed before the round: the first admitted probe fails in
            // rounds where `round % 4 == 0`, and so on, whatever the order of admission.
            let failingProbes = round % (permitted + 1)
            let admitted = Fixtures.Tickets()
            let gate = Fixtures.Gate()
            let attempted = Fixtures.Countdown(callers)
            let probes = Fixtures.HighWaterMark()
            let rejected = Fixtures.Tickets()
            await withDiscardingTaskGroup { group in
                for _ in 0..<callers {
                    group.addTask {
                        do {
                            _ = try await breaker.run { () async throws -> Int in
                                probes.enter()
                                let order = admitted.take()
                                attempted.signal()
                                await gate.wait()
                                probes.leave()
                                if order <= failingProbes { throw Failure() }
                                return 1
                            }
                        } catch is CircuitBreakerError {
                            _ = rejected.take()
                            attempted.signal()
                        } catch {}
                    }
                }
                // Every caller was admitted and holds its probe at the gate, or was rejected: the
                // probes are all in flight at once here.
                await attempted.wait()
                #expect(probes.inFlight == permitted, "round \(round)")
                gate.open()
            }
            #expect(probes.maximum == permitted, "round \(round)")
            #expect(rejected.count == callers - permitted, "round \(round)")
            // Half the probes or more failing re-opens the breaker; fewer close it.
            let reopens = Double(failingProbes) / Double(permitted) >= 0.5
            #expect(breaker.state == (reopens ? .open : .closed), "round \(round)")
            await breaker.reset()
        }
    }

    @Test("events report transitions in order; metrics and telemetry follow")
    func eventsAndTelemetry() async throws {
        let clock = TestClock()
        let recorder = InMemoryRecorder()
        let breaker = Self.breaker(clock: clock, telemetry: recorder) {
            $0.failureRateThreshold = nil
            $0.consecutiveFailureThreshold = 2
            $0.openDuration = .fixed(.seconds(1))
            $0.permittedCallsInHalfOpen = 1
        }
        let events = breaker.events(bufferSize: 64)
        try await Fixtures.fail(breaker, times: 2)
        #expect(await Fixtures.rejection(breaker) == .open)
        clock.advance(by: .seconds(1))
        try await Fixtures.succeed(breaker)
        await breaker.shutdown()

        var seen: [String] = []
        for await event in events {
            seen.append(event.toState.map { "-> \($0)" } ?? "\(event.kind)")
        }
        #expect(seen == ["failure", "failure", "-> open", "notPermitted", "-> halfOpen", "success", "-> closed"])
        let dimensions = [("breaker", "test"), ("outcome", "failure")]
        #expect(recorder.counter("keel.breaker.calls", dimensions: dimensions) == 2)
        #expect(
            recorder.counter("keel.breaker.calls", dimensions: [("breaker", "test"), ("outcome", "notPermitted")]) == 1
        )
        #expect(recorder.counter("keel.breaker.transitions", dimensions: [("breaker", "test")]) == 3)
        #expect(recorder.gauge("keel.breaker.state", dimensions: [("breaker", "test")]) == 0)
    }

    @Test("a slow event consumer loses the oldest events, counted, and never blocks the breaker")
    func eventBufferDropsOldest() async throws {
        let breaker = Self.breaker(clock: TestClock()) { _ in }
        let events = breaker.events(bufferSize: 2)
        try await Fixtures.succeed(breaker, times: 5)
        try await Fixtures.fail(breaker)
        #expect(events.droppedCount == 4)
        await breaker.shutdown()
        var kinds: [CircuitBreakerEvent.Kind] = []
        for await event in events { kinds.append(event.kind) }
        #expect(kinds == [.success, .failure])
    }

    @Test("the registry makes one breaker per name from the shared default configuration")
    func registry() async throws {
        var defaults = CircuitBreaker.Configuration()
        defaults.consecutiveFailureThreshold = 7
        let registry = CircuitBreakerRegistry(defaultConfiguration: defaults, clock: TestClock())
        let payments = registry.breaker(named: "payments")
        #expect(payments === registry.breaker(named: "payments"))
        #expect(payments.configuration.consecutiveFailureThreshold == 7)
        var custom = defaults
        custom.consecutiveFailureThreshold = 2
        let search = registry.breaker(named: "search", configuration: custom)
        #expect(search.configuration.consecutiveFailureThreshold == 2)
        #expect(registry.names == ["payments", "search"])
        #expect(registry.breakers.map(\.name) == ["payments", "search"])
        await registry.shutdown()
    }
}
