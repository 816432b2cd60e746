import KeelCore
import Testing

@testable import KeelResilience

/// The pure state machine, synchronously: every state against every event.
@Suite("Circuit breaker state machine", .timeLimit(.minutes(2)))
struct CircuitBreakerStateMachineTests {
    typealias Machine = CircuitBreakerStateMachine

    static func machine(_ configure: (inout CircuitBreaker.Configuration) -> Void = { _ in }) -> Machine {
        var configuration = CircuitBreaker.Configuration()
        configuration.failureRateThreshold = 0.5
        configuration.minimumNumberOfCalls = 4
        configuration.window = .lastCalls(4)
        configuration.openDuration = .fixed(.seconds(10))
        configuration.permittedCallsInHalfOpen = 2
        configure(&configuration)
        return Machine(configuration: configuration, random: RandomSource(seed: 1))
    }

    static func permit(_ machine: inout Machine, at now: Duration = .zero) -> Machine.Permit {
        guard case .permitted(let permit, _) = machine.admit(now: now) else {
            Issue.record("expected a permit in \(machine.state)")
            return Machine.Permit(generation: .max, kind: .disabled)
        }
        return permit
    }

    /// Drives a fresh machine to open at time zero (until 10 s) with four failures.
    static func openMachine(_ configure: (inout CircuitBreaker.Configuration) -> Void = { _ in }) -> Machine {
        var machine = Self.machine(configure)
        for _ in 0..<4 {
            let permit = Self.permit(&machine)
            _ = machine.record(permit, .failure, isSlow: false, now: .zero)
        }
        #expect(machine.publicState == .open)
        return machine
    }

    /// Drives a fresh machine to half-open at 10 s, taking no probe permit yet.
    static func halfOpenMachine(_ configure: (inout CircuitBreaker.Configuration) -> Void = { _ in }) -> Machine {
        var machine = Self.openMachine {
            $0.halfOpenTransition = .automatic
            configure(&$0)
        }
        let transition = machine.timerFired(generation: machine.generation, now: .seconds(10))
        #expect(transition?.to == .halfOpen)
        return machine
    }

    // MARK: closed

    @Test("closed: admits with a closed permit of the current generation")
    func closedAdmits() {
        var machine = Self.machine()
        #expect(machine.admit(now: .zero) == .permitted(.init(generation: 0, kind: .closed), nil))
    }

    @Test("closed: success and failure are recorded; the rate is judged only from the minimum")
    func closedRecordsAndWaitsForMinimum() {
        var machine = Self.machine()
        for _ in 0..<3 {
            let permit = Self.permit(&machine)
            #expect(machine.record(permit, .failure, isSlow: false, now: .zero) == nil)
        }
        #expect(machine.window.totals.failures == 3)
        let permit = Self.permit(&machine)
        let transition = machine.record(permit, .success, isSlow: false, now: .zero)
        #expect(transition?.from == .closed)
        #expect(transition?.to == .open)
        #expect(transition?.openDuration == .seconds(10))
        #expect(transition?.timerDeadline == nil, "lazy half-open arms no timer")
        #expect(machine.openUntil == .seconds(10))
    }

    @Test("closed: below the failure rate stays closed")
    func closedBelowRate() {
        var machine = Self.machine()
        for outcome in [Machine.Outcome.failure, .success, .success, .success, .failure, .success] {
            let permit = Self.permit(&machine)
            #expect(machine.record(permit, outcome, isSlow: false, now: .zero) == nil)
        }
        #expect(machine.publicState == .closed)
    }

    @Test("closed: ignored and cancelled outcomes are not recorded")
    func closedIgnores() {
        var machine = Self.machine()
        for outcome in [Machine.Outcome.ignored, .cancelled, .ignored, .cancelled, .ignored] {
            let permit = Self.permit(&machine)
            #expect(machine.record(permit, outcome, isSlow: false, now: .zero) == nil)
        }
        #expect(machine.window.totals.calls == 0)
    }

    @Test("closed: consecutive failures open regardless of the window; a success resets the count")
    func closedConsecutive() {
        var machine = Self.machine {
            $0.failureRateThreshold = nil
            $0.consecutiveFailureThreshold = 3
            $0.minimumNumberOfCalls = 100
        }
        for outcome in [Machine.Outcome.failure, .failure, .success, .failure, .failure] {
            let permit = Self.permit(&machine)
            #expect(machine.record(permit, outcome, isSlow: false, now: .zero) == nil)
        }
        let permit = Self.permit(&machine)
        #expect(machine.record(permit, .failure, isSlow: false, now: .zero)?.to == .open)
    }

    @Test("closed: the slow-call rate opens")
    func closedSlowRate() {
        var machine = Self.machine {
            $0.failureRateThreshold = nil
            $0.slowCallDurationThreshold = .seconds(1)
            $0.slowCallRateThreshold = 0.75
        }
        var transitions: [CircuitBreaker.State?] = []
        for isSlow in [true, false, true, true] {
            let permit = Self.permit(&machine)
            transitions.append(machine.record(permit, .success, isSlow: isSlow, now: .zero)?.to)
        }
        #expect(transitions == [nil, nil, nil, .open])
    }

    @Test("closed: an outcome with a permit of an older generation does not count")
    func closedStalePermit() {
        var machine = Self.machine()
        let stale = Self.permit(&machine)
        _ = machine.reset()
        #expect(machine.record(stale, .failure, isSlow: false, now: .zero) == nil)
        #expect(machine.window.totals.calls == 0)
    }

    @Test("closed: timers of other generations do nothing")
    func closedTimer() {
        var machine = Self.machine()
        #expect(machine.timerFired(generation: 0, now: .seconds(100)) == nil)
        #expect(machine.timerFired(generation: 7, now: .seconds(100)) == nil)
    }

    // MARK: open

    @Test("open: rejects with the remaining time before the deadline")
    func openRejects() {
        var machine = Self.openMachine()
        #expect(machine.admit(now: .seconds(4)) == .rejected(.open, remainingOpenDuration: .seconds(6), nil))
    }

    @Test("open: the first call after the deadline moves to half-open and is the first probe")
    func openLazyHalfOpen() {
        var machine = Self.openMachine()
        guard case .permitted(let permit, let transition) = machine.admit(now: .seconds(10)) else {
            Issue.record("expected a probe")
            return
        }
        #expect(permit.kind == .halfOpen)
        #expect(transition?.from == .open)
        #expect(transition?.to == .halfOpen)
        guard case .halfOpen(let probes) = machine.state else {
            Issue.record("expected half-open, got \(machine.state)")
            return
        }
        #expect(probes.admitted == 1)
    }

    @Test("open: the timer moves to half-open at the deadline, not before, and only for its generation")
    func openTimer() {
        var machine = Self.openMachine { $0.halfOpenTransition = .automatic }
        let generation = machine.generation
        #expect(machine.timerFired(generation: generation - 1, now: .seconds(10)) == nil)
        #expect(machine.timerFired(generation: generation, now: .seconds(9)) == nil)
        #expect(machine.timerFired(generation: generation, now: .seconds(10))?.to == .halfOpen)
    }

    @Test("open: automatic mode asks for a timer at the deadline")
    func openAutomaticAsksForTimer() {
        var machine = Self.machine { $0.halfOpenTransition = .automatic }
        var transition: Machine.Transition?
        for _ in 0..<4 {
            let permit = Self.permit(&machine)
            transition = machine.record(permit, .failure, isSlow: false, now: .seconds(1))
        }
        #expect(transition?.timerDeadline == .seconds(11))
    }

    @Test("open: outcomes of calls admitted while closed no longer count")
    func openIgnoresLateOutcomes() {
        var machine = Self.machine()
        let late = Self.permit(&machine)
        machine = Self.openMachine()
        #expect(machine.record(late, .failure, isSlow: false, now: .zero) == nil)
        #expect(machine.publicState == .open)
    }

    @Test("open: manual control and reset leave it")
    func openManual() {
        var machine = Self.openMachine()
        #expect(machine.forceOpen()?.to == .forcedOpen)
        machine = Self.openMachine()
        #expect(machine.disable()?.to == .disabled)
        machine = Self.openMachine()
        #expect(machine.enableMetricsOnly()?.to == .metricsOnly)
        machine = Self.openMachine()
        #expect(machine.reset().to == .closed)
        #expect(machine.consecutiveOpenings == 0)
    }

    // MARK: half-open

    @Test("half-open: admits exactly the permitted probes, then rejects as full")
    func halfOpenPermits() {
        var machine = Self.halfOpenMachine()
        #expect(Self.permit(&machine, at: .seconds(10)).kind == .halfOpen)
        #expect(Self.permit(&machine, at: .seconds(10)).kind == .halfOpen)
        #expect(machine.admit(now: .seconds(10)) == .rejected(.halfOpenFull, remainingOpenDuration: nil, nil))
    }

    @Test("half-open: ignored and cancelled probes give their permits back")
    func halfOpenReleases() {
        var machine = Self.halfOpenMachine()
        let first = Self.permit(&machine, at: .seconds(10))
        let second = Self.permit(&machine, at: .seconds(10))
        #expect(machine.record(first, .ignored, isSlow: false, now: .seconds(10)) == nil)
        #expect(machine.record(second, .cancelled, isSlow: false, now: .seconds(10)) == nil)
        #expect(Self.permit(&machine, at: .seconds(10)).kind == .halfOpen)
        #expect(Self.permit(&machine, at: .seconds(10)).kind == .halfOpen)
        guard case .rejected(.halfOpenFull, _, _) = machine.admit(now: .seconds(10)) else {
            Issue.record("expected full")
            return
        }
    }

    @Test("half-open: probes under the failure rate close and clear the backoff")
    func halfOpenCloses() {
        var machine = Self.halfOpenMachine()
        let first = Self.permit(&machine, at: .seconds(10))
        let second = Self.permit(&machine, at: .seconds(10))
        #expect(machine.record(first, .success, isSlow: false, now: .seconds(10)) == nil)
        #expect(machine.record(second, .success, isSlow: false, now: .seconds(10))?.to == .closed)
        #expect(machine.consecutiveOpenings == 0)
        #expect(machine.window.totals.calls == 0)
    }

    @Test("half-open: probes at the failure rate re-open, as soon as it is certain")
    func halfOpenReopens() {
        var machine = Self.halfOpenMachine()
        let first = Self.permit(&machine, at: .seconds(10))
        let second = Self.permit(&machine, at: .seconds(10))
        let transition = machine.record(first, .failure, isSlow: false, now: .seconds(10))
        #expect(transition?.from == .halfOpen)
        #expect(transition?.to == .open)
        #expect(machine.record(second, .success, isSlow: false, now: .seconds(10)) == nil, "stale probe")
        #expect(machine.publicState == .open)
    }

    @Test("half-open: slow probes re-open")
    func halfOpenSlow() {
        var machine = Self.halfOpenMachine {
            $0.slowCallDurationThreshold = .seconds(1)
            $0.slowCallRateThreshold = 0.5
        }
        let probe = Self.permit(&machine, at: .seconds(10))
        #expect(machine.record(probe, .success, isSlow: true, now: .seconds(12))?.to == .open)
    }

    @Test("half-open: the maximum time re-opens, by timer or on the next call")
    func halfOpenMaximumTime() {
        var byTimer = Self.halfOpenMachine { $0.maximumTimeInHalfOpen = .seconds(5) }
        let generation = byTimer.generation
        #expect(byTimer.timerFired(generation: generation, now: .seconds(14)) == nil)
        #expect(byTimer.timerFired(generation: generation, now: .seconds(15))?.to == .open)

        var byCall = Self.halfOpenMachine { $0.maximumTimeInHalfOpen = .seconds(5) }
        guard case .rejected(.open, let remaining, let transition) = byCall.admit(now: .seconds(15)) else {
            Issue.record("expected a rejection")
            return
        }
        #expect(transition?.to == .open)
        #expect(remaining == transition?.openDuration)
    }

    @Test("half-open: the transition from open asks for the half-open deadline timer")
    func halfOpenDeadlineTimer() {
        var machine = Self.openMachine { $0.maximumTimeInHalfOpen = .seconds(5) }
        guard case .permitted(_, let transition) = machine.admit(now: .seconds(10)) else {
            Issue.record("expected a probe")
            return
        }
        #expect(transition?.timerDeadline == .seconds(15))
    }

    @Test("half-open: force open, disable, metrics-only and reset leave it")
    func halfOpenManual() {
        var machine = Self.halfOpenMachine()
        #expect(machine.forceOpen()?.from == .halfOpen)
        machine = Self.halfOpenMachine()
        #expect(machine.disable()?.to == .disabled)
        machine = Self.halfOpenMachine()
        #expect(machine.enableMetricsOnly()?.to == .metricsOnly)
        machine = Self.halfOpenMachine()
        #expect(machine.reset().from == .halfOpen)
    }

    // MARK: forced open, disabled, metrics-only

    @Test("forced open: rejects everything, ignores timers and stale outcomes, until reset")
    func forcedOpen() {
        var machine = Self.machine()
        let stale = Self.permit(&machine)
        #expect(machine.forceOpen()?.to == .forcedOpen)
        #expect(machine.forceOpen() == nil, "already forced open")
        #expect(machine.admit(now: .seconds(1_000)) == .rejected(.forcedOpen, remainingOpenDuration: nil, nil))
        #expect(machine.record(stale, .failure, isSlow: false, now: .zero) == nil)
        #expect(machine.timerFired(generation: machine.generation, now: .seconds(1_000)) == nil)
        #expect(machine.reset().to == .closed)
        #expect(Self.permit(&machine).kind == .closed)
    }

    @Test("disabled: admits everything and records nothing")
    func disabled() {
        var machine = Self.machine()
        _ = machine.disable()
        for _ in 0..<10 {
            let permit = Self.permit(&machine)
            #expect(permit.kind == .disabled)
            #expect(machine.record(permit, .failure, isSlow: true, now: .zero) == nil)
        }
        #expect(machine.window.totals.calls == 0)
        #expect(machine.timerFired(generation: machine.generation, now: .seconds(1_000)) == nil)
    }

    @Test("metrics-only: records every call and never opens")
    func metricsOnly() {
        var machine = Self.machine { $0.consecutiveFailureThreshold = 1 }
        _ = machine.enableMetricsOnly()
        for _ in 0..<10 {
            let permit = Self.permit(&machine)
            #expect(permit.kind == .metricsOnly)
            #expect(machine.record(permit, .failure, isSlow: false, now: .zero) == nil)
        }
        #expect(machine.window.totals.failures == 4)
        #expect(machine.consecutiveFailures == 10)
        #expect(machine.publicState == .metricsOnly)
        #expect(machine.timerFired(generation: machine.generation, now: .seconds(1_000)) == nil)
    }

    // MARK: open duration

    @Test("exponential open durations double up to the cap while re-opening, and restart after a close")
    func backoff() {
        var machine = Self.openMachine {
            $0.openDuration = .exponential(initial: .seconds(1), multiplier: 2, maximum: .seconds(5))
        }
        var durations: [Duration] = [.seconds(1)]
        var now = Duration.seconds(0)
        for _ in 0..<4 {
            now = machine.openUntil!
            let probe = Self.permit(&machine, at: now)
            let transition = machine.record(probe, .failure, isSlow: false, now: now)
            durations.append(transition!.openDuration!)
        }
        #expect(durations == [.seconds(1), .seconds(2), .seconds(4), .seconds(5), .seconds(5)])
        now = machine.openUntil!
        let first = Self.permit(&machine, at: now)
        let second = Self.permit(&machine, at: now)
        _ = machine.record(first, .success, isSlow: false, now: now)
        #expect(machine.record(second, .success, isSlow: false, now: now)?.to == .closed)
        #expect(machine.consecutiveOpenings == 0)
    }

    @Test("jitter spreads the open duration within its bounds and the cap, repeatably for a seed")
    func jitter() {
        let duration = CircuitBreaker.Configuration.OpenDuration.exponential(
            initial: .seconds(10),
            maximum: .seconds(15),
            jitter: 0.5
        )
        let random = RandomSource(seed: 7)
        let values = (0..<200).map { _ in duration.duration(afterOpenings: 0) { random.nextUnitDouble() } }
        #expect(values.allSatisfy { $0 >= .seconds(5) && $0 <= .seconds(15) })
        #expect(Set(values).count > 100)
        let again = RandomSource(seed: 7)
        #expect(values == (0..<200).map { _ in duration.duration(afterOpenings: 0) { again.nextUnitDouble() } })
    }

    // MARK: windows

    @Test("a count-based window holds the last N calls")
    func countWindow() {
        var window = CircuitBreakerSlidingWindow(.lastCalls(3))
        for isFailure in [true, true, false, false, false] {
            window.record(isFailure: isFailure, isSlow: isFailure, now: .zero)
        }
        #expect(window.totals == .init(calls: 3, failures: 0, slowCalls: 0))
        window.record(isFailure: true, isSlow: false, now: .zero)
        #expect(window.totals == .init(calls: 3, failures: 1, slowCalls: 0))
    }

    @Test("both windows count the slow failures and forget them with their calls")
    func slowFailures() {
        var count = CircuitBreakerSlidingWindow(.lastCalls(2))
        count.record(isFailure: true, isSlow: true, now: .zero)
        count.record(isFailure: false, isSlow: true, now: .zero)
        #expect(count.totals == .init(calls: 2, failures: 1, slowCalls: 2, slowFailures: 1))
        count.record(isFailure: false, isSlow: false, now: .zero)
        #expect(count.totals == .init(calls: 2, failures: 0, slowCalls: 1, slowFailures: 0))
        var time = CircuitBreakerSlidingWindow(.lastDuration(.seconds(10), buckets: 5))
        time.record(isFailure: true, isSlow: true, now: .seconds(0))
        time.record(isFailure: true, isSlow: true, now: .seconds(5))
        #expect(time.totals(at: .seconds(5)) == .init(calls: 2, failures: 2, slowCalls: 2, slowFailures: 2))
        #expect(time.totals(at: .seconds(12)) == .init(calls: 1, failures: 1, slowCalls: 1, slowFailures: 1))
    }

    @Test("a time-based window forgets a bucket once all of it is as old as its span")
    func timeWindow() {
        var window = CircuitBreakerSlidingWindow(.lastDuration(.seconds(10), buckets: 5))
        window.record(isFailure: true, isSlow: false, now: .seconds(0))
        window.record(isFailure: false, isSlow: true, now: .seconds(3))
        window.record(isFailure: true, isSlow: false, now: .seconds(9))
        #expect(window.totals(at: .seconds(9)) == .init(calls: 3, failures: 2, slowCalls: 1))
        // The call at 0 s is 10 s old, but its bucket [0 s, 2 s) ends only 8 s ago.
        #expect(window.totals(at: .seconds(10)) == .init(calls: 3, failures: 2, slowCalls: 1))
        #expect(window.totals(at: .milliseconds(11_999)) == .init(calls: 3, failures: 2, slowCalls: 1))
        #expect(window.totals(at: .seconds(12)) == .init(calls: 2, failures: 1, slowCalls: 1))
        #expect(window.totals(at: .seconds(14)) == .init(calls: 1, failures: 1, slowCalls: 0))
        #expect(window.totals(at: .seconds(100)) == .init())
        window.record(isFailure: true, isSlow: false, now: .seconds(100))
        #expect(window.totals(at: .seconds(100)) == .init(calls: 1, failures: 1, slowCalls: 0))
    }

    @Test(
        "with the default 10 buckets of a 60 s window, a call counts for 60 s at least and leaves exactly when its bucket is 60 s old"
    )
    func timeWindowEdge() {
        var window = CircuitBreakerSlidingWindow(.lastDuration(.seconds(60)))
        // Buckets of 6 s: the call at 100 s is in [96 s, 102 s), which is all 60 s old at 162 s.
        window.record(isFailure: true, isSlow: false, now: .seconds(100))
        for seconds in [Duration.seconds(156), .seconds(159), .seconds(160), .milliseconds(161_999)] {
            #expect(window.totals(at: seconds).calls == 1, "at \(seconds)")
        }
        #expect(window.totals(at: .seconds(162)).calls == 0)
        // And in a long-quiet window, every bucket is cleared at once.
        window.record(isFailure: false, isSlow: false, now: .seconds(1_000))
        #expect(window.totals(at: .seconds(1_059)) == .init(calls: 1, failures: 0, slowCalls: 0))
    }
}
