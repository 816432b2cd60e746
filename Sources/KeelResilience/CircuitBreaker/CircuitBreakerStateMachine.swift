import KeelCore

/// The circuit breaker's decisions, as a pure value: no locks, no tasks, no clock.
///
/// Time comes in as an offset from the breaker's origin (`now`); randomness (jitter) from the
/// injected `RandomSource`. Every mutating method returns what the caller must carry out: a
/// ``Transition`` to publish (and perhaps a timer to arm). The ``CircuitBreaker`` keeps this
/// machine in a `Mutex` and mirrors ``state`` and ``generation`` in an atomic word for its
/// lock-free admission path.
///
/// Every transition increments ``generation``. A permit remembers the generation it was granted
/// in; an outcome recorded with a permit of an older generation no longer counts (the call
/// started under a state that has since ended).
struct CircuitBreakerStateMachine: Sendable {
    typealias Configuration = CircuitBreaker.Configuration

    /// The breaker's full state.
    enum State: Sendable, Equatable {
        case closed
        case open(until: Duration)
        case halfOpen(HalfOpen)
        case forcedOpen
        case disabled
        case metricsOnly
    }

    /// The probes of a half-open phase.
    struct HalfOpen: Sendable, Equatable {
        /// Permits handed out and not given back (in flight or completed).
        var admitted = 0
        var successes = 0
        var failures = 0
        var slowCalls = 0
        /// The slow probes that also failed.
        var slowFailures = 0
        /// When the phase ends by itself, if ``Configuration/maximumTimeInHalfOpen`` is set.
        var deadline: Duration?
        /// The most probes in flight at once, for tests and metrics.
        var completed: Int { self.successes + self.failures }
    }

    /// The right to run one call, and how to record it.
    struct Permit: Sendable, Equatable {
        enum Kind: Sendable, Equatable {
            case closed
            case halfOpen
            case metricsOnly
            case disabled
        }

        var generation: UInt64
        var kind: Kind
    }

    /// How a call ended, as classified by the caller.
    enum Outcome: Sendable, Equatable {
        case success
        case failure
        /// An ignored error: neither success nor failure; gives back a half-open permit.
        case ignored
        /// Cancelled: never a failure; gives back a half-open permit.
        case cancelled
    }

    /// A change of state to publish.
    struct Transition: Sendable, Equatable {
        var from: CircuitBreaker.State
        var to: CircuitBreaker.State
        /// The generation the new state has.
        var generation: UInt64
        /// For an opening, how long it stays open.
        var openDuration: Duration?
        /// A timer the breaker must arm: at this offset, call ``timerFired(generation:now:)``.
        var timerDeadline: Duration?
        /// For an opening that a rate caused, which rate and its value.
        var exceededRate: ExceededRate?
    }

    /// A rate that reached its threshold and opened the breaker.
    enum ExceededRate: Sendable, Equatable {
        case failureRate(Double)
        case slowCallRate(Double)
    }

    /// What ``admit(now:)`` decided.
    enum Admission: Sendable, Equatable {
        case permitted(Permit, Transition?)
        case rejected(CircuitBreakerError.Code, remainingOpenDuration: Duration?, Transition?)
    }

    let configuration: Configuration
    private let random: RandomSource
    // The thresholds, copied out of the configuration so that the hot path never copies it.
    private let consecutiveFailureThreshold: Int
    private let failureRateThreshold: Double?
    /// The slow-call rate threshold, `nil` without slow-call detection.
    private let slowCallRateThreshold: Double?
    private let minimumNumberOfCalls: Int
    private let permittedCallsInHalfOpen: Int
    private(set) var state: State = .closed
    private(set) var generation: UInt64 = 0
    private(set) var window: CircuitBreakerSlidingWindow
    private(set) var consecutiveFailures = 0
    /// Openings since the last close or reset, for the backoff of the open duration.
    private(set) var consecutiveOpenings = 0

    init(configuration: Configuration, random: RandomSource) {
        configuration.validate()
        self.configuration = configuration
        self.random = random
        self.window = CircuitBreakerSlidingWindow(configuration.window)
        self.consecutiveFailureThreshold = configuration.consecutiveFailureThreshold ?? .max
        self.failureRateThreshold = configuration.failureRateThreshold
        self.slowCallRateThreshold =
            configuration.slowCallDurationThreshold == nil ? nil : configuration.slowCallRateThreshold
        self.minimumNumberOfCalls = configuration.effectiveMinimumNumberOfCalls
        self.permittedCallsInHalfOpen = configuration.permittedCallsInHalfOpen
    }

    /// The public view of ``state``.
    var publicState: CircuitBreaker.State {
        switch self.state {
        case .closed: .closed
        case .open: .open
        case .halfOpen: .halfOpen
        case .forcedOpen: .forcedOpen
        case .disabled: .disabled
        case .metricsOnly: .metricsOnly
        }
    }

    /// When the open state ends, if the breaker is open.
    var openUntil: Duration? {
        if case .open(let until) = self.state { return until }
        return nil
    }

    /// What the window holds at `now` (a time-based window first forgets what aged out).
    mutating func windowTotals(at now: Duration) -> CircuitBreakerSlidingWindow.Totals {
        self.window.totals(at: now)
    }

    // MARK: Admission

    /// Decides whether a call may run at `now`.
    mutating func admit(now: Duration) -> Admission {
        switch self.state {
        case .closed:
            return .permitted(Permit(generation: self.generation, kind: .closed), nil)
        case .disabled:
            return .permitted(Permit(generation: self.generation, kind: .disabled), nil)
        case .metricsOnly:
            return .permitted(Permit(generation: self.generation, kind: .metricsOnly), nil)
        case .forcedOpen:
            return .rejected(.forcedOpen, remainingOpenDuration: nil, nil)
        case .open(let until):
            guard now >= until else {
                return .rejected(.open, remainingOpenDuration: until - now, nil)
            }
            let transition = self.moveToHalfOpen(now: now)
            guard case .halfOpen(var probes) = self.state else {
                preconditionFailure("not half-open after moving to half-open: \(self.state)")
            }
            probes.admitted = 1
            self.state = .halfOpen(probes)
            return .permitted(Permit(generation: self.generation, kind: .halfOpen), transition)
        case .halfOpen(var probes):
            if let deadline = probes.deadline, now >= deadline {
                let transition = self.halfOpenTimedOut(probes, now: now)
                if transition.to == .closed {
                    return .permitted(Permit(generation: self.generation, kind: .closed), transition)
                }
                return .rejected(.open, remainingOpenDuration: transition.openDuration, transition)
            }
            guard probes.admitted < self.permittedCallsInHalfOpen else {
                return .rejected(.halfOpenFull, remainingOpenDuration: nil, nil)
            }
            probes.admitted += 1
            self.state = .halfOpen(probes)
            return .permitted(Permit(generation: self.generation, kind: .halfOpen), nil)
        }
    }

    // MARK: Successes counted outside the lock

    /// Whether successes that are not slow can be counted outside the lock and folded in later
    /// with ``foldSuccesses(_:generation:)``: true when the breaker is closed with a count-based
    /// window and no run of such successes, however long, could open it.
    ///
    /// A success resets the consecutive-failure count and, in a count-based window, never raises
    /// a rate once the window holds ``Configuration/minimumNumberOfCalls`` calls (it adds a call
    /// that is neither a failure nor slow, and evicts one that may be). Below the minimum, the
    /// rates are first judged when the window reaches it, with the failures it holds now: so the
    /// highest rate any run of successes can produce is `failures / max(calls, minimum)`. When that
    /// is under every threshold, a success cannot open the breaker, and counting it late changes
    /// no decision. (A time-based window needs each call's time, so it never qualifies.)
    var acceptsSuccessesOutsideLock: Bool {
        guard case .closed = self.state, self.window.isCountBased else { return false }
        let totals = self.window.totals
        let calls = max(totals.calls, self.minimumNumberOfCalls)
        guard calls > 0 else { return true }
        if let threshold = self.failureRateThreshold, Double(totals.failures) / Double(calls) >= threshold {
            return false
        }
        if let threshold = self.slowCallRateThreshold, Double(totals.slowCalls) / Double(calls) >= threshold {
            return false
        }
        return true
    }

    /// Counts `count` successes that are not slow, taken with closed permits of `generation`
    /// while ``acceptsSuccessesOutsideLock`` held, as if each had been recorded in turn.
    ///
    /// Successes of an older generation are dropped, as ``record(_:_:isSlow:now:)`` drops them.
    /// Costs at most one window's worth of steps: beyond the window's size, more successes leave
    /// the same window.
    mutating func foldSuccesses(_ count: Int, generation: UInt64) {
        guard count > 0, generation == self.generation, case .closed = self.state else { return }
        self.consecutiveFailures = 0
        for _ in 0..<min(count, self.window.size) {
            self.window.record(isFailure: false, isSlow: false, now: .zero)
        }
    }

    // MARK: Outcomes

    /// Counts a closed-state outcome in the consecutive-failure count and the window.
    /// - Returns: Whether it was counted (ignored and cancelled calls are not).
    @discardableResult
    private mutating func count(_ outcome: Outcome, isSlow: Bool, now: @autoclosure () -> Duration) -> Bool {
        switch outcome {
        case .ignored, .cancelled:
            return false
        case .success:
            self.consecutiveFailures = 0
            self.window.record(isFailure: false, isSlow: isSlow, now: now())
        case .failure:
            self.consecutiveFailures += 1
            self.window.record(isFailure: true, isSlow: isSlow, now: now())
        }
        return true
    }

    /// Records how a permitted call ended.
    /// - Parameters:
    ///   - permit: The permit the call ran under.
    ///   - outcome: How it ended.
    ///   - isSlow: Whether it took at least the slow-call duration threshold.
    ///   - now: When it ended; evaluated at most once, only if a time-based window or a
    ///     transition needs it.
    /// - Returns: The transition the outcome caused, if any.
    mutating func record(
        _ permit: Permit,
        _ outcome: Outcome,
        isSlow: Bool,
        now readNow: @autoclosure () -> Duration
    ) -> Transition? {
        guard permit.generation == self.generation else { return nil }
        // The clock is read at most once, and only when a window or a transition needs it.
        var cachedNow: Duration?
        func now() -> Duration {
            if let cachedNow { return cachedNow }
            let value = readNow()
            cachedNow = value
            return value
        }
        switch (permit.kind, self.state) {
        case (.disabled, _):
            return nil
        case (.closed, .closed):
            guard self.count(outcome, isSlow: isSlow, now: now()) else { return nil }
            guard let reason = self.reasonToOpenFromClosed() else { return nil }
            var transition = self.moveToOpen(now: now())
            if case .rate(let rate) = reason { transition.exceededRate = rate }
            return transition
        case (.metricsOnly, .metricsOnly):
            self.count(outcome, isSlow: isSlow, now: now())
            return nil
        case (.halfOpen, .halfOpen(var probes)):
            switch outcome {
            case .ignored, .cancelled:
                probes.admitted -= 1
                self.state = .halfOpen(probes)
                return nil
            case .success:
                probes.successes += 1
            case .failure:
                probes.failures += 1
            }
            if isSlow { probes.slowCalls += 1 }
            if isSlow && outcome == .failure { probes.slowFailures += 1 }
            self.state = .halfOpen(probes)
            return self.decideHalfOpen(probes, now: now())
        default:
            preconditionFailure("a \(permit.kind) permit of the current generation in state \(self.state)")
        }
    }

    /// A timer armed for `generation` fired at `now`.
    /// - Returns: The transition, or `nil` if the state it was armed for has already ended.
    mutating func timerFired(generation: UInt64, now: Duration) -> Transition? {
        guard generation == self.generation else { return nil }
        switch self.state {
        case .open(let until) where now >= until:
            return self.moveToHalfOpen(now: now)
        case .halfOpen(let probes):
            guard let deadline = probes.deadline, now >= deadline else { return nil }
            return self.halfOpenTimedOut(probes, now: now)
        case .open, .closed, .forcedOpen, .disabled, .metricsOnly:
            return nil
        }
    }

    // MARK: Manual control

    /// Rejects every call until a reset; forgets the window (the calls before no longer describe
    /// the state).
    mutating func forceOpen() -> Transition? {
        guard let transition = self.move(to: .forcedOpen, publicState: .forcedOpen) else { return nil }
        self.window.removeAll()
        self.consecutiveFailures = 0
        return transition
    }

    /// Admits every call and records nothing until a reset; forgets the window.
    mutating func disable() -> Transition? {
        guard let transition = self.move(to: .disabled, publicState: .disabled) else { return nil }
        self.window.removeAll()
        self.consecutiveFailures = 0
        return transition
    }

    /// Half-open now, from any state: the next ``Configuration/permittedCallsInHalfOpen`` calls are
    /// probes. `nil` when already half-open.
    mutating func startHalfOpen(now: Duration) -> Transition? {
        guard self.publicState != .halfOpen else { return nil }
        return self.moveToHalfOpen(now: now)
    }

    /// Open now for `duration`, from any state (open again: the open time starts over), then
    /// half-open as after any opening. The window is kept; the backoff history is not advanced.
    mutating func open(for duration: Duration, now: Duration) -> Transition {
        let from = self.publicState
        let until = now + duration
        self.state = .open(until: until)
        self.generation &+= 1
        var transition = Transition(from: from, to: .open, generation: self.generation)
        transition.openDuration = duration
        if self.configuration.halfOpenTransition == .automatic {
            transition.timerDeadline = until
        }
        return transition
    }

    /// Admits every call and records it, never opening, until a reset.
    mutating func enableMetricsOnly() -> Transition? {
        self.window.removeAll()
        self.consecutiveFailures = 0
        return self.move(to: .metricsOnly, publicState: .metricsOnly)
    }

    /// Back to closed with an empty window and no backoff history. Always a transition (to a new
    /// generation), even from closed: calls in flight no longer count.
    mutating func reset() -> Transition {
        let from = self.publicState
        self.window.removeAll()
        self.consecutiveFailures = 0
        self.consecutiveOpenings = 0
        self.state = .closed
        self.generation &+= 1
        return Transition(from: from, to: .closed, generation: self.generation)
    }

    // MARK: Transitions

    /// Why a closed breaker opens.
    private enum OpenReason {
        case consecutiveFailures
        case rate(ExceededRate)
    }

    /// Why a closed breaker must open now, if it must.
    private func reasonToOpenFromClosed() -> OpenReason? {
        if self.consecutiveFailures >= self.consecutiveFailureThreshold {
            return .consecutiveFailures
        }
        let totals = self.window.totals
        guard totals.calls >= self.minimumNumberOfCalls else { return nil }
        let calls = Double(totals.calls)
        let failureRate = Double(totals.failures) / calls
        if let threshold = self.failureRateThreshold, failureRate >= threshold {
            return .rate(.failureRate(failureRate))
        }
        let slowCallRate = Double(totals.slowCalls) / calls
        if let threshold = self.slowCallRateThreshold, slowCallRate >= threshold {
            return .rate(.slowCallRate(slowCallRate))
        }
        return nil
    }

    /// Closes or re-opens once the probes' outcome is certain.
    private mutating func decideHalfOpen(_ probes: HalfOpen, now: Duration) -> Transition? {
        let permitted = Double(self.permittedCallsInHalfOpen)
        // Without a failure-rate threshold, any failed probe re-opens.
        let failureRate = Double(probes.failures) / permitted
        if let threshold = self.failureRateThreshold, failureRate >= threshold {
            var transition = self.reopen(after: probes, now: now)
            transition.exceededRate = .failureRate(failureRate)
            return transition
        }
        if self.failureRateThreshold == nil && probes.failures > 0 {
            return self.reopen(after: probes, now: now)
        }
        let slowCallRate = Double(probes.slowCalls) / permitted
        if let threshold = self.slowCallRateThreshold, slowCallRate >= threshold {
            var transition = self.reopen(after: probes, now: now)
            transition.exceededRate = .slowCallRate(slowCallRate)
            return transition
        }
        guard probes.completed >= self.permittedCallsInHalfOpen else { return nil }
        self.consecutiveOpenings = 0
        self.consecutiveFailures = 0
        self.window.removeAll()
        return self.move(to: .closed, publicState: .closed)
    }

    /// ``Configuration/maximumTimeInHalfOpen`` ran out before the probes decided: closes or
    /// re-opens, as ``Configuration/afterMaximumTimeInHalfOpen`` says.
    private mutating func halfOpenTimedOut(_ probes: HalfOpen, now: Duration) -> Transition {
        guard self.configuration.afterMaximumTimeInHalfOpen == .closed else {
            return self.reopen(after: probes, now: now)
        }
        self.consecutiveOpenings = 0
        self.consecutiveFailures = 0
        self.window.removeAll()
        guard let transition = self.move(to: .closed, publicState: .closed) else {
            preconditionFailure("closing from half-open is not a transition")
        }
        return transition
    }

    /// Re-opens from half-open: the window then holds the completed probes (what the metrics of
    /// the open breaker show), not the calls of the opening before.
    private mutating func reopen(after probes: HalfOpen, now: Duration) -> Transition {
        self.window.removeAll()
        // The failures first, the slow ones among them first; then the successes, the slow ones
        // among them first: the window's totals are the probes'.
        let slowSuccesses = probes.slowCalls - probes.slowFailures
        for index in 0..<probes.completed {
            let isFailure = index < probes.failures
            let isSlow = isFailure ? index < probes.slowFailures : index - probes.failures < slowSuccesses
            self.window.record(isFailure: isFailure, isSlow: isSlow, now: now)
        }
        return self.moveToOpen(now: now)
    }

    private mutating func moveToOpen(now: Duration) -> Transition {
        let random = self.random
        let duration = self.configuration.openDuration.duration(
            afterOpenings: self.consecutiveOpenings,
            unitRandom: { random.nextUnitDouble() }
        )
        self.consecutiveOpenings += 1
        let until = now + duration
        guard var transition = self.move(to: .open(until: until), publicState: .open) else {
            preconditionFailure("opening from \(self.state) is not a transition")
        }
        transition.openDuration = duration
        if self.configuration.halfOpenTransition == .automatic {
            transition.timerDeadline = until
        }
        return transition
    }

    private mutating func moveToHalfOpen(now: Duration) -> Transition {
        let deadline = self.configuration.maximumTimeInHalfOpen.map { now + $0 }
        guard var transition = self.move(to: .halfOpen(HalfOpen(deadline: deadline)), publicState: .halfOpen) else {
            preconditionFailure("half-opening from \(self.state) is not a transition")
        }
        transition.timerDeadline = deadline
        return transition
    }

    /// Moves to `state`; `nil` when already in that public state (nothing changes then).
    private mutating func move(to state: State, publicState: CircuitBreaker.State) -> Transition? {
        let from = self.publicState
        guard from != publicState else { return nil }
        self.state = state
        self.generation &+= 1
        return Transition(from: from, to: publicState, generation: self.generation)
    }
}
