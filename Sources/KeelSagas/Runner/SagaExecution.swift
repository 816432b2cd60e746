import KeelCore
import KeelEventSourcing
import KeelResilience
import Synchronization

/// One run of one saga in this process: its journal writer, what replay knows, and the checks of
/// the determinism rule.
final class SagaExecution: Sendable {
    struct State: Sendable {
        /// The names of the items claimed so far: a list while it is short (a linear search of a
        /// few names is cheaper than hashing each), a set from then on.
        var names: [String] = []
        var nameSet: Set<String> = []
        var replayed: Set<SagaItemRef> = []
        var pivotCalled = false
        var isPastPivot = false
        /// Steps found in doubt whose effect nobody can undo (they have a compensation, or are
        /// the pivot): the run ends as needing intervention.
        var inDoubt: [SagaFailure] = []
        var failedCompensations: [SagaFailure] = []
        var completedCompensations: Set<SagaItemRef> = []
        var isSuspending = false
        /// The first journal failure during compensation: the run stops, unfinished.
        var journalFailure: SagaError?
        /// Tasks to cancel when the run is suspended (retry loops past the pivot, compensations).
        var suspendables: [Int: @Sendable () -> Void] = [:]
        var nextSuspendable = 0
        /// The saga's deadline, in wall-clock nanoseconds.
        var deadline: Int64?
        var deadlineExceeded = false
        /// The first recorded output the replay could not read (a failed migration, a newer
        /// version's payload): the run stops for an operator instead of compensating.
        var unreadable: SagaFailure?

        /// Records `name` as claimed.
        /// - Returns: Whether it was new.
        mutating func insertName(_ name: String) -> Bool {
            if self.nameSet.isEmpty {
                if self.names.contains(name) { return false }
                // Room for a short saga's names at once, rather than growing by copying.
                if self.names.isEmpty { self.names.reserveCapacity(8) }
                self.names.append(name)
                if self.names.count > 16 {
                    self.nameSet = Set(self.names)
                    self.names = []
                }
                return true
            }
            return self.nameSet.insert(name).inserted
        }
    }

    let saga: String
    let id: String
    let run: Int
    /// Whether the telemetry records metrics and spans: when not, the step timings and the step
    /// spans are not made at all.
    let recordsMetrics: Bool
    let recordsSpans: Bool
    let stream: StreamID
    let runtime: SagaRuntime
    let instruments: SagaInstruments
    /// The journal of this run as it was when the run (re)started; `nil` for a new run.
    let replay: SagaReplay?
    /// The saga's ``Saga/version``, journaled with every payload when it is not 1.
    let version: Int
    /// How the replay's payloads are read.
    let payloads: SagaPayloadReader
    let root: SagaScope
    let state = Lock(State())
    /// The run's stream of an in-memory journal, looked up once: `nil` for an event store.
    let memoryStream: InMemorySagaJournal.Stream?
    /// The in-memory journal, if the runner has one: held here so that the hot paths do not copy
    /// the runtime's journal enum (a retain and a release) for every entry.
    let memoryJournal: InMemorySagaJournal?

    init(
        saga: String,
        id: String,
        run: Int,
        journal: SagaJournalHandle,
        version: Int,
        runtime: SagaRuntime,
        instruments: SagaInstruments,
        replay: SagaReplay?,
        payloads: SagaPayloadReader
    ) {
        self.version = version
        self.payloads = payloads
        self.saga = saga
        self.id = id
        self.run = run
        self.stream = journal.stream
        self.runtime = runtime
        self.recordsMetrics = runtime.telemetry.recordsMetrics
        self.recordsSpans = runtime.telemetry.recordsSpans
        self.instruments = instruments
        self.replay = replay
        self.root = SagaScope(path: "", namePrefix: "", isRoot: true)
        self.memoryStream = journal.memory
        if case .memory(let memoryJournal) = runtime.journal {
            self.memoryJournal = memoryJournal
        } else {
            self.memoryJournal = nil
        }
    }

    /// The saga's deadline, in wall-clock nanoseconds, if it has one.
    var deadline: Int64? {
        get { self.state.withLock { $0.deadline } }
        set { self.state.withLock { $0.deadline = newValue } }
    }

    var isPastPivot: Bool { self.state.withLock { $0.isPastPivot } }
    var isSuspending: Bool { self.state.withLock { $0.isSuspending } }

    /// Stops the run at its next step (and cancels its retry loops): the runner is shutting down.
    func suspend() {
        let hooks = self.state.withLock { state -> [@Sendable () -> Void] in
            state.isSuspending = true
            return Array(state.suspendables.values)
        }
        for hook in hooks { hook() }
    }

    /// Whether `error` means the run was stopped for a shutdown, not that its step failed.
    func isSuspension(_ error: any Error) -> Bool {
        if let error = error as? SagaError, error.code == .suspended { return true }
        return error is CancellationError && self.isSuspending
    }

    /// Passes an attempt through the runner's interceptor, if it has one.
    func intercept(_ kind: SagaInterception.Kind, step: String, attempt: Int) throws {
        try self.runtime.interceptor?(
            SagaInterception(kind: kind, saga: self.saga, id: self.id, step: step, attempt: attempt)
        )
    }

    // MARK: Journal

    func entry(_ kind: SagaJournalEntry.Kind) -> SagaJournalEntry {
        SagaJournalEntry(kind: kind, run: self.run, time: self.runtime.wallClock.nanosecondsSinceEpoch())
    }

    /// Appends `entry` in place when the journal is in memory, without an async call (the hot
    /// paths call this first, and ``append(_:)`` only when it returns `false`).
    /// - Returns: `false` when the journal is an event store, and nothing was appended.
    func appendInPlace(_ entry: SagaJournalEntry) throws(SagaError) -> Bool {
        guard let memory = self.memoryStream, let journal = self.memoryJournal else { return false }
        do {
            try journal.append(entry, to: memory, id: self.stream, expecting: .any)
        } catch {
            throw SagaJournalAppendFailure.store(error).sagaError(
                "cannot append \(entry.kind) to the journal \(self.stream)"
            )
        }
        return true
    }

    func append(_ entry: SagaJournalEntry) async throws(SagaError) {
        if try self.appendInPlace(entry) { return }
        do {
            try await self.runtime.journal.append(
                entry,
                to: self.stream,
                expecting: .any,
                random: self.runtime.random,
                memoryStream: self.memoryStream
            )
        } catch {
            throw error.sagaError("cannot append \(entry.kind) to the journal \(self.stream)")
        }
    }

    func itemEntry(
        _ kind: SagaJournalEntry.Kind,
        _ ref: SagaItemRef,
        name: String,
        itemKind: SagaItemKind
    ) -> SagaJournalEntry {
        var entry = self.entry(kind)
        entry.item = ref
        entry.name = name
        entry.itemKind = itemKind
        return entry
    }

    // MARK: Items

    func stepContext(_ step: String, attempt: Int) -> SagaStepContext {
        SagaStepContext(saga: self.saga, sagaID: self.id, step: step, attempt: attempt, run: self.run)
    }

    /// Claims the item `name` at `ref` and checks it against the rules and the journal.
    /// - Returns: What the journal records for it, or `nil` for an item the run reaches for the
    ///   first time.
    func claim(
        _ ref: SagaItemRef,
        name: String,
        kind: SagaItemKind,
        in scope: SagaScope
    ) throws(SagaError)
        -> SagaReplay.Item?
    {
        try self.state.withLock { state throws(SagaError) -> SagaReplay.Item? in
            if state.isSuspending {
                throw SagaError(code: .suspended, message: "the runner is shutting down; \(name) did not start")
            }
            guard state.insertName(name) else {
                throw SagaError(
                    code: .duplicateStepName,
                    message: "\(self.saga) \(self.id) has two items named \(name)"
                )
            }
            switch kind {
            case .pivot:
                guard scope.isRoot, !state.pivotCalled else {
                    throw SagaError(
                        code: .misplacedPivot,
                        message: "\(name): a saga has one pivot, in its own body (not in a branch or a nested saga)"
                    )
                }
                state.pivotCalled = true
            case .step, .parallel, .nested:
                if state.isPastPivot {
                    throw SagaError(
                        code: .stepAfterPivot,
                        message: "\(name) comes after the pivot: past it, only retriable steps (and timers) may follow"
                    )
                }
            case .retriable, .timer, .signal:
                break
            }
            guard let recorded = self.replay?.items[ref] else { return nil }
            guard recorded.name == name, recorded.kind == kind else {
                throw SagaError(
                    code: .nondeterminism,
                    message:
                        "at \(ref) the journal records the \(recorded.kind.rawValue) \(recorded.name), but the body asked for the \(kind.rawValue) \(name)"
                )
            }
            state.replayed.insert(ref)
            return recorded
        }
    }

    /// The journaled items the body did not reach again on replay.
    func unreplayedItems() -> [String] {
        guard let replay = self.replay else { return [] }
        let replayed = self.state.withLock { $0.replayed }
        return replay.items.filter { !replayed.contains($0.key) }
            .sorted { ($0.key.scope, $0.key.index) < ($1.key.scope, $1.key.index) }
            .map(\.value.name)
    }

    /// Runs one step: replays it from the journal, or runs it and journals it.
    func step<T: Codable & Sendable>(
        in scope: SagaScope,
        name: String,
        kind: SagaItemKind,
        options: SagaStepOptions,
        action: @escaping @Sendable (SagaStepContext) async throws -> T,
        compensate: (@Sendable (T, SagaStepContext) async throws -> Void)?
    ) async throws -> T {
        let fullName = scope.namePrefix + name
        guard !name.isEmpty else {
            throw SagaError(code: .invalidArgument, message: "a step of \(self.saga) has an empty name")
        }
        let index = try scope.take(fullName)
        defer { scope.release() }
        let ref = SagaItemRef(scope: scope.path, index: index)
        let recorded = try self.claim(ref, name: fullName, kind: kind, in: scope)
        var attemptsBefore = 0
        if let recorded {
            if recorded.isCompleted {
                let value: T
                do throws(SagaError) {
                    value = try self.payloads.decode(
                        T.self,
                        .step(fullName),
                        from: recorded.output,
                        writtenBy: recorded.outputVersion,
                        what: "the output of \(fullName)"
                    )
                } catch {
                    let failure = SagaFailure(error, step: fullName)
                    self.state.withLock { $0.unreadable = $0.unreadable ?? failure }
                    throw error
                }
                self.didComplete(ref, name: fullName, kind: kind, value: value, in: scope, compensate: compensate)
                return value
            }
            if let failure = recorded.failure {
                // A step found in doubt by an earlier recovery stays in doubt: its effect is still
                // unknown, however many times the process died since.
                if recorded.isInDoubt, compensate != nil || kind == .pivot {
                    self.state.withLock { $0.inDoubt.append(failure) }
                }
                throw SagaStepFailure(failure: failure)
            }
            guard options.isIdempotent || kind == .retriable else {
                // Started before a crash, never recorded as completed, and not safe to repeat.
                let message =
                    "\(fullName) started and was not recorded as completed; it is not idempotent, so it does not run again"
                let failure = SagaFailure(
                    step: fullName,
                    errorType: "SagaError",
                    message: "stepInDoubt: " + message,
                    error: SagaError(code: .stepInDoubt, message: message)
                )
                var entry = self.itemEntry(.stepFailed, ref, name: fullName, itemKind: kind)
                entry.failure = failure
                entry.inDoubt = true
                try await self.append(entry)
                if compensate != nil || kind == .pivot {
                    self.state.withLock { $0.inDoubt.append(failure) }
                }
                throw SagaStepFailure(failure: failure)
            }
            attemptsBefore = recorded.attempts
        } else if kind != .retriable, !self.isPastPivot {
            try Task.checkCancellation()
        }

        let started = self.recordsMetrics ? ContinuousClock.now : nil
        // No `Result<T, any Error>` on the common path: in this unspecialised generic code each
        // such value is a runtime metadata lookup and an allocation of its own.
        let value: T
        do {
            if kind == .retriable {
                let before = attemptsBefore
                value = try await self.whileNotSuspended { [self] in
                    await self.runRetriable(ref, name: fullName, options: options, after: before, action: action)
                }
                .get()
            } else if let retry = options.retry {
                value = try await self.runAttempts(
                    ref,
                    name: fullName,
                    kind: kind,
                    options: options,
                    retry: retry,
                    after: attemptsBefore,
                    action: action
                )
                .get()
            } else {
                // One attempt: made here, not through a retry loop.
                value = try await self.attempt(
                    ref,
                    name: fullName,
                    kind: kind,
                    options: options,
                    attempt: attemptsBefore + 1,
                    action
                )
            }
        } catch {
            if let started { self.instruments.stepDuration.record(ContinuousClock.now - started) }
            if self.isSuspension(error) {
                throw SagaError(code: .suspended, message: "the runner is shutting down; \(fullName) was stopped")
            }
            if let error = error as? SagaError, error.code == .journalUnavailable { throw error }
            let failure = SagaFailure(error, step: fullName)
            var entry = self.itemEntry(.stepFailed, ref, name: fullName, itemKind: kind)
            entry.failure = failure
            try await self.append(entry)
            throw SagaStepFailure(failure: failure)
        }
        if let started { self.instruments.stepDuration.record(ContinuousClock.now - started) }
        var entry = self.itemEntry(.stepCompleted, ref, name: fullName, itemKind: kind)
        // Kept as it is in memory; JSON for an event store.
        entry.payload =
            self.memoryJournal != nil
            ? .kept(value) : try self.runtime.journal.record(value, what: "the output of \(fullName)")
        if self.version != 1 { entry.sagaVersion = self.version }
        if try !self.appendInPlace(entry) { try await self.append(entry) }
        self.didComplete(ref, name: fullName, kind: kind, value: value, in: scope, compensate: compensate)
        return value
    }

    private func didComplete<T: Sendable>(
        _ ref: SagaItemRef,
        name: String,
        kind: SagaItemKind,
        value: T,
        in scope: SagaScope,
        compensate: (@Sendable (T, SagaStepContext) async throws -> Void)?
    ) {
        if kind == .pivot {
            self.state.withLock { $0.isPastPivot = true }
        }
        guard let compensate else { return }
        scope.add(
            .step(
                SagaUndo(
                    ref: ref,
                    step: name,
                    compensate: { context in try await compensate(value, context) }
                )
            )
        )
    }

    /// The attempts of a step before the pivot, or of the pivot, with a retry strategy: the
    /// strategy's, each with its timeout, each journaled as it starts.
    private func runAttempts<T: Sendable>(
        _ ref: SagaItemRef,
        name: String,
        kind: SagaItemKind,
        options: SagaStepOptions,
        retry: Retry,
        after attemptsBefore: Int,
        action: @escaping @Sendable (SagaStepContext) async throws -> T
    ) async -> Result<T, any Error> {
        do {
            var attempt = attemptsBefore
            return .success(
                try await retry.run {
                    attempt += 1
                    return try await self.attempt(
                        ref,
                        name: name,
                        kind: kind,
                        options: options,
                        attempt: attempt,
                        action
                    )
                }
            )
        } catch {
            return .failure(error)
        }
    }

    /// One attempt of a step before the pivot, or of the pivot: journaled as it starts, run with its
    /// timeout, in its span.
    private func attempt<T: Sendable>(
        _ ref: SagaItemRef,
        name: String,
        kind: SagaItemKind,
        options: SagaStepOptions,
        attempt: Int,
        _ action: @escaping @Sendable (SagaStepContext) async throws -> T
    ) async throws -> T {
        var entry = self.itemEntry(.stepStarted, ref, name: name, itemKind: kind)
        entry.attempt = attempt
        entry.idempotent = options.isIdempotent
        if try !self.appendInPlace(entry) { try await self.append(entry) }
        let context = self.stepContext(name, attempt: attempt)
        try self.intercept(.step, step: name, attempt: attempt)
        guard self.recordsSpans || options.timeout != nil else { return try await action(context) }
        return try await self.traced(name, attempt: attempt) {
            try await self.withTimeout(options.timeout, step: name) { try await action(context) }
        }
    }

    /// The attempts of a retriable step: until it succeeds, the configured attempts run out, or
    /// the run is suspended.
    private func runRetriable<T: Sendable>(
        _ ref: SagaItemRef,
        name: String,
        options: SagaStepOptions,
        after attemptsBefore: Int,
        action: @escaping @Sendable (SagaStepContext) async throws -> T
    ) async -> Result<T, any Error> {
        await self.whileNotSuspended {
            var delays = self.runtime.configuration.retriableBackoff.makeDelays(using: self.runtime.random)
            var attempt = attemptsBefore
            let limit = attemptsBefore + self.runtime.configuration.retriableAttempts
            while true {
                attempt += 1
                do {
                    var entry = self.itemEntry(.stepStarted, ref, name: name, itemKind: .retriable)
                    entry.attempt = attempt
                    entry.idempotent = true
                    try await self.append(entry)
                    let context = self.stepContext(name, attempt: attempt)
                    try self.intercept(.step, step: name, attempt: attempt)
                    return .success(
                        try await self.traced(name, attempt: attempt) {
                            try await self.withTimeout(options.timeout, step: name) { try await action(context) }
                        }
                    )
                } catch {
                    if self.isSuspension(error) || attempt >= limit { return .failure(error) }
                    if let error = error as? SagaError, error.code == .journalUnavailable { return .failure(error) }
                    self.instruments.stepRetries.increment(by: 1)
                    if let delay = delays.next(), delay > .zero {
                        do {
                            try await self.runtime.clock.sleep(for: delay)
                        } catch {
                            return .failure(error)
                        }
                    }
                }
            }
        }
    }

    /// Runs `operation` in a task of its own, and waits for it: compensations and the steps past
    /// a pivot must finish even when the saga's task is cancelled, so the caller's cancellation
    /// does not reach the task; suspending the run (a shutdown) cancels it. The caller owns the
    /// task and awaits it. The trace is the caller's without its deadline: a compensation's
    /// requests must not fail only because the saga ran out of time.
    func whileNotSuspended<T: Sendable>(_ operation: @escaping @Sendable () async -> T) async -> T {
        var context = TraceContext.current
        context?.deadline = nil
        let inner = TaskSpawner.spawn(executor: self.runtime.executor) { () async -> T in
            await TraceContext.$current.withValue(context) { await operation() }
        }
        let key = self.state.withLock { state -> Int? in
            if state.isSuspending { return nil }
            defer { state.nextSuspendable += 1 }
            state.suspendables[state.nextSuspendable] = { inner.cancel() }
            return state.nextSuspendable
        }
        if key == nil { inner.cancel() }
        let value = await inner.value
        if let key { _ = self.state.withLock { $0.suspendables.removeValue(forKey: key) } }
        return value
    }

    /// Runs one attempt of a step in a span of its own, `saga.step <name>`, in the saga's trace;
    /// with a telemetry that records no spans, in the saga's trace context as it is (a span
    /// nobody records would cost a trace context and a task-local binding per attempt).
    func traced<T: Sendable>(_ step: String, attempt: Int, _ operation: () async throws -> T) async throws -> T {
        guard self.recordsSpans else { return try await operation() }
        let saga = self.saga
        return try await self.runtime.telemetry.withSpan("saga.step \(step)", random: self.runtime.random) { span in
            span.setAttribute("saga", .string(saga))
            span.setAttribute("attempt", .int(Int64(attempt)))
            return try await operation()
        }
    }

    /// Suspends until the run is suspended (the runner shuts down), or the calling task is
    /// cancelled.
    func waitForSuspension() async {
        let key = self.state.withLock { state -> Int in
            defer { state.nextSuspendable += 1 }
            return state.nextSuspendable
        }
        let signal = SuspensionSignal()
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                signal.park(continuation)
                let now = self.state.withLock { state -> Bool in
                    if state.isSuspending || Task.isCancelled { return true }
                    state.suspendables[key] = { signal.fire() }
                    return false
                }
                if now { signal.fire() }
            }
        } onCancel: {
            signal.fire()
        }
        _ = self.state.withLock { $0.suspendables.removeValue(forKey: key) }
    }

    /// Sleeps `duration` on the runner's clock; a suspension of the run (a shutdown) ends the
    /// sleep with ``SagaError/Code-swift.struct/suspended``.
    func sleep(for duration: Duration, timer: String) async throws {
        let clock = self.runtime.clock
        try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask {
                try await clock.sleep(for: duration)
                return true
            }
            group.addTask {
                await self.waitForSuspension()
                return false
            }
            defer { group.cancelAll() }
            if try await group.next() == false, self.isSuspending {
                throw SagaError(code: .suspended, message: "the runner is shutting down; the timer \(timer) stopped")
            }
            try Task.checkCancellation()
        }
    }

    /// Waits for the signal `name`, or until `timeout` passes (durably: the due time is
    /// journaled).
    /// - Returns: The signal's payload (JSON text), or `nil` when the wait timed out.
    func waitForSignal(in scope: SagaScope, name: String, timeout: Duration) async throws -> String? {
        let fullName = scope.namePrefix + name
        let index = try scope.take(fullName)
        defer { scope.release() }
        let ref = SagaItemRef(scope: scope.path, index: index)
        let recorded = try self.claim(ref, name: fullName, kind: .signal, in: scope)
        if let recorded, recorded.isCompleted {
            return try SagaPayload.decode(
                SagaSignalRecord.self,
                from: recorded.output,
                what: "the wait for \(fullName)"
            )
            .payload
        }
        let wallClock = self.runtime.wallClock
        let due: Int64
        if let recordedDue = recorded?.dueTime {
            due = recordedDue
        } else {
            try Task.checkCancellation()
            let (seconds, attoseconds) = timeout.components
            due = wallClock.nanosecondsSinceEpoch() + seconds * 1_000_000_000 + attoseconds / 1_000_000_000
            var entry = self.itemEntry(.timerStarted, ref, name: fullName, itemKind: .signal)
            entry.dueTime = due
            try await self.append(entry)
        }
        while true {
            let wake = SuspensionSignal()
            let key = self.runtime.mailbox.register(self.stream) { wake.fire() }
            defer { self.runtime.mailbox.remove(self.stream, key) }
            // The journal is what counts; it is read after the registration, so that a signal sent
            // in between is seen here or wakes the wait below.
            let journal = try await self.runtime.journal.load(self.stream)
            let payload = journal?.signals[name]
            let remaining = due - wallClock.nanosecondsSinceEpoch()
            if payload != nil || remaining <= 0 {
                var entry = self.itemEntry(.stepCompleted, ref, name: fullName, itemKind: .signal)
                entry.payload = try self.runtime.journal.record(
                    SagaSignalRecord(payload: payload),
                    what: "the wait for \(fullName)"
                )
                try await self.append(entry)
                return payload
            }
            let clock = self.runtime.clock
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await clock.sleep(for: .nanoseconds(remaining)) }
                group.addTask { await wake.wait() }
                group.addTask {
                    await self.waitForSuspension()
                    if self.isSuspending {
                        throw SagaError(
                            code: .suspended,
                            message: "the runner is shutting down; the wait for \(fullName) stopped"
                        )
                    }
                }
                defer { group.cancelAll() }
                try await group.next()
            }
            try Task.checkCancellation()
        }
    }

    func withTimeout<T: Sendable>(
        _ timeout: Duration?,
        step: String,
        _ operation: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        guard let timeout else { return try await operation() }
        let clock = self.runtime.clock
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await operation() }
            group.addTask {
                try await clock.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            if case .some(.some(let value)) = try await group.next() {
                return value
            }
            throw SagaError(code: .stepTimedOut, message: "an attempt of \(step) ran past its timeout of \(timeout)")
        }
    }

    // MARK: Compensation

    /// Compensates every completed item of `scope`, newest first; a parallel group's branches
    /// concurrently. Failed compensations are collected in the state, not thrown.
    func compensate(_ scope: SagaScope) async {
        let nodes = scope.state.withLock { state -> [SagaScope.Node] in
            if state.isCompensated { return [] }
            return state.nodes
        }
        for node in nodes.reversed() {
            if self.isSuspending || self.state.withLock({ $0.journalFailure != nil }) { return }
            switch node {
            case .step(let undo):
                await self.compensateStep(undo)
            case .branches(let scopes):
                await withTaskGroup(of: Void.self) { group in
                    for branch in scopes {
                        group.addTask { await self.compensate(branch) }
                    }
                }
            case .nested(let nested):
                await self.compensate(nested)
            }
        }
        if !self.isSuspending {
            scope.state.withLock { $0.isCompensated = true }
        }
    }

    private func compensateStep(_ undo: SagaUndo) async {
        var attemptsBefore = 0
        if self.state.withLock({ $0.completedCompensations.contains(undo.ref) }) { return }
        if let recorded = self.replay?.items[undo.ref] {
            switch recorded.compensation {
            case .completed:
                return
            case .failed(let failure):
                self.state.withLock { $0.failedCompensations.append(failure) }
                return
            case .started(let attempts):
                attemptsBefore = attempts
            case .none:
                break
            }
        }
        let configuration = self.runtime.configuration
        var delays = configuration.compensationBackoff.makeDelays(using: self.runtime.random)
        var attempt = attemptsBefore
        var lastError: (any Error)?
        let name = self.saga
        while attempt < attemptsBefore + configuration.compensationAttempts {
            attempt += 1
            let context = self.stepContext(undo.step + "/compensate", attempt: attempt)
            do {
                var started = self.itemEntry(.compensationStarted, undo.ref, name: undo.step, itemKind: .step)
                started.attempt = attempt
                try await self.append(started)
                if self.recordsSpans {
                    try await self.runtime.telemetry.withSpan(
                        "saga.compensate \(undo.step)",
                        random: self.runtime.random
                    ) { span in
                        span.setAttribute("saga", .string(name))
                        span.setAttribute("attempt", .int(Int64(attempt)))
                        try self.intercept(.compensation, step: undo.step, attempt: attempt)
                        try await undo.compensate(context)
                    }
                } else {
                    try self.intercept(.compensation, step: undo.step, attempt: attempt)
                    try await undo.compensate(context)
                }
                try await self.append(
                    self.itemEntry(.compensationCompleted, undo.ref, name: undo.step, itemKind: .step)
                )
                self.state.withLock { _ = $0.completedCompensations.insert(undo.ref) }
                return
            } catch let error as SagaError where error.code == .journalUnavailable {
                self.state.withLock { $0.journalFailure = $0.journalFailure ?? error }
                return
            } catch {
                if self.isSuspension(error) { return }
                lastError = error
            }
            if attempt < attemptsBefore + configuration.compensationAttempts {
                self.instruments.compensationRetries.increment(by: 1)
                if let delay = delays.next(), delay > .zero {
                    do {
                        try await self.runtime.clock.sleep(for: delay)
                    } catch {
                        return
                    }
                }
            }
        }
        let failure = SagaFailure(lastError ?? CancellationError(), step: undo.step)
        var entry = self.itemEntry(.compensationFailed, undo.ref, name: undo.step, itemKind: .step)
        entry.failure = failure
        do {
            try await self.append(entry)
        } catch {
            self.state.withLock { $0.journalFailure = $0.journalFailure ?? error }
            return
        }
        self.state.withLock { $0.failedCompensations.append(failure) }
    }
}

/// A continuation resumed exactly once, by whichever comes first: the suspension or the
/// waiter's cancellation.
final class SuspensionSignal: Sendable {
    private let state = Lock<(continuation: CheckedContinuation<Void, Never>?, fired: Bool)>((nil, false))

    func park(_ continuation: CheckedContinuation<Void, Never>) {
        let resumeNow = self.state.withLock { state -> Bool in
            if state.fired { return true }
            state.continuation = continuation
            return false
        }
        if resumeNow { continuation.resume() }
    }

    /// Suspends until ``fire()`` (or the calling task is cancelled).
    func wait() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                self.park(continuation)
            }
        } onCancel: {
            self.fire()
        }
    }

    func fire() {
        let continuation = self.state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.fired = true
            defer { state.continuation = nil }
            return state.continuation
        }
        continuation?.resume()
    }
}

/// The journaled result of a wait for a signal: the payload, or `nil` for a timeout.
struct SagaSignalRecord: Codable, Sendable {
    var payload: String?
}
