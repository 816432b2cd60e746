import KeelCore
import Synchronization

/// A circuit breaker: it stops calling a dependency that keeps failing, then probes it until it
/// recovers.
///
/// A breaker is **closed** while calls succeed: every call runs and its outcome is recorded.
/// When a policy trips — too many failures in a row, or too high a failure rate or slow-call rate
/// over a sliding window — it **opens**, and calls fail fast with ``CircuitBreakerError`` for the
/// open duration (fixed, or backing off while it keeps re-opening). Then it is **half-open**: it
/// admits ``Configuration/permittedCallsInHalfOpen`` probe calls and rejects the rest at once; the
/// probes' outcomes close it again or re-open it.
///
/// ```swift
/// var configuration = CircuitBreaker.Configuration()
/// configuration.consecutiveFailureThreshold = 5
/// configuration.openDuration = .exponential(initial: .seconds(1), maximum: .seconds(60), jitter: 0.2)
/// let breaker = CircuitBreaker(name: "payments", configuration: configuration)
///
/// let receipt = try await breaker.run { try await gateway.charge(order) }
/// ```
///
/// ## Concurrency contract
///
/// The breaker is an actor for its transitions, its timer and its lifecycle, but **the protected
/// operation never runs on the breaker's isolation**: ``run(_:)`` is `nonisolated`, the operation
/// runs on the caller's task and isolation, and any number of calls run at the same time. The
/// breaker is never a queue.
///
/// Admission is lock-free in the closed and disabled states (one atomic load); a rejection while
/// open or half-open full is one clock read and a short critical section: it never suspends. An
/// outcome is recorded under a short `Mutex` around a pure state machine
/// (``Configuration/window`` updates are O(1)). A call hops onto the actor only when its outcome
/// causes a transition that needs a timer (half-open on the clock, or a maximum time in
/// half-open).
///
/// Time comes only from the injected clock; jitter only from the injected `RandomSource`.
///
/// ## Ownership
///
/// With ``Configuration/HalfOpenTransition/automatic`` or ``Configuration/maximumTimeInHalfOpen``
/// the breaker owns one timer task at a time, started through the host's task executor
/// preference. Whoever makes the breaker calls ``shutdown()`` when done with it: that cancels and
/// awaits the timer and ends every event sequence. A breaker that is released without a shutdown
/// cancels its timer in `deinit`. The default configuration starts no task at all.
public actor CircuitBreaker {
    /// The breaker's name, used in errors, events and metric dimensions.
    public nonisolated let name: String
    /// The configuration the breaker was made with.
    public nonisolated let configuration: Configuration

    /// The state machine. Never held across a suspension or while the operation runs.
    private nonisolated let machine: Lock<CircuitBreakerStateMachine>
    /// `generation << 8 | state`, mirrored from ``machine`` under its lock, for lock-free admission.
    private nonisolated let stateWord = Atomic<UInt64>(0)
    private nonisolated let notPermittedCount = Atomic<Int>(0)
    /// A transition recorded on the nonisolated path whose timer is still to be armed.
    private nonisolated let pendingTimer = Lock<CircuitBreakerStateMachine.Transition?>(nil)
    private nonisolated let broadcaster = CircuitBreakerEvents.Broadcaster()
    private nonisolated let instruments: Instruments

    /// Time since the breaker was made, on its clock.
    private nonisolated let now: @Sendable () -> Duration
    /// Sleeps on the breaker's clock until the given offset.
    private nonisolated let sleepUntil: @Sendable (Duration) async throws -> Void
    private nonisolated let taskExecutor: (any TaskExecutor)?
    private nonisolated let measuresCallDuration: Bool
    private nonisolated let slowCallDurationThreshold: Duration
    private nonisolated let errorClassification: Configuration.ErrorClassification
    private nonisolated let isFailureResult: (@Sendable (any Sendable) -> Bool)?

    private var timer: Task<Void, Never>?
    private var timerGeneration: UInt64 = 0
    private var isShutDown = false

    /// Makes a closed breaker.
    ///
    /// Making a breaker starts no task.
    /// - Parameters:
    ///   - name: The breaker's name, for errors, events and metrics.
    ///   - configuration: The policies; its invariants are checked with `precondition`.
    ///   - clock: The clock for open durations, time-based windows, slow calls and timers.
    ///   - random: The source of open-duration jitter.
    ///   - instrumentation: Where the breaker reports its counters and its state gauge; the
    ///     handlers are made here, once.
    ///   - taskExecutor: The executor preference for the timer task, if any.
    public init(
        name: String,
        configuration: Configuration = Configuration(),
        clock: some Clock<Duration> = ContinuousClock(),
        random: RandomSource = RandomSource(),
        instrumentation: any Instrumentation = NoOpInstrumentation(),
        taskExecutor: (any TaskExecutor)? = nil
    ) {
        self.name = name
        self.configuration = configuration
        self.machine = Lock(CircuitBreakerStateMachine(configuration: configuration, random: random))
        let origin = clock.now
        self.now = { origin.duration(to: clock.now) }
        self.sleepUntil = { offset in try await clock.sleep(until: origin.advanced(by: offset), tolerance: nil) }
        self.taskExecutor = taskExecutor
        self.measuresCallDuration = configuration.slowCallDurationThreshold != nil
        self.slowCallDurationThreshold = configuration.slowCallDurationThreshold ?? .zero
        self.errorClassification = configuration.errorClassification
        self.isFailureResult = configuration.isFailureResult
        self.instruments = Instruments(name: name, instrumentation: instrumentation)
    }

    deinit {
        self.timer?.cancel()
    }

    // MARK: Calls

    /// Runs `operation` if the breaker admits it, records how it ended, and returns its result.
    ///
    /// The operation runs on the calling task, in the caller's isolation, never on the breaker's;
    /// concurrent calls run concurrently. A rejected call does not run the operation, does not
    /// suspend, and throws ``CircuitBreakerError``. An admitted call's outcome is classified on the
    /// calling task: a returned value is a success unless ``Configuration/isFailureResult`` says
    /// otherwise; a thrown error is classified by ``Configuration/errorClassification``, except
    /// that `CancellationError` (or any error thrown while the calling task is cancelled) never
    /// counts and gives back a half-open permit, as an ignored error does.
    ///
    /// The call suspends only inside `operation`, plus one hop onto the breaker when its outcome
    /// causes a transition that arms a timer.
    /// - Parameter operation: The protected work, run at most once.
    /// - Returns: What `operation` returns.
    /// - Throws: ``CircuitBreakerError`` when rejected; otherwise whatever `operation` throws,
    ///   unchanged.
    public nonisolated func run<T: Sendable>(_ operation: () async throws -> T) async throws -> T {
        // The hot path keeps its async frame small: the slow paths live in functions of their own.
        let word = self.stateWord.load(ordering: .acquiring)
        let permit: CircuitBreakerStateMachine.Permit
        switch CircuitBreaker.State.Base(rawValue: UInt8(truncatingIfNeeded: word)) {
        case .closed:
            permit = .init(generation: word >> 8, kind: .closed)
        case .disabled:
            return try await operation()
        default:
            permit = try await self.admitSlowly()
        }
        let start = self.measuresCallDuration ? self.now() : .zero
        let value: T
        do {
            value = try await operation()
        } catch {
            await self.recordError(error, permit: permit, start: start)
            throw error
        }
        let isFailure = self.isFailureResult?(value) ?? false
        if self.record(permit, isFailure ? .failure : .success, start: start, error: nil) {
            await self.armPendingTimer()
        }
        return value
    }

    /// Admission in the states that are not closed or disabled: a rejection, or a permit after a
    /// short critical section; suspends only to arm a timer that a transition needs.
    @inline(never)
    private nonisolated func admitSlowly() async throws -> CircuitBreakerStateMachine.Permit {
        let word = self.stateWord.load(ordering: .acquiring)
        if CircuitBreaker.State.Base(rawValue: UInt8(truncatingIfNeeded: word)) == .forcedOpen {
            self.rejected(.forcedOpen)
            throw CircuitBreakerError(code: .forcedOpen, breakerName: self.name)
        }
        let (admission, transition) = self.admitLocked()
        if let transition, transition.timerDeadline != nil {
            await self.arm(transition)
        }
        return try admission.get()
    }

    /// Classifies and records an error thrown by the operation.
    @inline(never)
    private nonisolated func recordError(
        _ error: any Error,
        permit: CircuitBreakerStateMachine.Permit,
        start: Duration
    ) async {
        let outcome: CircuitBreakerStateMachine.Outcome
        if error is CancellationError || Task.isCancelled {
            outcome = .cancelled
        } else if self.errorClassification.isIgnored(error) {
            outcome = .ignored
        } else {
            outcome = self.errorClassification.isRecorded(error) ? .failure : .success
        }
        if self.record(permit, outcome, start: start, error: error) {
            await self.armPendingTimer()
        }
    }

    /// Arms the timer of the newest transition that asked for one (see ``record(_:_:start:error:)``).
    @inline(never)
    private nonisolated func armPendingTimer() async {
        let transition = self.pendingTimer.withLock { pending in
            defer { pending = nil }
            return pending
        }
        if let transition { await self.arm(transition) }
    }

    /// Admission under the lock, for the states that need it (open, half-open).
    private nonisolated func admitLocked() -> (
        Result<CircuitBreakerStateMachine.Permit, CircuitBreakerError>,
        CircuitBreakerStateMachine.Transition?
    ) {
        let now = self.now()
        let admission = self.withMachine { machine in
            let admission = machine.admit(now: now)
            switch admission {
            case .permitted(_, let transition):
                self.publish(transition)
            case .rejected(let code, _, let transition):
                self.publish(transition)
                self.publishRejection(code)
            }
            return admission
        }
        switch admission {
        case .permitted(let permit, let transition):
            if let transition { self.instruments.report(transition) }
            return (.success(permit), transition)
        case .rejected(let code, let remaining, let transition):
            if let transition { self.instruments.report(transition) }
            self.notPermittedCount.add(1, ordering: .relaxed)
            self.instruments.notPermitted.increment(by: 1)
            let error = CircuitBreakerError(code: code, breakerName: self.name, remainingOpenDuration: remaining)
            return (.failure(error), transition)
        }
    }

    private nonisolated func rejected(_ code: CircuitBreakerError.Code) {
        self.notPermittedCount.add(1, ordering: .relaxed)
        self.instruments.notPermitted.increment(by: 1)
        self.publishRejection(code)
    }

    /// Records an outcome under the lock.
    /// - Returns: Whether the outcome caused a transition that needs a timer; it is then kept in
    ///   ``pendingTimer`` for ``armPendingTimer()``, so that the hot path's frame stays small.
    private nonisolated func record(
        _ permit: CircuitBreakerStateMachine.Permit,
        _ outcome: CircuitBreakerStateMachine.Outcome,
        start: Duration,
        error: (any Error)?
    ) -> Bool {
        let end = self.measuresCallDuration ? self.now() : nil
        let duration: Duration? = end.map { $0 - start }
        let isSlow = duration.map { $0 >= self.slowCallDurationThreshold } ?? false
        let transition = self.withMachine { machine in
            let transition = machine.record(permit, outcome, isSlow: isSlow, now: end ?? self.now())
            if self.broadcaster.hasConsumers {
                self.publishOutcome(outcome, isSlow: isSlow, duration: duration, error: error)
                self.publish(transition)
            }
            return transition
        }
        self.instruments.report(outcome, isSlow: isSlow)
        guard let transition else { return false }
        self.instruments.report(transition)
        guard transition.timerDeadline != nil else { return false }
        self.pendingTimer.withLock { pending in
            if pending == nil || pending!.generation < transition.generation { pending = transition }
        }
        return true
    }

    // MARK: Observation

    /// The current state, read without a lock and without suspending.
    ///
    /// With ``Configuration/HalfOpenTransition/onNextCall`` an open breaker reads `open` until the
    /// first call after its open duration moves it to half-open.
    public nonisolated var state: State {
        let word = self.stateWord.load(ordering: .acquiring)
        return State(State.Base(rawValue: UInt8(truncatingIfNeeded: word)) ?? .closed)
    }

    /// A snapshot of the state and the window, taken under the breaker's lock; never suspends.
    public nonisolated var metrics: CircuitBreakerMetrics {
        let now = self.now()
        return self.machine.withLock { machine in
            let minimum = machine.configuration.minimumNumberOfCalls
            var totals = machine.windowTotals(at: now)
            var taken = 0
            if case .halfOpen(let probes) = machine.state {
                totals = .init(calls: probes.completed, failures: probes.failures, slowCalls: probes.slowCalls)
                taken = probes.admitted
            }
            let enough = totals.calls >= minimum && totals.calls > 0
            return CircuitBreakerMetrics(
                state: machine.publicState,
                failureRate: enough ? Double(totals.failures) / Double(totals.calls) : nil,
                slowCallRate: enough ? Double(totals.slowCalls) / Double(totals.calls) : nil,
                bufferedCalls: totals.calls,
                failedCalls: totals.failures,
                slowCalls: totals.slowCalls,
                consecutiveFailures: machine.consecutiveFailures,
                notPermittedCalls: self.notPermittedCount.load(ordering: .relaxed),
                halfOpenPermitsTaken: taken,
                consecutiveOpenings: machine.consecutiveOpenings
            )
        }
    }

    /// A new subscription to the breaker's events, starting with the next event published.
    ///
    /// Each sequence has its own buffer of `bufferSize` events; when the consumer falls behind,
    /// the oldest buffered event is dropped (see ``CircuitBreakerEvents``). Publishing costs one
    /// atomic load while nobody subscribes. Never suspends.
    /// - Parameter bufferSize: The consumer's buffer, at least 1; default 256.
    /// - Returns: The events.
    public nonisolated func events(bufferSize: Int = 256) -> CircuitBreakerEvents {
        self.broadcaster.subscribe(bufferSize: bufferSize)
    }

    // MARK: Manual control

    /// Opens the breaker until ``reset()``: every call is rejected with
    /// ``CircuitBreakerError/Code/forcedOpen``. Calls in flight finish; their outcomes no longer
    /// count. Runs on the breaker's isolation; does not wait for anything.
    public func forceOpen() {
        self.control { $0.forceOpen() }
    }

    /// Disables the breaker until ``reset()``: every call runs and nothing is recorded or
    /// published. Runs on the breaker's isolation; does not wait for anything.
    public func disable() {
        self.control { $0.disable() }
    }

    /// Records every call (metrics and events) but never rejects or opens, until ``reset()``. Use
    /// it to observe a new breaker's thresholds in production before enforcing them. Runs on the
    /// breaker's isolation; does not wait for anything.
    public func enableMetricsOnly() {
        self.control { $0.enableMetricsOnly() }
    }

    /// Closes the breaker with an empty window and no backoff history, from any state. Calls in
    /// flight finish; their outcomes no longer count. Runs on the breaker's isolation; does not
    /// wait for anything.
    public func reset() {
        self.control { machine in
            let transition = machine.reset()
            if self.broadcaster.hasConsumers {
                self.broadcaster.publish(CircuitBreakerEvent(kind: .reset, breakerName: self.name))
            }
            return transition.from == transition.to ? nil : transition
        }
    }

    /// Stops the breaker's timer and ends its event sequences.
    ///
    /// Cancels the timer task, if any, and waits for it to end; every event sequence ends once
    /// its consumer has drained its buffer. The breaker keeps working for calls afterwards, but
    /// no longer moves to half-open on the clock (it does on the next call) nor publishes events.
    /// Calling it again does nothing.
    public func shutdown() async {
        guard !self.isShutDown else { return }
        self.isShutDown = true
        self.broadcaster.finish()
        let timer = self.timer
        self.timer = nil
        timer?.cancel()
        await timer?.value
    }

    // MARK: Internals

    private func control(_ body: (inout CircuitBreakerStateMachine) -> CircuitBreakerStateMachine.Transition?) {
        let transition = self.withMachine { machine in
            let transition = body(&machine)
            self.publish(transition)
            return transition
        }
        guard let transition else { return }
        self.instruments.report(transition)
        self.arm(transition)
    }

    /// Runs `body` on the state machine under its lock and mirrors the state in the atomics.
    private nonisolated func withMachine<R>(_ body: (inout CircuitBreakerStateMachine) -> R) -> R {
        self.machine.withLock { machine in
            let generation = machine.generation
            let result = body(&machine)
            if machine.generation != generation {
                let word = machine.generation << 8 | UInt64(machine.publicState.base.rawValue)
                self.stateWord.store(word, ordering: .releasing)
            }
            return result
        }
    }

    /// Arms the timer a transition asks for, replacing any older one; cancels an older timer when
    /// the new state needs none. Only the newest generation wins when arming races.
    private func arm(_ transition: CircuitBreakerStateMachine.Transition) {
        guard !self.isShutDown, transition.generation > self.timerGeneration else { return }
        self.timerGeneration = transition.generation
        self.timer?.cancel()
        self.timer = nil
        guard let deadline = transition.timerDeadline else { return }
        let generation = transition.generation
        let sleepUntil = self.sleepUntil
        // Unstructured by design: the breaker owns the handle, cancels it on the next transition
        // or in shutdown(), and shutdown() awaits it.
        self.timer = TaskSpawner.spawn(executor: self.taskExecutor) { [weak self] in
            do {
                try await sleepUntil(deadline)
            } catch {
                return
            }
            await self?.timerFired(generation: generation)
        }
    }

    private func timerFired(generation: UInt64) {
        let now = self.now()
        let transition = self.withMachine { machine in
            let transition = machine.timerFired(generation: generation, now: now)
            self.publish(transition)
            return transition
        }
        guard let transition else { return }
        self.instruments.report(transition)
        self.arm(transition)
    }

    // Events are published under the state machine's lock so that every consumer sees transitions
    // in the order they happened; publishing never suspends and resumes consumers only after the
    // broadcaster's own lock is released.

    private nonisolated func publish(_ transition: CircuitBreakerStateMachine.Transition?) {
        guard let transition, self.broadcaster.hasConsumers else { return }
        self.broadcaster.publish(
            CircuitBreakerEvent(
                kind: .stateTransition,
                breakerName: self.name,
                fromState: transition.from,
                toState: transition.to,
                duration: transition.openDuration
            )
        )
    }

    private nonisolated func publishRejection(_ code: CircuitBreakerError.Code) {
        guard self.broadcaster.hasConsumers else { return }
        self.broadcaster.publish(CircuitBreakerEvent(kind: .notPermitted, breakerName: self.name, rejection: code))
    }

    private nonisolated func publishOutcome(
        _ outcome: CircuitBreakerStateMachine.Outcome,
        isSlow: Bool,
        duration: Duration?,
        error: (any Error)?
    ) {
        let kind: CircuitBreakerEvent.Kind
        switch outcome {
        case .success: kind = .success
        case .failure: kind = .failure
        case .ignored, .cancelled: kind = .ignoredError
        }
        let event = CircuitBreakerEvent(kind: kind, breakerName: self.name, duration: duration, error: error)
        if isSlow {
            self.broadcaster.publish(
                event,
                CircuitBreakerEvent(kind: .slowCall, breakerName: self.name, duration: duration, error: error)
            )
        } else {
            self.broadcaster.publish(event)
        }
    }
}

extension CircuitBreaker {
    /// The metric handlers, made once per breaker.
    struct Instruments: Sendable {
        let successes: any CounterHandler
        let failures: any CounterHandler
        let ignored: any CounterHandler
        let notPermitted: any CounterHandler
        let slowCalls: any CounterHandler
        let transitions: any CounterHandler
        let state: any GaugeHandler

        init(name: String, instrumentation: any Instrumentation) {
            func calls(_ outcome: String) -> any CounterHandler {
                instrumentation.makeCounter(
                    label: "keel.breaker.calls",
                    dimensions: [("breaker", name), ("outcome", outcome)]
                )
            }
            self.successes = calls("success")
            self.failures = calls("failure")
            self.ignored = calls("ignored")
            self.notPermitted = calls("notPermitted")
            self.slowCalls = instrumentation.makeCounter(
                label: "keel.breaker.slow_calls",
                dimensions: [("breaker", name)]
            )
            self.transitions = instrumentation.makeCounter(
                label: "keel.breaker.transitions",
                dimensions: [("breaker", name)]
            )
            self.state = instrumentation.makeGauge(label: "keel.breaker.state", dimensions: [("breaker", name)])
            self.state.set(Double(State.closed.base.rawValue))
        }

        func report(_ outcome: CircuitBreakerStateMachine.Outcome, isSlow: Bool) {
            switch outcome {
            case .success: self.successes.increment(by: 1)
            case .failure: self.failures.increment(by: 1)
            case .ignored, .cancelled: self.ignored.increment(by: 1)
            }
            if isSlow { self.slowCalls.increment(by: 1) }
        }

        /// The state gauge reads 0 closed, 1 open, 2 half-open, 3 forced open, 4 disabled,
        /// 5 metrics-only.
        func report(_ transition: CircuitBreakerStateMachine.Transition) {
            self.transitions.increment(by: 1)
            self.state.set(Double(transition.to.base.rawValue))
        }
    }
}
