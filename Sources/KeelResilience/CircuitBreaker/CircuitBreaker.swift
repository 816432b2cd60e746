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
/// The breaker is an actor for its manual controls and its lifecycle, but **the protected
/// operation never runs on the breaker's isolation**: ``run(_:)`` is `nonisolated`, the operation
/// runs on the caller's task and isolation, and any number of calls run at the same time. The
/// breaker is never a queue, and no call ever hops onto it.
///
/// Admission is lock-free in the closed and disabled states (one atomic load), and so is a
/// rejection while open when ``Configuration/HalfOpenTransition/automatic`` ends the open state;
/// otherwise a rejection is one clock read and a short critical section. Nothing on the call path
/// suspends. An outcome is recorded under a short lock around a pure state machine
/// (``Configuration/window`` updates are O(1)); a transition that needs a timer starts it from the
/// recording call, without waiting.
///
/// The commonest outcome takes no lock: a success (not slow) of a closed breaker with a
/// count-based window is counted with one compare-and-swap while no run of successes could open
/// the breaker (its failures stay under the thresholds even at
/// ``Configuration/minimumNumberOfCalls``) and nobody consumes ``events(bufferSize:)`` (each
/// success is then an event, published in order under the lock). The count is folded into the
/// window, in order, by the next call that takes the lock — a failure, a transition, a
/// ``metrics`` read — so the window and ``metrics`` are exactly what recording each success under
/// the lock would have made them. A success of a state that has since ended is dropped, as under
/// the lock (the generation is compared modulo 2^32).
///
/// ``acquirePermit()`` is the same admission without the closure: it returns a noncopyable
/// ``Permit`` that records the call's outcome once, and gives its slot back if it is dropped.
///
/// Time comes only from the injected clock; jitter only from the injected `RandomSource`.
///
/// ## Ownership
///
/// With ``Configuration/HalfOpenTransition/automatic`` or ``Configuration/maximumTimeInHalfOpen``
/// the breaker owns one live timer task at a time (a replaced one is cancelled and ends soon),
/// started through the host's task executor preference. Whoever makes the breaker calls
/// ``shutdown()`` when done with it: that cancels and awaits every timer task it started and ends
/// every event sequence. A breaker that is released without a shutdown
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
    /// Successes counted without the lock, not yet folded into the machine:
    /// `generation << 32 | accepting << 31 | count`, with the low 32 bits of the generation. The
    /// accepting bit mirrors the machine's ``CircuitBreakerStateMachine/acceptsSuccessesOutsideLock``;
    /// whoever takes the machine's lock first takes the count (clearing the bit until it is done).
    private nonisolated let unlockedSuccesses: Atomic<UInt64>
    /// Whether an open breaker can reject without reading its clock: true while a timer (automatic
    /// half-open) is what ends the open state, false after ``shutdown()``.
    private nonisolated let rejectsOpenWithoutClock: Atomic<Bool>
    /// The timer tasks the breaker owns.
    private nonisolated let timers = Lock(Timers())
    private nonisolated let broadcaster: CircuitBreakerEvents.Broadcaster
    private nonisolated let instruments: Instruments

    /// Time since the breaker was made, on its clock.
    private nonisolated let now: @Sendable () -> Duration
    /// The clock, to read the caller's deadline on (see ``Configuration/countsDeadlineExceededAsFailure``).
    private nonisolated let clock: any Clock<Duration>
    private nonisolated let countsDeadlineExceededAsFailure: Bool
    /// Sleeps on the breaker's clock until the given offset.
    private nonisolated let sleepUntil: @Sendable (Duration) async throws -> Void
    private nonisolated let taskExecutor: (any TaskExecutor)?
    private nonisolated let measuresCallDuration: Bool
    private nonisolated let slowCallDurationThreshold: Duration
    private nonisolated let errorClassification: Configuration.ErrorClassification
    private nonisolated let isFailureResult: (@Sendable (any Sendable) -> Bool)?

    /// The timer tasks: the current one and any cancelled one that has not ended yet. Each task
    /// removes itself when it ends; ``shutdown()`` cancels and awaits whatever is left.
    private struct Timers: Sendable {
        var tasks: [UInt64: Task<Void, Never>] = [:]
        var currentID: UInt64?
        var nextID: UInt64 = 0
        /// The newest generation a timer was armed (or disarmed) for; older transitions lose.
        var armedGeneration: UInt64 = 0
        var isShutDown = false
    }

    /// Makes a closed breaker.
    ///
    /// Making a breaker starts no task.
    /// - Parameters:
    ///   - name: The breaker's name, for errors, events and metrics.
    ///   - configuration: The policies; its invariants are checked with `precondition`.
    ///   - clock: The clock for open durations, time-based windows, slow calls and timers.
    ///   - random: The source of open-duration jitter. By default a new source seeded from the
    ///     system's generator; pass a seeded one (or a host's) so that a run repeats.
    ///   - telemetry: Where the breaker reports its counters and its state gauge; the
    ///     handlers are made here, once.
    ///   - taskExecutor: The executor preference for the timer task, if any.
    public init(
        name: String,
        configuration: Configuration = Configuration(),
        clock: some Clock<Duration> = ContinuousClock(),
        random: RandomSource = RandomSource(),
        telemetry: any Telemetry = NoOpTelemetry(),
        taskExecutor: (any TaskExecutor)? = nil
    ) {
        self.init(
            name: name,
            configuration: configuration,
            clock: clock,
            random: random,
            telemetry: telemetry,
            taskExecutor: taskExecutor,
            onPublish: nil
        )
    }

    /// Tests: `onPublish` sees each event on the publishing thread, before any consumer can.
    init(
        name: String,
        configuration: Configuration,
        clock: some Clock<Duration>,
        random: RandomSource,
        telemetry: any Telemetry,
        taskExecutor: (any TaskExecutor)?,
        onPublish: (@Sendable (CircuitBreakerEvent) -> Void)?
    ) {
        self.broadcaster = CircuitBreakerEvents.Broadcaster(onPublish: onPublish)
        self.name = name
        self.configuration = configuration
        let machine = CircuitBreakerStateMachine(configuration: configuration, random: random)
        self.unlockedSuccesses = Atomic(Self.unlockedSuccessesWord(machine))
        self.machine = Lock(machine)
        let origin = clock.now
        self.now = { origin.duration(to: clock.now) }
        self.clock = clock
        self.countsDeadlineExceededAsFailure = configuration.countsDeadlineExceededAsFailure
        self.sleepUntil = { offset in try await clock.sleep(until: origin.advanced(by: offset), tolerance: nil) }
        self.taskExecutor = taskExecutor
        self.measuresCallDuration = configuration.slowCallDurationThreshold != nil
        self.slowCallDurationThreshold = configuration.slowCallDurationThreshold ?? .zero
        self.errorClassification = configuration.errorClassification
        self.isFailureResult = configuration.isFailureResult
        self.instruments = Instruments(name: name, telemetry: telemetry)
        self.rejectsOpenWithoutClock = Atomic(configuration.halfOpenTransition == .automatic)
    }

    deinit {
        self.timers.withLock { timers in
            for task in timers.tasks.values { task.cancel() }
        }
    }

    // MARK: Calls

    /// Runs `operation` if the breaker admits it, records how it ended, and returns its result.
    ///
    /// The operation runs on the calling task, in the caller's isolation, never on the breaker's;
    /// concurrent calls run concurrently. A rejected call does not run the operation, does not
    /// suspend, and throws ``CircuitBreakerError``. An admitted call's outcome is classified on the
    /// calling task: a returned value is a success unless ``Configuration/isFailureResult`` says
    /// otherwise; a thrown error is classified by ``Configuration/errorClassification``, except
    /// that `CancellationError` (or any error thrown while the calling task is cancelled) does not
    /// count and gives back a half-open permit, as an ignored error does — unless the caller's
    /// deadline had passed, which counts as a failure (see
    /// ``Configuration/countsDeadlineExceededAsFailure``).
    ///
    /// The call suspends only inside `operation`: admission and recording are synchronous, and a
    /// transition that needs a timer starts it without waiting. `run` is ``acquirePermit()``
    /// around `operation`; use the permit directly where even the cost of calling through a
    /// closure matters.
    /// - Parameter operation: The protected work, run at most once.
    /// - Returns: What `operation` returns.
    /// - Throws: ``CircuitBreakerError`` when rejected; otherwise whatever `operation` throws,
    ///   unchanged.
    public nonisolated func run<T: Sendable>(_ operation: () async throws -> T) async throws -> T {
        let permit = try self.acquirePermit()
        let value: T
        do {
            value = try await operation()
        } catch {
            permit.recordFailure(error)
            throw error
        }
        permit.recordResult(value)
        return value
    }

    /// Asks the breaker for the right to make one call, without suspending.
    ///
    /// The permit is how the call's outcome reaches the breaker: make the call, then consume the
    /// permit with ``Permit/recordSuccess()``, ``Permit/recordResult(_:)``,
    /// ``Permit/recordFailure(_:)`` or ``Permit/release()``. The permit is noncopyable, so an
    /// outcome is recorded at most once, and a permit dropped without one gives its half-open
    /// probe slot back, as a cancelled call does; a forgotten permit can never wedge a half-open
    /// breaker.
    ///
    /// ```swift
    /// let permit = try breaker.acquirePermit()
    /// do {
    ///     let quote = try await gateway.quote(order)
    ///     permit.recordSuccess()
    ///     return quote
    /// } catch {
    ///     permit.recordFailure(error)
    ///     throw error
    /// }
    /// ```
    ///
    /// Closed or disabled, admission is one atomic load. Open, a rejection is one atomic load when
    /// ``Configuration/HalfOpenTransition/automatic`` ends the open state on a timer (the error's
    /// ``CircuitBreakerError/remainingOpenDuration`` is then `nil`: nothing read the clock), and a
    /// clock read and a short critical section otherwise.
    /// - Returns: The permit for one call.
    /// - Throws: ``CircuitBreakerError`` when the breaker rejects the call.
    public nonisolated func acquirePermit() throws(CircuitBreakerError) -> Permit {
        let word = self.stateWord.load(ordering: .acquiring)
        switch CircuitBreaker.State.Base(rawValue: UInt8(truncatingIfNeeded: word)) {
        case .closed:
            let start = self.measuresCallDuration ? self.now() : .zero
            return Permit(breaker: self, permit: .init(generation: word >> 8, kind: .closed), start: start)
        case .disabled:
            return Permit(breaker: self, permit: .init(generation: word >> 8, kind: .disabled), start: .zero)
        case .open where self.rejectsOpenWithoutClock.load(ordering: .relaxed):
            throw self.rejected(.open)
        case .forcedOpen:
            throw self.rejected(.forcedOpen)
        default:
            return try self.admitSlowly()
        }
    }

    /// Admission in the states that need the lock (open with a lazy half-open, half-open,
    /// metrics-only): a rejection, or a permit.
    @inline(never)
    private nonisolated func admitSlowly() throws(CircuitBreakerError) -> Permit {
        let now = self.now()
        let admission = self.withMachine { machine in
            machine.admit(now: now)
        } publishing: { admission in
            switch admission {
            case .permitted(_, let transition):
                self.publish(transition)
            case .rejected(let code, _, let transition):
                self.publish(transition)
                self.publishRejection(code)
            }
        }
        switch admission {
        case .permitted(let permit, let transition):
            if let transition { self.transitioned(transition) }
            let start = self.measuresCallDuration ? now : .zero
            return Permit(breaker: self, permit: permit, start: start)
        case .rejected(let code, let remaining, let transition):
            if let transition { self.transitioned(transition) }
            self.notPermittedCount.add(1, ordering: .relaxed)
            self.instruments.notPermitted.increment(by: 1)
            throw CircuitBreakerError(code: code, breakerName: self.name, remainingOpenDuration: remaining)
        }
    }

    /// Counts and reports a rejection made without the lock, and makes its error.
    private nonisolated func rejected(_ code: CircuitBreakerError.Code) -> CircuitBreakerError {
        self.notPermittedCount.add(1, ordering: .relaxed)
        self.instruments.notPermitted.increment(by: 1)
        self.publishRejection(code)
        return CircuitBreakerError(code: code, breakerName: self.name)
    }

    /// Classifies an error thrown by a permitted call.
    nonisolated func classify(_ error: any Error) -> CircuitBreakerStateMachine.Outcome {
        if error is CancellationError || Task.isCancelled {
            // Cut short by the caller's deadline, not by a caller that gave up: the dependency
            // was too slow for it.
            if self.countsDeadlineExceededAsFailure, let deadline = TraceContext.current?.deadline,
                deadline.hasPassed(onAny: self.clock)
            {
                return .failure
            }
            return .cancelled
        }
        if self.errorClassification.isIgnored(error) { return .ignored }
        return self.errorClassification.isRecorded(error) ? .failure : .success
    }

    /// Classifies a value returned by a permitted call.
    nonisolated func classify(_ value: some Sendable) -> CircuitBreakerStateMachine.Outcome {
        guard let isFailureResult = self.isFailureResult else { return .success }
        return isFailureResult(value) ? .failure : .success
    }

    /// Records the outcome of a permitted call under the lock, and starts the timer a resulting
    /// transition needs.
    nonisolated func record(
        _ permit: CircuitBreakerStateMachine.Permit,
        _ outcome: CircuitBreakerStateMachine.Outcome,
        start: Duration,
        error: (any Error)?
    ) {
        if permit.kind == .disabled { return }
        let end = self.measuresCallDuration ? self.now() : nil
        let duration: Duration? = end.map { $0 - start }
        let isSlow = duration.map { $0 >= self.slowCallDurationThreshold } ?? false
        if outcome == .success, !isSlow, permit.kind == .closed, self.countWithoutLock(permit.generation) {
            if self.instruments.counts { self.instruments.successes.increment(by: 1) }
            return
        }
        let transition = self.withMachine { machine in
            machine.record(permit, outcome, isSlow: isSlow, now: end ?? self.now())
        } publishing: { transition in
            if self.broadcaster.hasConsumers {
                self.publishOutcome(outcome, isSlow: isSlow, duration: duration, error: error)
                self.publish(transition)
            }
        }
        self.instruments.report(outcome, isSlow: isSlow)
        if let transition { self.transitioned(transition) }
    }

    /// Counts a success of a closed permit of `generation` with one compare-and-swap, if the
    /// machine accepts successes outside its lock and nobody subscribes to events (each success
    /// is then an event, published in order under the lock).
    /// - Returns: Whether the success was counted; if not, the caller records it under the lock.
    @inline(__always)
    private nonisolated func countWithoutLock(_ generation: UInt64) -> Bool {
        if self.broadcaster.hasConsumers { return false }
        let expected = generation << 32 | Self.acceptingBit
        var word = self.unlockedSuccesses.load(ordering: .relaxed)
        while word & ~Self.countMask == expected && word & Self.countMask < Self.countMask {
            let (exchanged, original) = self.unlockedSuccesses.compareExchange(
                expected: word,
                desired: word + 1,
                ordering: .relaxed
            )
            if exchanged { return true }
            word = original
        }
        return false
    }

    /// Tests: the successes counted outside the lock and not folded into the machine yet.
    nonisolated var unfoldedSuccesses: Int {
        Int(self.unlockedSuccesses.load(ordering: .relaxed) & Self.countMask)
    }

    private static let acceptingBit: UInt64 = 1 << 31
    private static let countMask: UInt64 = (1 << 31) - 1

    /// The ``unlockedSuccesses`` word for `machine` as it is now, with no successes counted.
    private static func unlockedSuccessesWord(_ machine: CircuitBreakerStateMachine) -> UInt64 {
        let accepting = machine.acceptsSuccessesOutsideLock ? Self.acceptingBit : 0
        return (machine.generation & 0xFFFF_FFFF) << 32 | accepting
    }

    /// Reports a transition made on a caller's task and starts or stops the timer it needs.
    private nonisolated func transitioned(_ transition: CircuitBreakerStateMachine.Transition) {
        self.instruments.report(transition)
        self.arm(transition)
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
        return self.withMachine { machine in
            let minimum = machine.configuration.effectiveMinimumNumberOfCalls
            var totals = machine.windowTotals(at: now)
            var taken = 0
            if case .halfOpen(let probes) = machine.state {
                totals = .init(
                    calls: probes.completed,
                    failures: probes.failures,
                    slowCalls: probes.slowCalls,
                    slowFailures: probes.slowFailures
                )
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
                slowFailedCalls: totals.slowFailures,
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
    /// atomic load while nobody subscribes. Never suspends. A transition is visible in ``state``
    /// before its event is published: a consumer that receives it reads that state or a later one.
    /// - Parameter bufferSize: The consumer's buffer, at least 1; default 256.
    /// - Returns: The events.
    public nonisolated func events(bufferSize: Int = 256) -> CircuitBreakerEvents {
        self.broadcaster.subscribe(bufferSize: bufferSize)
    }

    // MARK: Manual control

    /// Opens the breaker until ``reset()``: every call is rejected with
    /// ``CircuitBreakerError/Code/forcedOpen``. Calls in flight finish; their outcomes no longer
    /// count. The window and the consecutive-failure count are emptied (``metrics`` shows no
    /// buffered calls). Runs on the breaker's isolation; does not wait for anything.
    public func forceOpen() {
        self.control { $0.forceOpen() }
    }

    /// Disables the breaker until ``reset()``: every call runs and nothing is recorded or
    /// published; the window and the consecutive-failure count are emptied. Runs on the breaker's
    /// isolation; does not wait for anything.
    public func disable() {
        self.control { $0.disable() }
    }

    /// Moves the breaker to half-open now, from any state, as if its open duration had just
    /// ended: the next ``Configuration/permittedCallsInHalfOpen`` calls are probes that close or
    /// re-open it. Does nothing when it is half-open already. Runs on the breaker's isolation;
    /// does not wait for anything. (To close it, call ``reset()``.)
    public func startHalfOpen() {
        let now = self.now()
        self.control { $0.startHalfOpen(now: now) }
    }

    /// Opens the breaker now for `duration`, from any state (an open breaker's open time starts
    /// over), then lets it go half-open as after any opening (see
    /// ``Configuration/halfOpenTransition``). Calls are rejected with
    /// ``CircuitBreakerError/Code/open``. The window is kept, and the open duration's backoff does
    /// not advance. Runs on the breaker's isolation; does not wait for anything.
    /// - Parameter duration: How long to stay open; positive.
    public func open(for duration: Duration) {
        precondition(duration > .zero, "open(for:) needs a positive duration, got \(duration)")
        let now = self.now()
        self.control { $0.open(for: duration, now: now) }
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
            return transition.from == transition.to ? nil : transition
        } publishingFirst: {
            if self.broadcaster.hasConsumers {
                self.broadcaster.publish(CircuitBreakerEvent(kind: .reset, breakerName: self.name))
            }
        }
    }

    /// Stops the breaker's timers and ends its event sequences.
    ///
    /// Cancels every timer task the breaker started, including cancelled ones that have not
    /// ended yet, and waits for them to end; every event sequence ends once its consumer has
    /// drained its buffer. The breaker keeps working for calls afterwards, but no longer moves to
    /// half-open on the clock (it does on the next call) nor publishes events. Calling it again
    /// does nothing.
    public func shutdown() async {
        let tasks = self.timers.withLock { timers -> [Task<Void, Never>] in
            guard !timers.isShutDown else { return [] }
            timers.isShutDown = true
            timers.currentID = nil
            defer { timers.tasks.removeAll() }
            return Array(timers.tasks.values)
        }
        self.rejectsOpenWithoutClock.store(false, ordering: .relaxed)
        self.broadcaster.finish()
        for task in tasks { task.cancel() }
        for task in tasks { await task.value }
    }

    // MARK: Internals

    private func control(
        _ body: (inout CircuitBreakerStateMachine) -> CircuitBreakerStateMachine.Transition?,
        publishingFirst: () -> Void = {}
    ) {
        let transition = self.withMachine(body) { transition in
            publishingFirst()
            self.publish(transition)
        }
        guard let transition else { return }
        self.transitioned(transition)
    }

    /// Runs `body` on the state machine under its lock, mirrors the state in the atomics, and
    /// then, still under the lock, runs `publishing` with the result.
    ///
    /// The state word is stored before anything is published: a consumer that receives a
    /// transition event (on another thread, as soon as it is published) reads ``state`` as the
    /// event's state or a later one, never the one before.
    private nonisolated func withMachine<R>(
        _ body: (inout CircuitBreakerStateMachine) -> R,
        publishing: (R) -> Void = { _ in }
    ) -> R {
        self.machine.withLock { machine in
            let generation = machine.generation
            // Take the successes counted outside the lock, and stop more from being counted until
            // the machine has decided again whether it accepts them.
            let counted = self.unlockedSuccesses.exchange(
                (generation & 0xFFFF_FFFF) << 32,
                ordering: .acquiringAndReleasing
            )
            if counted & Self.countMask != 0 && counted >> 32 == generation & 0xFFFF_FFFF {
                machine.foldSuccesses(Int(counted & Self.countMask), generation: generation)
            }
            let result = body(&machine)
            if machine.generation != generation {
                let word = machine.generation << 8 | UInt64(machine.publicState.base.rawValue)
                self.stateWord.store(word, ordering: .releasing)
            }
            self.unlockedSuccesses.store(Self.unlockedSuccessesWord(machine), ordering: .releasing)
            publishing(result)
            return result
        }
    }

    /// Arms the timer a transition asks for, replacing any older one; cancels an older timer when
    /// the new state needs none. Only the newest generation wins when arming races. Never
    /// suspends: the task is started under the timers' lock and registers itself before it can
    /// end, so ``shutdown()`` always finds it.
    private nonisolated func arm(_ transition: CircuitBreakerStateMachine.Transition) {
        let sleepUntil = self.sleepUntil
        let executor = self.taskExecutor
        self.timers.withLock { timers in
            guard !timers.isShutDown, transition.generation > timers.armedGeneration else { return }
            timers.armedGeneration = transition.generation
            if let current = timers.currentID {
                timers.tasks[current]?.cancel()
                timers.currentID = nil
            }
            guard let deadline = transition.timerDeadline else { return }
            let generation = transition.generation
            let id = timers.nextID
            timers.nextID += 1
            // Unstructured by design: the breaker owns the handle, cancels it on the next
            // transition or in shutdown(), and shutdown() awaits it.
            timers.tasks[id] = TaskSpawner.spawn(executor: executor) { [weak self] in
                let fired: Bool
                do {
                    try await sleepUntil(deadline)
                    fired = true
                } catch {
                    fired = false
                }
                guard let self else { return }
                if fired { self.timerFired(generation: generation) }
                self.timers.withLock { timers in
                    _ = timers.tasks.removeValue(forKey: id)
                    if timers.currentID == id { timers.currentID = nil }
                }
            }
            timers.currentID = id
        }
    }

    private nonisolated func timerFired(generation: UInt64) {
        let now = self.now()
        let transition = self.withMachine { machine in
            machine.timerFired(generation: generation, now: now)
        } publishing: { transition in
            self.publish(transition)
        }
        guard let transition else { return }
        self.transitioned(transition)
    }

    // Events are published under the state machine's lock so that every consumer sees transitions
    // in the order they happened; publishing never suspends and resumes consumers only after the
    // broadcaster's own lock is released.

    private nonisolated func publish(_ transition: CircuitBreakerStateMachine.Transition?) {
        guard let transition, self.broadcaster.hasConsumers else { return }
        switch transition.exceededRate {
        case .failureRate(let rate):
            self.broadcaster.publish(
                CircuitBreakerEvent(kind: .failureRateExceeded, breakerName: self.name, rate: rate)
            )
        case .slowCallRate(let rate):
            self.broadcaster.publish(
                CircuitBreakerEvent(kind: .slowCallRateExceeded, breakerName: self.name, rate: rate)
            )
        case nil:
            break
        }
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
        let successes: any TelemetryCounter
        let failures: any TelemetryCounter
        let ignored: any TelemetryCounter
        let notPermitted: any TelemetryCounter
        let slowCalls: any TelemetryCounter
        let transitions: any TelemetryCounter
        let state: any TelemetryGauge
        /// Whether the counters go anywhere (``/KeelCore/Telemetry/recordsMetrics``): when not,
        /// the lock-free success path skips their calls.
        let counts: Bool

        /// The breaker's name, for the log.
        let name: String
        /// Where transitions are logged.
        let telemetry: any Telemetry

        init(name: String, telemetry: any Telemetry) {
            self.name = name
            self.telemetry = telemetry
            self.counts = telemetry.recordsMetrics
            func calls(_ outcome: String) -> any TelemetryCounter {
                telemetry.makeCounter(
                    label: "keel.breaker.calls",
                    dimensions: [("breaker", name), ("outcome", outcome)]
                )
            }
            self.successes = calls("success")
            self.failures = calls("failure")
            self.ignored = calls("ignored")
            self.notPermitted = calls("notPermitted")
            self.slowCalls = telemetry.makeCounter(
                label: "keel.breaker.slow_calls",
                dimensions: [("breaker", name)]
            )
            self.transitions = telemetry.makeCounter(
                label: "keel.breaker.transitions",
                dimensions: [("breaker", name)]
            )
            self.state = telemetry.makeGauge(label: "keel.breaker.state", dimensions: [("breaker", name)])
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
        /// Counts the transition, sets the state gauge and logs it: an opening at
        /// ``/KeelCore/LogLevel/warning`` (with the rate that opened it and for how long), a
        /// half-opening at ``/KeelCore/LogLevel/notice``, anything else at
        /// ``/KeelCore/LogLevel/info``; metadata `breaker`, `from`, `to`, and `rate`, `openFor`
        /// when known.
        func report(_ transition: CircuitBreakerStateMachine.Transition) {
            self.transitions.increment(by: 1)
            self.state.set(Double(transition.to.base.rawValue))
            let level: LogLevel
            switch transition.to.base {
            case .open, .forcedOpen: level = .warning
            case .halfOpen: level = .notice
            default: level = .info
            }
            guard self.telemetry.isLogging(level) else { return }
            var metadata = ["breaker": self.name, "from": "\(transition.from)", "to": "\(transition.to)"]
            var reason = ""
            switch transition.exceededRate {
            case .failureRate(let rate):
                metadata["rate"] = "failure=\(rate)"
                reason = ": failure rate \(rate) reached its threshold"
            case .slowCallRate(let rate):
                metadata["rate"] = "slowCall=\(rate)"
                reason = ": slow-call rate \(rate) reached its threshold"
            case nil:
                break
            }
            if let openDuration = transition.openDuration {
                metadata["openFor"] = "\(openDuration)"
                reason += ", open for \(openDuration)"
            }
            self.telemetry.log(
                level,
                source: "keel.breaker",
                "breaker \(self.name) went from \(transition.from) to \(transition.to)\(reason)",
                metadata: metadata
            )
        }
    }
}
