import Keel
import KeelCore
import KeelEventSourcing
import Synchronization

/// Runs sagas, journals them in an event store (or an ``InMemorySagaJournal``), and resumes the
/// unfinished ones after a restart.
///
/// ```swift
/// let runner = try await SagaRunner.make(environment)   // in a service's start(_:)
/// runner.register(PlaceOrder(requests: environment.requests))
/// _ = try await runner.recover()                          // resume what a crash interrupted
///
/// switch try await runner.run(PlaceOrder(requests: environment.requests), id: order.id, input: order) {
/// case .completed(let receipt): …
/// case .compensated(let cause): …
/// case .needsIntervention(let intervention): …
/// }
/// ```
///
/// Each saga has a journal: the stream `saga-<name>:<id>` of the runner's store, where every
/// transition is appended before it counts (see ``Saga``). ``run(_:id:input:reuse:deadline:)``
/// runs a saga in the calling task; ``start(_:id:input:reuse:deadline:)`` in a task the runner
/// owns. ``recover()`` reads the store and resumes every unfinished saga in tasks it owns:
/// forward through the steps the journal records, then on. ``shutdown()`` stops the runner's
/// sagas between steps, leaving them unfinished for the next recovery, and awaits its tasks.
///
/// One runner per journal: two runners (or processes) resuming the same sagas would run their
/// steps twice.
///
/// Metrics (dimension `saga` = the saga's name): `keel.saga.started`, `keel.saga.completed`,
/// `keel.saga.compensated`, `keel.saga.needs_intervention`, `keel.saga.in_flight` (gauge),
/// `keel.saga.step.duration` (timer), `keel.saga.step.retries`,
/// `keel.saga.compensation.retries`. Spans: `saga <name>` per run, `saga.step <step>` per step
/// attempt and `saga.compensate <step>` per compensation attempt, all in the run's trace. With a
/// telemetry that records no spans (``/KeelCore/Telemetry/recordsSpans``) none is started: the
/// steps run in the caller's trace context, or in a new one per run when the caller has none, so
/// that a run's requests share one trace and correlation id either way.
public final class SagaRunner: Sendable {
    struct Definition: Sendable {
        /// How the saga's journals are read (its version and migrations).
        let payloads: SagaPayloadReader
        /// Resumes the saga whose journal is `replay`, to an outcome.
        /// `claimed` is the claim of the saga in this process, made by the caller.
        let resume: @Sendable (SagaRunner, SagaReplay, Running) async throws(SagaError) -> SagaStatus.Phase
    }

    /// A run in this process, for others to wait for.
    final class Running: Sendable {
        /// The saga's journal, looked up once by the claim.
        let journal: SagaJournalHandle
        /// The saga's instruments, when the claimer had them at hand.
        let instruments: SagaInstruments?

        init(journal: SagaJournalHandle, instruments: SagaInstruments?) {
            self.journal = journal
            self.instruments = instruments
        }

        struct State: Sendable {
            var execution: SagaExecution?
            var isFinished = false
            var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
            var nextWaiter = 0
        }
        let state = Lock(State())

        func finish() {
            let waiters = self.state.withLock { state in
                state.isFinished = true
                defer { state.waiters = [:] }
                return Array(state.waiters.values)
            }
            for waiter in waiters { waiter.resume() }
        }

        /// Waits until the run finishes, or the calling task is cancelled.
        func wait() async {
            let key = self.state.withLock { state -> Int in
                defer { state.nextWaiter += 1 }
                return state.nextWaiter
            }
            await withTaskCancellationHandler {
                await withCheckedContinuation { continuation in
                    let resumeNow = self.state.withLock { state -> Bool in
                        if state.isFinished || Task.isCancelled { return true }
                        state.waiters[key] = continuation
                        return false
                    }
                    if resumeNow { continuation.resume() }
                }
            } onCancel: {
                let waiter = self.state.withLock { $0.waiters.removeValue(forKey: key) }
                waiter?.resume()
            }
        }
    }

    struct State: Sendable {
        var definitions: [String: Definition] = [:]
        /// How many entries the last finished run of each saga journaled in an in-memory journal:
        /// the room the next run's journal gets.
        var journalSizes: [String: Int] = [:]
        var instruments: [String: SagaInstruments] = [:]
        var running: [StreamID: Running] = [:]
        var inFlight: [String: Int] = [:]
        var tasks: [Int: Task<Void, Never>] = [:]
        var nextTask = 0
        var isShutDown = false
    }

    let runtime: SagaRuntime
    let state = Lock(State())

    /// The configuration the runner was made with.
    public var configuration: Configuration { self.runtime.configuration }

    /// Creates a runner that journals in `store`.
    /// - Parameters:
    ///   - store: Where journals go: a service's own events (``/Keel/ServiceStorage/events``), or
    ///     any event store. Durable sagas need a durable store.
    ///   - configuration: Compensation and retry persistence.
    ///   - clock: The clock timeouts, backoff and timers wait on.
    ///   - wallClock: The time journaled with each entry, and the base of durable timers and
    ///     deadlines (they must survive a restart, so they are wall-clock times).
    ///   - random: The source of event ids and backoff jitter.
    ///   - telemetry: Where metrics, spans and logs go.
    ///   - executor: The task executor preference of the tasks the runner starts.
    public convenience init(
        store: any EventStore,
        configuration: Configuration = Configuration(),
        clock: any Clock<Duration> = ContinuousClock(),
        wallClock: WallClock = .system,
        random: RandomSource = RandomSource(),
        telemetry: any Telemetry = NoOpTelemetry(),
        executor: (any TaskExecutor)? = nil
    ) {
        self.init(
            store: store,
            configuration: configuration,
            clock: clock,
            wallClock: wallClock,
            random: random,
            telemetry: telemetry,
            executor: executor,
            interceptor: nil
        )
    }

    /// Creates a runner that journals in `journal`, in this process's memory: for sagas that need
    /// not outlive the process (see ``InMemorySagaJournal``). A new runner over the same journal
    /// recovers what an earlier one left unfinished, as over a store.
    /// - Parameters:
    ///   - journal: Where journals go.
    ///   - configuration: Compensation and retry persistence.
    ///   - clock: The clock timeouts, backoff and timers wait on.
    ///   - wallClock: The time journaled with each entry, and the base of timers and deadlines.
    ///   - random: The source of backoff jitter.
    ///   - telemetry: Where metrics, spans and logs go.
    ///   - executor: The task executor preference of the tasks the runner starts.
    public convenience init(
        journal: InMemorySagaJournal,
        configuration: Configuration = Configuration(),
        clock: any Clock<Duration> = ContinuousClock(),
        wallClock: WallClock = .system,
        random: RandomSource = RandomSource(),
        telemetry: any Telemetry = NoOpTelemetry(),
        executor: (any TaskExecutor)? = nil
    ) {
        self.init(
            runtime: SagaRuntime(
                journal: .memory(journal),
                clock: clock,
                wallClock: wallClock,
                random: random,
                telemetry: telemetry,
                executor: executor,
                configuration: configuration,
                interceptor: nil
            )
        )
    }

    /// Creates a runner whose step and compensation attempts first pass `interceptor`: what it
    /// throws fails the attempt. For KeelTesting's saga tester.
    package convenience init(
        store: any EventStore,
        configuration: Configuration,
        clock: any Clock<Duration>,
        wallClock: WallClock,
        random: RandomSource,
        telemetry: any Telemetry,
        executor: (any TaskExecutor)?,
        interceptor: (@Sendable (SagaInterception) throws -> Void)?
    ) {
        self.init(
            runtime: SagaRuntime(
                journal: .events(store),
                clock: clock,
                wallClock: wallClock,
                random: random,
                telemetry: telemetry,
                executor: executor,
                configuration: configuration,
                interceptor: interceptor
            )
        )
    }

    private init(runtime: SagaRuntime) {
        self.runtime = runtime
    }

    /// Makes a runner for a service: it journals in the service's own streams, with the host's
    /// clock, wall clock, random source, telemetry and executor.
    /// - Parameters:
    ///   - environment: The service's environment.
    ///   - configuration: Compensation and retry persistence.
    /// - Returns: The runner.
    /// - Throws: What ``/Keel/ServiceEnvironment/storage()`` throws.
    public static func make(
        _ environment: ServiceEnvironment,
        configuration: Configuration = Configuration()
    ) async throws -> SagaRunner {
        SagaRunner(
            store: try await environment.storage().events,
            configuration: configuration,
            clock: environment.clock,
            wallClock: environment.wallClock,
            random: environment.random,
            telemetry: environment.telemetry,
            executor: environment.executor
        )
    }

    // MARK: Registration

    /// Registers `saga`, so that ``recover()`` can resume sagas of its type. A saga run with
    /// ``run(_:id:input:reuse:deadline:)`` or started with ``start(_:id:input:reuse:deadline:)`` is
    /// registered too, when no saga of its name is; a call of this method replaces the registration
    /// of its name.
    /// - Parameter saga: The saga definition.
    public func register<S: Saga>(_ saga: S) {
        precondition(Self.isValidName(S.name), "a saga's name must be non-empty and without `:`, got \"\(S.name)\"")
        // Checks the saga's version and migrations once, here.
        let payloads = SagaPayloadReader(S.self)
        let definition = Definition(payloads: payloads) { runner, replay, claimed throws(SagaError) in
            let input: S.Input
            do throws(SagaError) {
                try payloads.check(replay)
                input = try payloads.decode(
                    S.Input.self,
                    .input,
                    from: replay.input,
                    writtenBy: replay.inputVersion,
                    what: "the input of \(S.name) \(replay.id)"
                )
            } catch {
                runner.release(SagaRuntime.stream(saga: S.name, id: replay.id), claimed)
                throw error
            }
            return try await runner.execute(
                saga,
                id: replay.id,
                run: replay.run,
                input: input,
                replay: replay,
                payloads: payloads,
                claimed: claimed
            ).phase
        }
        self.state.withLock { $0.definitions[S.name] = definition }
    }

    static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && !name.contains(":")
    }

    // MARK: Running

    /// Runs the saga `saga` with id `id` in the calling task, to its outcome.
    ///
    /// The body runs in the calling task; cancelling the task stops the saga's forward progress
    /// and compensates (past the pivot, the saga goes on forward). Compensations run in a task of
    /// their own, so the call returns only once they have finished.
    /// - Parameters:
    ///   - saga: The saga.
    ///   - id: The saga's id, unique among sagas of its type: an order's id, say.
    ///   - input: The input.
    ///   - reuse: What to do when the journal already holds a saga of this type and id. Default
    ///     ``SagaReusePolicy/returnExisting``.
    ///   - deadline: How long the saga may take, from its start, on the wall clock (journaled,
    ///     so it holds across restarts); `nil` for no limit. When it passes before the pivot, the
    ///     body is cancelled and the saga compensates, with the cause `SagaDeadlineExceeded`.
    /// - Returns: The outcome.
    /// - Throws: ``SagaError``: ``SagaError/Code-swift.struct/duplicateSaga`` as the reuse policy
    ///   says; ``SagaError/Code-swift.struct/journalUnavailable`` when the journal cannot be
    ///   written (the saga stays unfinished and the next recovery resumes it);
    ///   ``SagaError/Code-swift.struct/suspended`` when the runner shuts down during the run;
    ///   ``SagaError/Code-swift.struct/invalidArgument`` for an empty id.
    public func run<S: Saga>(
        _ saga: S,
        id: String,
        input: S.Input,
        reuse: SagaReusePolicy = .returnExisting,
        deadline: Duration? = nil
    ) async throws(SagaError) -> SagaOutcome<S.Output> {
        switch try await self.begin(saga, id: id, input: input, reuse: reuse) {
        case .existing(let outcome):
            return outcome
        case .resume(let replay, let recordedInput, let payloads, let running):
            // The journal's input, not the caller's: a resumed body must see what it first saw.
            return try await self.execute(
                saga,
                id: id,
                run: replay.run,
                input: recordedInput,
                replay: replay,
                payloads: payloads,
                claimed: running
            )
        case .new(let run, let expected, let running):
            return try await self.execute(
                saga,
                id: id,
                run: run,
                input: input,
                replay: nil,
                claimed: running,
                expected: expected,
                deadline: deadline
            )
        }
    }

    /// Starts the saga in a task the runner owns, and returns once its start is journaled: from
    /// then on it runs to an outcome even if this process dies (the next recovery resumes it).
    /// Read its outcome with ``outcome(_:id:)``.
    /// - Parameters:
    ///   - saga: The saga.
    ///   - id: The saga's id.
    ///   - input: The input.
    ///   - reuse: As for ``run(_:id:input:reuse:deadline:)``; an existing saga is left as it is.
    ///   - deadline: As for ``run(_:id:input:reuse:deadline:)``.
    /// - Throws: As ``run(_:id:input:reuse:deadline:)``.
    public func start<S: Saga>(
        _ saga: S,
        id: String,
        input: S.Input,
        reuse: SagaReusePolicy = .returnExisting,
        deadline: Duration? = nil
    ) async throws(SagaError) {
        switch try await self.begin(saga, id: id, input: input, reuse: reuse) {
        case .existing:
            return
        case .resume(let replay, let recordedInput, let payloads, let running):
            self.spawn { runner throws(SagaError) in
                _ = try await runner.execute(
                    saga,
                    id: id,
                    run: replay.run,
                    input: recordedInput,
                    replay: replay,
                    payloads: payloads,
                    claimed: running
                )
            }
        case .new(let run, let expected, let running):
            let execution = try await self.open(
                saga,
                id: id,
                run: run,
                input: input,
                expected: expected,
                deadline: deadline,
                claimed: running
            )
            self.spawn { runner throws(SagaError) in
                _ = try await runner.drive(saga, execution: execution, input: input, claimed: running)
            }
        }
    }

    enum Beginning<Input: Sendable, Output: Sendable> {
        case existing(SagaOutcome<Output>)
        /// An unfinished run to resume, with the input its journal records and the reader that read
        /// it.
        case resume(SagaReplay, Input, SagaPayloadReader, Running)
        case new(run: Int, expected: ExpectedVersion, Running)
    }

    /// Decides, by the reuse policy and the journal, what a run or start of `id` does, and claims
    /// the saga in this process when it is to run.
    func begin<S: Saga>(
        _ saga: S,
        id: String,
        input: S.Input,
        reuse: SagaReusePolicy
    ) async throws(SagaError)
        -> Beginning<S.Input, S.Output>
    {
        guard !id.isEmpty else { throw SagaError(code: .invalidArgument, message: "a saga's id must not be empty") }
        let (isRegistered, journalSize, instruments) = self.state.withLock { state in
            (
                state.definitions[S.name] != nil,
                state.journalSizes[S.name] ?? SagaJournalHandle.defaultCapacity,
                state.instruments[S.name]
            )
        }
        if !isRegistered { self.register(saga) }
        let stream = SagaRuntime.stream(saga: S.name, id: id)
        while true {
            let claim = try self.claim(stream, capacity: journalSize, instruments: instruments)
            guard let running = claim.claimed else {
                if reuse == .rejectDuplicate {
                    throw SagaError(code: .duplicateSaga, message: "\(S.name) \(id) is already running")
                }
                await claim.other!.wait()
                if Task.isCancelled {
                    throw SagaError(code: .suspended, message: "cancelled while waiting for \(S.name) \(id)")
                }
                continue
            }
            do throws(SagaError) {
                guard let replay = try await self.runtime.journal.load(running.journal) else {
                    return .new(run: 1, expected: .noStream, running)
                }
                if reuse == .rejectDuplicate {
                    throw SagaError(code: .duplicateSaga, message: "\(S.name) \(id) exists (\(replay.phase.rawValue))")
                }
                switch replay.phase {
                case .running:
                    let payloads = SagaPayloadReader(S.self)
                    try payloads.check(replay)
                    let recordedInput = try payloads.decode(
                        S.Input.self,
                        .input,
                        from: replay.input,
                        writtenBy: replay.inputVersion,
                        what: "the input of \(S.name) \(id)"
                    )
                    return .resume(replay, recordedInput, payloads, running)
                case .completed:
                    self.release(stream, running)
                    return .existing(try Self.outcome(S.self, from: replay))
                case .compensated, .resolved:
                    if reuse == .allowAfterFailure {
                        return .new(run: replay.run + 1, expected: .exactly(replay.version), running)
                    }
                    self.release(stream, running)
                    return .existing(try Self.outcome(S.self, from: replay))
                case .needsIntervention:
                    if reuse == .allowAfterFailure {
                        throw SagaError(
                            code: .duplicateSaga,
                            message: "\(S.name) \(id) needs intervention: retry or resolve it before a new run"
                        )
                    }
                    self.release(stream, running)
                    return .existing(try Self.outcome(S.self, from: replay))
                }
            } catch {
                self.release(stream, running)
                throw error
            }
        }
    }

    /// Claims `stream` for a run in this process: the claim, or the run that holds it.
    func claim(
        _ stream: StreamID,
        capacity: Int = SagaJournalHandle.defaultCapacity,
        instruments: SagaInstruments? = nil
    ) throws(SagaError) -> (claimed: Running?, other: Running?) {
        // Looked up before the runner's lock is taken: the journal has a lock of its own.
        let journal = self.runtime.journal.handle(stream, capacity: capacity)
        return try self.state.withLock { state throws(SagaError) in
            if state.isShutDown {
                throw SagaError(code: .suspended, message: "the saga runner is shut down")
            }
            if let other = state.running[stream] { return (nil, other) }
            let running = Running(journal: journal, instruments: instruments)
            state.running[stream] = running
            return (running, nil)
        }
    }

    func release(_ stream: StreamID, _ running: Running) {
        // An in-memory journal's size after the run: the room the next run of the saga gets.
        let size = running.journal.memory.map { memory in memory.entries.withLock { $0.count } }
        let saga = size == nil ? nil : running.state.withLock { $0.execution?.saga }
        self.state.withLock { state in
            if state.running[stream] === running { state.running[stream] = nil }
            if let saga, let size, size > 0 { state.journalSizes[saga] = size }
        }
        running.finish()
    }

    func instruments(for saga: String) -> SagaInstruments {
        if let made = self.state.withLock({ $0.instruments[saga] }) { return made }
        let made = SagaInstruments(self.runtime.telemetry, saga: saga)
        return self.state.withLock { state in
            if let existing = state.instruments[saga] { return existing }
            state.instruments[saga] = made
            return made
        }
    }

    /// Journals a new run's start and makes its execution.
    func open<S: Saga>(
        _ saga: S,
        id: String,
        run: Int,
        input: S.Input,
        expected: ExpectedVersion,
        deadline: Duration?,
        claimed running: Running
    ) async throws(SagaError) -> SagaExecution {
        let stream = running.journal.stream
        do throws(SagaError) {
            let execution = self.makeExecution(
                S.name,
                id: id,
                run: run,
                version: S.version,
                replay: nil,
                payloads: SagaPayloadReader(S.self),
                claimed: running
            )
            var entry = execution.entry(.started)
            entry.saga = S.name
            entry.id = id
            if S.version != 1 { entry.sagaVersion = S.version }
            entry.payload = try self.runtime.journal.record(input, what: "the input of \(S.name) \(id)")
            if let deadline {
                let (seconds, attoseconds) = deadline.components
                entry.dueTime = entry.time + seconds * 1_000_000_000 + attoseconds / 1_000_000_000
            }
            do {
                try await self.runtime.journal.append(
                    entry,
                    to: stream,
                    expecting: expected,
                    random: self.runtime.random,
                    memoryStream: running.journal.memory
                )
            } catch  where error.isConflict {
                throw SagaError(code: .duplicateSaga, message: "\(S.name) \(id) was started elsewhere at the same time")
            } catch {
                throw error.sagaError("cannot start \(S.name) \(id)")
            }
            execution.instruments.started.increment(by: 1)
            execution.deadline = entry.dueTime
            return execution
        } catch {
            self.release(stream, running)
            throw error
        }
    }

    func makeExecution(
        _ saga: String,
        id: String,
        run: Int,
        version: Int,
        replay: SagaReplay?,
        payloads: SagaPayloadReader,
        claimed running: Running
    )
        -> SagaExecution
    {
        let execution = SagaExecution(
            saga: saga,
            id: id,
            run: run,
            journal: running.journal,
            version: version,
            runtime: self.runtime,
            instruments: running.instruments ?? self.instruments(for: saga),
            replay: replay,
            payloads: payloads
        )
        execution.deadline = replay?.deadline
        running.state.withLock { $0.execution = execution }
        return execution
    }

    /// Runs a saga to its outcome: a new run when `replay` is `nil`, else a resumed one (with the
    /// `payloads` reader that read its input, when the caller made one). The caller has claimed
    /// the saga; the run releases the claim when it finishes.
    func execute<S: Saga>(
        _ saga: S,
        id: String,
        run: Int,
        input: S.Input,
        replay: SagaReplay?,
        payloads: SagaPayloadReader? = nil,
        claimed running: Running,
        expected: ExpectedVersion = .noStream,
        deadline: Duration? = nil
    ) async throws(SagaError) -> SagaOutcome<S.Output> {
        let execution: SagaExecution
        if let replay {
            execution = self.makeExecution(
                S.name,
                id: id,
                run: run,
                version: S.version,
                replay: replay,
                payloads: payloads ?? SagaPayloadReader(S.self),
                claimed: running
            )
        } else {
            execution = try await self.open(
                saga,
                id: id,
                run: run,
                input: input,
                expected: expected,
                deadline: deadline,
                claimed: running
            )
        }
        return try await self.drive(saga, execution: execution, input: input, claimed: running)
    }

    /// Runs the body of an opened execution, then finishes the run: journals its outcome, or
    /// compensates first.
    func drive<S: Saga>(
        _ saga: S,
        execution: SagaExecution,
        input: S.Input,
        claimed running: Running
    )
        async throws(SagaError) -> SagaOutcome<S.Output>
    {
        let stream = execution.stream
        self.adjustInFlight(S.name, by: 1, execution.instruments)
        defer {
            self.adjustInFlight(S.name, by: -1, execution.instruments)
            self.release(stream, running)
        }
        if self.state.withLock({ $0.isShutDown }) { execution.suspend() }
        let outcome: SagaOutcome<S.Output>
        if execution.recordsSpans {
            outcome = try await self.runtime.telemetry.withSpan(
                "saga \(S.name)",
                random: self.runtime.random
            ) { span throws(SagaError) in
                span.setAttribute("saga.id", .string(execution.id))
                span.setAttribute("saga.run", .int(Int64(execution.run)))
                let result = await self.runBody(saga, input: input, execution: execution)
                return try await self.finish(saga, execution: execution, result: result)
            }
        } else if TraceContext.current == nil {
            // No span is recorded, but the saga's steps still share one trace (and correlation
            // id): a new one, as the span would have started.
            let finished = await TraceContext.$current.withValue(.makeRoot(using: self.runtime.random)) {
                () async -> Result<SagaOutcome<S.Output>, SagaError> in
                let result = await self.runBody(saga, input: input, execution: execution)
                do throws(SagaError) {
                    return .success(try await self.finish(saga, execution: execution, result: result))
                } catch {
                    return .failure(error)
                }
            }
            outcome = try finished.get()
        } else {
            // No span is recorded: the steps run in the caller's trace.
            let result = await self.runBody(saga, input: input, execution: execution)
            outcome = try await self.finish(saga, execution: execution, result: result)
        }
        switch outcome {
        case .completed: execution.instruments.completed.increment(by: 1)
        case .compensated: execution.instruments.compensated.increment(by: 1)
        case .needsIntervention(let intervention):
            execution.instruments.needsIntervention.increment(by: 1)
            self.runtime.telemetry.log(.error, source: "keel.saga", "\(intervention)")
        }
        return outcome
    }

    private func adjustInFlight(_ saga: String, by delta: Int, _ instruments: SagaInstruments) {
        guard self.runtime.telemetry.recordsMetrics else { return }
        let count = self.state.withLock { state -> Int in
            state.inFlight[saga, default: 0] += delta
            return state.inFlight[saga]!
        }
        instruments.inFlight.set(Double(count))
    }

    /// The body's result, with the saga's deadline enforced.
    private func runBody<S: Saga>(
        _ saga: S,
        input: S.Input,
        execution: SagaExecution
    ) async -> Result<
        S.Output, any Error
    > {
        let context = SagaContext(execution: execution, scope: execution.root)
        guard let due = execution.deadline else {
            do {
                return .success(try await saga.run(input, saga: context))
            } catch {
                return .failure(error)
            }
        }
        let remaining = due - self.runtime.wallClock.nanosecondsSinceEpoch()
        let clock = self.runtime.clock
        return await withTaskGroup(of: BodyEvent<S.Output>.self) { group in
            group.addTask {
                do {
                    return .body(.success(try await saga.run(input, saga: context)))
                } catch {
                    return .body(.failure(error))
                }
            }
            group.addTask {
                if remaining > 0 {
                    do {
                        try await clock.sleep(for: .nanoseconds(remaining))
                    } catch {
                        return .body(.failure(error))
                    }
                }
                return .deadline
            }
            while let event = await group.next() {
                switch event {
                case .body(let result):
                    group.cancelAll()
                    return result
                case .deadline:
                    // Past the pivot a saga can only go forward: the deadline no longer applies.
                    if !execution.isPastPivot {
                        execution.state.withLock { $0.deadlineExceeded = true }
                        group.cancelAll()
                    }
                }
            }
            return .failure(CancellationError())
        }
    }

    enum BodyEvent<Output: Sendable>: Sendable {
        case body(Result<Output, any Error>)
        case deadline
    }

    /// Journals how the run ended, compensating first when it failed before its pivot.
    private func finish<S: Saga>(
        _ saga: S,
        execution: SagaExecution,
        result: Result<S.Output, any Error>
    )
        async throws(SagaError) -> SagaOutcome<S.Output>
    {
        let unreplayed = execution.unreplayedItems()
        switch result {
        case .success(let output):
            if !unreplayed.isEmpty {
                return try await self.intervene(execution, cause: Self.nondeterminism(unreplayed))
            }
            let (inDoubt, failed) = execution.state.withLock { ($0.inDoubt, $0.failedCompensations) }
            if let cause = inDoubt.first ?? failed.first {
                return try await self.intervene(execution, cause: cause)
            }
            var entry = execution.entry(.finished)
            entry.outcome = .completed
            entry.payload = try self.runtime.journal.record(output, what: "the output of \(S.name) \(execution.id)")
            if execution.version != 1 { entry.sagaVersion = execution.version }
            if try !execution.appendInPlace(entry) { try await execution.append(entry) }
            return .completed(output)
        case .failure(let error):
            if execution.isSuspension(error) {
                throw SagaError(
                    code: .suspended,
                    message: "\(S.name) \(execution.id) stopped for a shutdown; recovery resumes it"
                )
            }
            if let error = error as? SagaError, error.code == .journalUnavailable { throw error }
            var cause = SagaFailure(error, step: nil)
            if cause.isCancellation, execution.state.withLock({ $0.deadlineExceeded }) {
                cause = SagaFailure(
                    step: nil,
                    errorType: "SagaDeadlineExceeded",
                    message: "the saga ran past its deadline"
                )
            }
            if let error = error as? SagaError, error.code == .nondeterminism {
                return try await self.intervene(execution, cause: cause)
            }
            if let unreadable = execution.state.withLock({ $0.unreadable }) {
                // A recorded output it could not read: compensating would undo work for a reading
                // problem (a migration, a newer version's journal), so an operator decides.
                return try await self.intervene(execution, cause: unreadable)
            }
            if !unreplayed.isEmpty {
                return try await self.intervene(execution, cause: Self.nondeterminism(unreplayed))
            }
            if execution.isPastPivot {
                return try await self.intervene(execution, cause: cause)
            }
            await execution.whileNotSuspended { await execution.compensate(execution.root) }
            let (journalFailure, inDoubt, failed) = execution.state.withLock {
                ($0.journalFailure, $0.inDoubt, $0.failedCompensations)
            }
            if let journalFailure { throw journalFailure }
            if execution.isSuspending {
                throw SagaError(
                    code: .suspended,
                    message: "\(S.name) \(execution.id) stopped for a shutdown while compensating"
                )
            }
            if !inDoubt.isEmpty || !failed.isEmpty {
                return try await self.intervene(execution, cause: inDoubt.first ?? cause)
            }
            var entry = execution.entry(.finished)
            entry.outcome = .compensated
            entry.failure = cause
            try await execution.append(entry)
            return .compensated(cause)
        }
    }

    private static func nondeterminism(_ unreplayed: [String]) -> SagaFailure {
        SagaFailure(
            step: nil,
            errorType: "SagaError",
            message:
                "nondeterminism: on replay the body did not reach the recorded items \(unreplayed.joined(separator: ", "))"
        )
    }

    private func intervene<Output>(
        _ execution: SagaExecution,
        cause: SagaFailure
    ) async throws(SagaError)
        -> SagaOutcome<Output>
    {
        var entry = execution.entry(.finished)
        entry.outcome = .needsIntervention
        entry.failure = cause
        try await execution.append(entry)
        let failed = execution.state.withLock { $0.failedCompensations }
        return .needsIntervention(
            SagaIntervention(
                saga: execution.saga,
                id: execution.id,
                run: execution.run,
                cause: cause,
                failedCompensations: failed
            )
        )
    }

    static func outcome<S: Saga>(_ type: S.Type, from replay: SagaReplay) throws(SagaError) -> SagaOutcome<S.Output> {
        let unknown = SagaFailure(step: nil, errorType: "unknown", message: "the journal records no cause")
        switch replay.phase {
        case .completed:
            return .completed(
                try SagaPayloadReader(S.self).decode(
                    S.Output.self,
                    .output,
                    from: replay.output,
                    writtenBy: replay.outputVersion,
                    what: "the output of \(S.name) \(replay.id)"
                )
            )
        case .compensated:
            return .compensated(replay.cause ?? unknown)
        case .needsIntervention, .resolved, .running:
            return .needsIntervention(
                SagaIntervention(
                    saga: replay.saga,
                    id: replay.id,
                    run: replay.run,
                    cause: replay.cause ?? unknown,
                    failedCompensations: replay.failedCompensations
                )
            )
        }
    }

    // MARK: Owned tasks

    private func spawn(_ operation: @escaping @Sendable (SagaRunner) async throws(SagaError) -> Void) {
        self.state.withLock { state in
            let key = state.nextTask
            state.nextTask += 1
            // Owned by the runner: kept in `tasks`, cancelled and awaited by `shutdown()`.
            let task = TaskSpawner.spawn(executor: self.runtime.executor) { [self] in
                do {
                    try await operation(self)
                } catch {
                    if (error as? SagaError)?.code != .suspended {
                        self.runtime.telemetry.log(.error, source: "keel.saga", "a saga stopped unfinished: \(error)")
                    }
                }
                _ = self.state.withLock { $0.tasks.removeValue(forKey: key) }
            }
            state.tasks[key] = task
        }
    }

    // MARK: Recovery

    /// Resumes every unfinished saga in the journal, each in a task the runner owns.
    ///
    /// It reads the runner's whole store once (its cost grows with the store, not with the
    /// number of sagas), and resumes each saga whose latest run has no outcome, and no run in
    /// this process: the body runs again, the recorded steps return their recorded outputs, and
    /// the saga goes on (or compensates) from where it stopped. Wait for a saga with
    /// ``outcome(_:id:)``.
    /// - Returns: The sagas it resumed, as their journals stood.
    /// - Throws: ``SagaError`` with ``SagaError/Code-swift.struct/journalUnavailable`` when the
    ///   store cannot be read; with the journal's error
    ///   (``SagaError/Code-swift.struct/journalCorrupt``,
    ///   ``SagaError/Code-swift.struct/journalFromNewerVersion``) when an unfinished saga's journal
    ///   cannot be read, or ``SagaError/Code-swift.struct/unknownSaga`` when its type is not
    ///   registered — in both cases after the others were resumed.
    @discardableResult
    public func recover() async throws(SagaError) -> [SagaStatus] {
        var resumed: [SagaStatus] = []
        var unknown: [String] = []
        var unreadable: [SagaError] = []
        for stream in try await self.scan().filter({ $0.value == .running }).map(\.key).sorted() {
            // Claimed before the journal is read: a run that finishes the saga in the meantime
            // cannot leave this recovery a stale journal to run again.
            guard let running = try self.claim(stream).claimed else { continue }
            let replay: SagaReplay
            do throws(SagaError) {
                guard let loaded = try await self.runtime.journal.load(stream),
                    loaded.phase == .running
                else {
                    self.release(stream, running)
                    continue
                }
                replay = loaded
            } catch {
                // One damaged journal does not keep the others from being resumed.
                self.release(stream, running)
                unreadable.append(error)
                continue
            }
            guard let definition = self.state.withLock({ $0.definitions[replay.saga] }) else {
                self.release(stream, running)
                unknown.append("\(replay.saga) \(replay.id)")
                continue
            }
            do throws(SagaError) {
                // A run that a newer version of the saga journaled is left for that version.
                try definition.payloads.check(replay)
            } catch {
                self.release(stream, running)
                unreadable.append(error)
                continue
            }
            resumed.append(replay.status)
            self.runtime.telemetry.log(
                .notice,
                source: "keel.saga",
                "resuming \(replay.saga) \(replay.id) (run \(replay.run))"
            )
            // The claim made here passes to the task, which releases it when the saga finishes.
            self.spawn { runner throws(SagaError) in
                _ = try await definition.resume(runner, replay, running)
            }
        }
        if let first = unreadable.first {
            throw SagaError(
                code: first.code,
                message:
                    "\(unreadable.count) unfinished saga journal(s) could not be read; the others were resumed: "
                    + unreadable.map(\.message).joined(separator: "; "),
                underlying: first
            )
        }
        if !unknown.isEmpty {
            throw SagaError(
                code: .unknownSaga,
                message: "no saga is registered for the unfinished \(unknown.joined(separator: ", "))"
            )
        }
        return resumed
    }

    /// Every saga journal in the store, with its latest phase, from one pass over the store.
    func scan() async throws(SagaError) -> [StreamID: SagaStatus.Phase] {
        try await self.runtime.journal.phases()
    }

    // MARK: Inspection and operators

    /// The outcome of the saga `id` of type `type`: waits for it when it runs in this process.
    /// - Parameters:
    ///   - type: The saga's type.
    ///   - id: The saga's id.
    /// - Returns: The outcome.
    /// - Throws: ``SagaError`` with ``SagaError/Code-swift.struct/notFound`` when the journal has
    ///   no such saga, with ``SagaError/Code-swift.struct/suspended`` when it is unfinished and
    ///   not running here (recovery resumes it), or when the calling task is cancelled while
    ///   waiting.
    public func outcome<S: Saga>(_ type: S.Type, id: String) async throws(SagaError) -> SagaOutcome<S.Output> {
        let stream = SagaRuntime.stream(saga: S.name, id: id)
        if let running = self.state.withLock({ $0.running[stream] }) {
            await running.wait()
            if Task.isCancelled {
                throw SagaError(code: .suspended, message: "cancelled while waiting for \(S.name) \(id)")
            }
        }
        guard let replay = try await self.runtime.journal.load(stream) else {
            throw SagaError(code: .notFound, message: "no saga \(S.name) \(id) in the journal")
        }
        if replay.phase == .running {
            throw SagaError(
                code: .suspended,
                message: "\(S.name) \(id) is unfinished and not running; recovery resumes it"
            )
        }
        return try Self.outcome(S.self, from: replay)
    }

    /// Where the saga `id` named `saga` stands, by its journal.
    /// - Parameters:
    ///   - saga: The saga's type name.
    ///   - id: The saga's id.
    /// - Returns: Its status, or `nil` when the journal has no such saga.
    /// - Throws: ``SagaError`` when the journal cannot be read.
    public func status(_ saga: String, id: String) async throws(SagaError) -> SagaStatus? {
        try await self.runtime.journal.load(SagaRuntime.stream(saga: saga, id: id))?.status
    }

    /// Every saga that needs an operator, oldest journal first.
    /// - Returns: The interventions.
    /// - Throws: ``SagaError`` when the journal cannot be read.
    public func interventions() async throws(SagaError) -> [SagaIntervention] {
        var found: [SagaIntervention] = []
        for stream in try await self.scan().filter({ $0.value == .needsIntervention }).map(\.key).sorted() {
            guard let replay = try await self.runtime.journal.load(stream),
                replay.phase == .needsIntervention
            else { continue }
            found.append(
                SagaIntervention(
                    saga: replay.saga,
                    id: replay.id,
                    run: replay.run,
                    cause: replay.cause ?? SagaFailure(step: nil, errorType: "unknown", message: ""),
                    failedCompensations: replay.failedCompensations
                )
            )
        }
        return found
    }

    /// An operator's retry of a saga that needs intervention: its failed compensations run
    /// again, and its failed retriable steps past the pivot are attempted again, in the calling
    /// task.
    /// - Parameters:
    ///   - type: The saga's type (registered with this runner, or given here).
    ///   - id: The saga's id.
    /// - Returns: The new outcome.
    /// - Throws: ``SagaError`` with ``SagaError/Code-swift.struct/notInIntervention`` when the saga
    ///   does not need intervention, ``SagaError/Code-swift.struct/notFound`` when there is none.
    public func retry<S: Saga>(_ type: S.Type, id: String) async throws(SagaError) -> SagaOutcome<S.Output> {
        let stream = SagaRuntime.stream(saga: S.name, id: id)
        let running = try self.claimForOperator(stream, S.name, id)
        do throws(SagaError) {
            guard let replay = try await self.runtime.journal.load(stream) else {
                throw SagaError(code: .notFound, message: "no saga \(S.name) \(id) in the journal")
            }
            guard replay.phase == .needsIntervention else {
                throw SagaError(code: .notInIntervention, message: "\(S.name) \(id) is \(replay.phase.rawValue)")
            }
            guard let definition = self.state.withLock({ $0.definitions[S.name] }) else {
                throw SagaError(code: .unknownSaga, message: "\(S.name) is not registered with this runner")
            }
            var entry = SagaJournalEntry(
                kind: .reopened,
                run: replay.run,
                time: self.runtime.wallClock.nanosecondsSinceEpoch()
            )
            entry.note = "retry"
            try await self.appendOperatorEntry(entry, to: stream)
            guard let reopened = try await self.runtime.journal.load(stream) else {
                throw SagaError(code: .notFound, message: "no saga \(S.name) \(id) in the journal")
            }
            // The claim passes to the run, which releases it when it finishes.
            _ = try await definition.resume(self, reopened, running)
            return try await self.outcome(S.self, id: id)
        } catch {
            self.release(stream, running)
            throw error
        }
    }

    /// An operator's resolution of a saga that needs intervention: it is recorded as resolved
    /// (with `note`) and leaves ``interventions()``; nothing runs.
    /// - Parameters:
    ///   - saga: The saga's type name.
    ///   - id: The saga's id.
    ///   - note: What the operator did, for the journal.
    /// - Throws: ``SagaError`` with ``SagaError/Code-swift.struct/notInIntervention`` when the saga
    ///   does not need intervention, ``SagaError/Code-swift.struct/notFound`` when there is none.
    public func resolve(_ saga: String, id: String, note: String) async throws(SagaError) {
        let stream = SagaRuntime.stream(saga: saga, id: id)
        let running = try self.claimForOperator(stream, saga, id)
        defer { self.release(stream, running) }
        guard let replay = try await self.runtime.journal.load(stream) else {
            throw SagaError(code: .notFound, message: "no saga \(saga) \(id) in the journal")
        }
        guard replay.phase == .needsIntervention else {
            throw SagaError(code: .notInIntervention, message: "\(saga) \(id) is \(replay.phase.rawValue)")
        }
        var entry = SagaJournalEntry(
            kind: .resolved,
            run: replay.run,
            time: self.runtime.wallClock.nanosecondsSinceEpoch()
        )
        entry.note = note
        try await self.appendOperatorEntry(entry, to: stream)
    }

    private func claimForOperator(_ stream: StreamID, _ saga: String, _ id: String) throws(SagaError) -> Running {
        guard let running = try self.claim(stream).claimed else {
            throw SagaError(code: .notInIntervention, message: "\(saga) \(id) is running")
        }
        return running
    }

    private func appendOperatorEntry(_ entry: SagaJournalEntry, to stream: StreamID) async throws(SagaError) {
        do {
            try await self.runtime.journal.append(entry, to: stream, expecting: .any, random: self.runtime.random)
        } catch {
            throw error.sagaError("cannot append \(entry.kind) to \(stream)")
        }
    }

    // MARK: Signals

    /// Sends the signal `name` to the saga `id` named `saga`: journals it, and wakes the saga if it
    /// waits for it in this process (``SagaContext/waitForSignal(_:as:timeout:)``). A saga that
    /// reaches the wait later, or is resumed after a restart, finds it in its journal. Only the
    /// first signal of a name counts in a run, so sending one twice (a redelivered event) is
    /// harmless.
    /// - Parameters:
    ///   - saga: The saga's type name.
    ///   - id: The saga's id.
    ///   - name: The signal's name.
    ///   - payload: What the signal carries.
    /// - Throws: ``SagaError`` with ``SagaError/Code-swift.struct/notFound`` when the journal has no
    ///   such saga, with ``SagaError/Code-swift.struct/journalUnavailable`` when it cannot be
    ///   written.
    public func signal<Payload: Encodable & Sendable>(
        _ saga: String,
        id: String,
        name: String,
        payload: Payload
    ) async throws(SagaError) {
        let stream = SagaRuntime.stream(saga: saga, id: id)
        guard let replay = try await self.runtime.journal.load(stream) else {
            throw SagaError(code: .notFound, message: "no saga \(saga) \(id) to signal \(name)")
        }
        var entry = SagaJournalEntry(
            kind: .signalSent,
            run: replay.run,
            time: self.runtime.wallClock.nanosecondsSinceEpoch()
        )
        entry.name = name
        // As JSON text in every journal: a payload need only be `Encodable`.
        entry.payload = .json(try SagaPayload.encode(payload, what: "the signal \(name)"))
        try await self.appendOperatorEntry(entry, to: stream)
        self.runtime.mailbox.wake(stream)
    }

    // MARK: Shutdown

    /// Stops the runner: its sagas stop at their next step (a running step finishes; retry
    /// loops and compensations are cancelled between attempts), unfinished in the journal, for
    /// the next ``recover()``; the tasks the runner owns are awaited. Calls after it throw
    /// ``SagaError/Code-swift.struct/suspended``.
    public func shutdown() async {
        let (executions, tasks) = self.state.withLock { state in
            state.isShutDown = true
            return (
                state.running.values.compactMap { $0.state.withLock { $0.execution } },
                Array(state.tasks.values)
            )
        }
        for execution in executions { execution.suspend() }
        for task in tasks { task.cancel() }
        for task in tasks { await task.value }
    }
}
