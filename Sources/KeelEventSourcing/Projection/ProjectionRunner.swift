import KeelCore
import Synchronization

/// Feeds a ``Projection`` every event of an ``EventStore`` in global order, committing the read
/// model and the checkpoint together.
///
/// The runner reads the store from its persisted checkpoint in pages
/// (``EventStore/readAll(from:limit:)``), first the events already stored (catch-up), then each
/// new one as it is appended (live, waiting with ``EventStore/waitForHead(beyond:)`` rather than
/// polling). For each page it calls the projection once per event, then commits all the page's
/// read-model writes and the checkpoint past the page in one atomic batch of its
/// ``ProjectionStore``. A crash at any point leaves a read model that includes exactly the
/// events before the stored checkpoint; on restart the runner goes on from there, so no event
/// is applied twice and none is skipped.
///
/// A page's commit runs while the runner reads and handles the next page, so the store's write
/// and `fsync` overlap the projection's work. The next page reads the committing page's writes
/// before the store, and is committed only once that commit succeeded: commits stay in page
/// order, and when one fails the runner discards the page after it and fails. The checkpoint is
/// published (and ``waitUntilCaughtUp(to:)`` callers resumed) only when its commit returned.
///
/// ```swift
/// let runner = ProjectionRunner(
///     projection: UsersByEmailDomain(serializer: serializer),
///     eventStore: store,
///     projectionStore: ProjectionStore(keyValueStore: stateStore.namespace("users-by-email-domain"))
/// )
/// await runner.start()
/// let saved = try await users.execute("42", expecting: .new) { user in
///     try user.register(email: "ada@example.com", name: "Ada")
/// }
/// try await runner.waitUntilCaughtUp(to: saved.positions.upperBound - 1)  // read your write
/// let atExample = await runner.projectionStore.keys(withPrefix: "domain/example.com/")
/// await runner.stop()
/// ```
///
/// **Lifecycle.** Either call ``run()`` from a task you own (it returns when that task is
/// cancelled), or ``start()`` and ``stop()``, which run it in a task the runner owns, cancel it
/// and await it. **Poison events** are retried and then parked or stop the runner, as the
/// ``Configuration`` says. **Consistency**: the read model trails the store;
/// ``waitUntilCaughtUp(to:)`` waits until it includes a position, and ``lag()`` says how far
/// behind it is.
public actor ProjectionRunner {
    /// The projection's name.
    public nonisolated let name: String
    /// Where the read model, checkpoint and parked events live.
    public nonisolated let projectionStore: ProjectionStore
    /// The configuration.
    public nonisolated let configuration: Configuration

    private let projection: any Projection
    private let eventStore: any EventStore
    private let sleep: @Sendable (Duration) async throws -> Void
    /// Where the jitter of ``Configuration/backoff`` is drawn from.
    private let random: RandomSource
    /// The task executor preference of the task ``start()`` makes.
    private let executor: (any TaskExecutor)?
    /// The published checkpoint and the ``waitUntilCaughtUp(to:)`` callers; a lock so that a
    /// cancellation handler can resume a waiter without hopping onto the actor.
    private let progress = Lock(CaughtUpWaiters())

    /// Where poison events are logged.
    private let telemetry: any Telemetry
    private var isRunning = false
    /// The task ``start()`` made; cancelled and awaited by ``stop()``.
    private var runTask: Task<Void, Never>?
    private var failure: ProjectionError?
    /// Whether a page or a parked-event retry is being handled and committed; the two never
    /// interleave, so neither reads a read model the other is halfway through changing.
    private var isBusy = false
    private var turnWaiters: [CheckedContinuation<Void, Never>] = []

    /// Creates a runner; it does nothing until ``start()`` or ``run()``.
    /// - Parameters:
    ///   - projection: The projection.
    ///   - eventStore: The store to read.
    ///   - projectionStore: Where to keep the read model and checkpoint; used by this runner
    ///     alone.
    ///   - configuration: Paging, retries and the poison-event policy.
    ///   - clock: The clock backoff pauses sleep on; default `ContinuousClock`.
    ///   - random: Where the backoff's jitter is drawn from; pass the host's source so that a
    ///     seeded run repeats. By default a new source seeded from the system's generator.
    ///   - executor: The task executor preference of the task ``start()`` makes (a host passes
    ///     its own, so that a whole host can run on one executor); `nil`, the default, runs it on
    ///     the global concurrent executor.
    ///   - telemetry: Where the runner logs a parked poison event, or a poison event that stops
    ///     it, at ``/KeelCore/LogLevel/error`` (source `keel.projection`; metadata `projection`,
    ///     `position`, `stream`, `eventType`, `attempts`, `error`). By default nothing is logged.
    public init(
        projection: some Projection,
        eventStore: any EventStore,
        projectionStore: ProjectionStore,
        configuration: Configuration = Configuration(),
        clock: some Clock<Duration> = ContinuousClock(),
        random: RandomSource = RandomSource(),
        executor: (any TaskExecutor)? = nil,
        telemetry: any Telemetry = NoOpTelemetry()
    ) {
        precondition(configuration.pageSize >= 1, "pageSize must be at least 1")
        precondition(configuration.maxAttempts >= 1, "maxAttempts must be at least 1")
        self.name = projection.name
        self.projection = projection
        self.eventStore = eventStore
        self.projectionStore = projectionStore
        self.configuration = configuration
        self.sleep = { duration in try await clock.sleep(for: duration) }
        self.random = random
        self.executor = executor
        self.telemetry = telemetry
    }

    // MARK: Lifecycle

    /// Whether the runner is running.
    public var running: Bool { self.isRunning }

    /// The error the last run ended with, if it failed; cleared when a run starts.
    public var lastFailure: ProjectionError? { self.failure }

    /// Runs the projection until the calling task is cancelled: loads the checkpoint, catches
    /// up, then follows new events.
    ///
    /// Cancellation ends it cleanly: a page in progress is discarded (it was not committed, and
    /// is handled again by the next run) and the call returns. Callers waiting in
    /// ``waitUntilCaughtUp(to:)`` then fail with ``ProjectionError/Code/stopped``.
    /// - Throws: ``ProjectionError`` with ``ProjectionError/Code/alreadyRunning``,
    ///   ``ProjectionError/Code/handlerFailed`` (a poison event under
    ///   ``PoisonEventPolicy/stop``), ``ProjectionError/Code/storage`` or
    ///   ``ProjectionError/Code/eventStore``.
    public func run() async throws(ProjectionError) {
        guard !self.isRunning else {
            throw ProjectionError(code: .alreadyRunning, projection: self.name, message: "the runner is running")
        }
        self.markRunning()
        try await self.runMarked()
    }

    private func markRunning() {
        self.isRunning = true
        self.failure = nil
        self.progress.withLock { $0.markRunning() }
    }

    /// The body of ``run()``, once the runner is marked running.
    private func runMarked() async throws(ProjectionError) {
        let result = await self.loop()
        self.isRunning = false
        let waiters = self.progress.withLock { $0.markStopped() }
        let stopped: ProjectionError
        switch result {
        case .success:
            stopped = ProjectionError(code: .stopped, projection: self.name, message: "the runner stopped")
        case .failure(let error):
            self.failure = error
            stopped = error
        }
        for waiter in waiters {
            waiter.resume(throwing: stopped)
        }
        try result.get()
    }

    /// Starts ``run()`` in a task the runner owns and returns; does nothing when running.
    ///
    /// The runner counts as running when this returns, so ``waitUntilCaughtUp(to:)`` may be
    /// called at once. A failure ends the task; read it from ``lastFailure``. The task prefers
    /// the executor given to ``init(projection:eventStore:projectionStore:configuration:clock:random:executor:telemetry:)``.
    public func start() async {
        if let task = self.runTask {
            if self.isRunning { return }
            await task.value
            if self.runTask == task { self.runTask = nil }
            if self.runTask != nil || self.isRunning { return }  // another start won meanwhile
        }
        // Unstructured on purpose: the runner outlives the caller of `start()`. It owns the task:
        // `stop()` cancels it and awaits it.
        self.markRunning()
        self.runTask = TaskSpawner.spawn(executor: self.executor) { [self] in try? await self.runMarked() }
    }

    /// Cancels the task ``start()`` made and waits until it has ended. Concurrent calls all
    /// wait for the same task; with nothing started it returns at once.
    public func stop() async {
        guard let task = self.runTask else { return }
        task.cancel()
        await task.value
        if self.runTask == task { self.runTask = nil }
    }

    /// Resets the read model, the checkpoint and the parked events in one atomic commit and
    /// replays every event from position 0.
    ///
    /// A running runner is stopped first and started again afterwards; a stopped one stays
    /// stopped (the replay happens at its next start). Until the replay catches up, queries see
    /// a partial read model: to rebuild without that, run a second runner into a new namespace
    /// and switch readers when it has caught up.
    /// - Throws: ``ProjectionError`` with ``ProjectionError/Code/storage`` when the reset fails
    ///   (then nothing changed, and a runner that was running is running again), or
    ///   ``ProjectionError/Code/alreadyRunning`` when the runner is running in a caller's
    ///   ``run()``, which `rebuild` cannot stop: cancel that task first.
    public func rebuild() async throws(ProjectionError) {
        if self.isRunning && self.runTask == nil {
            throw ProjectionError(
                code: .alreadyRunning,
                projection: self.name,
                message: "the runner is running in a caller's run(); cancel it before rebuilding"
            )
        }
        let wasStarted = self.runTask != nil && self.isRunning
        await self.stop()
        var resetError: ProjectionError?
        do {
            try await self.projectionStore.reset()
            let ready = self.progress.withLock { $0.advance(to: 0) }
            precondition(ready.isEmpty, "waiters parked on a stopped runner")
        } catch {
            resetError = self.storageError(error, "cannot reset the read model")
        }
        if wasStarted { await self.start() }
        if let resetError { throw resetError }
    }

    // MARK: Progress

    /// The position of the first event the read model does not include: the stored checkpoint,
    /// or further when the runner has since passed events that change nothing (the key-value
    /// store's own events, when it shares the event store) or positions its store hides from it
    /// (the events of other namespaces or types, under a filtered view).
    /// - Returns: The checkpoint.
    /// - Throws: ``ProjectionError`` with ``ProjectionError/Code/storage``.
    public func checkpoint() async throws(ProjectionError) -> UInt64 {
        do {
            let stored = try await self.projectionStore.checkpoint()
            return max(stored, self.progress.withLock { $0.checkpoint })
        } catch {
            throw self.storageError(error, "cannot read the checkpoint")
        }
    }

    /// How many events the store holds that the read model does not include yet: the store's
    /// head position minus the checkpoint.
    /// - Returns: The lag, 0 when caught up.
    /// - Throws: ``ProjectionError`` with ``ProjectionError/Code/storage`` or
    ///   ``ProjectionError/Code/eventStore``.
    public func lag() async throws(ProjectionError) -> UInt64 {
        let checkpoint = try await self.checkpoint()
        let head: UInt64
        do {
            head = try await self.eventStore.headPosition()
        } catch {
            throw ProjectionError(
                code: .eventStore,
                projection: self.name,
                message: "cannot read the head",
                cause: error
            )
        }
        return head > checkpoint ? head - checkpoint : 0
    }

    /// Suspends until the read model includes the event at `position` (the checkpoint is past
    /// it): read-your-writes after an append.
    ///
    /// Returns at once when it already does. Otherwise the caller is parked, without polling,
    /// and resumed by the runner's commit that moves the checkpoint past `position`. A parked
    /// or soon-to-park call is cancellable: cancelling its task resumes it at once with
    /// `CancellationError`.
    /// - Parameter position: A global position, such as the last of
    ///   ``AppendResult/positions``.
    /// - Throws: `CancellationError`; ``ProjectionError`` with
    ///   ``ProjectionError/Code/notRunning`` when the runner is not running and has not reached
    ///   `position`, ``ProjectionError/Code/stopped`` when it stops while the caller waits, or
    ///   the error its last run failed with (while it waits, or when it is not running).
    public func waitUntilCaughtUp(to position: UInt64) async throws {
        if !self.isRunning {
            // The published checkpoint may be stale while stopped: ask the store.
            if try await self.checkpoint() > position { return }
            if !self.isRunning { throw self.notRunningError(position) }
        }
        let notRunning = self.notRunningError(position)
        let id = self.progress.withLock { $0.makeID() }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CaughtUpWaiters.Continuation) in
                let action = self.progress.withLock {
                    $0.wait(id: id, beyond: position, isCancelled: Task.isCancelled, continuation: continuation)
                }
                switch action {
                case .resume: continuation.resume()
                case .cancel: continuation.resume(throwing: CancellationError())
                case .fail: continuation.resume(throwing: notRunning)
                case .suspend: break
                }
            }
        } onCancel: {
            let waiter = self.progress.withLock { $0.cancel(id: id) }
            waiter?.resume(throwing: CancellationError())
        }
    }

    // MARK: Parked events

    /// The parked poison events, by position.
    /// - Returns: The parked events.
    /// - Throws: ``ProjectionError`` with ``ProjectionError/Code/storage``.
    public func parkedEvents() async throws(ProjectionError) -> [ParkedEvent] {
        do {
            return try await self.projectionStore.parkedEvents()
        } catch {
            throw self.storageError(error, "cannot read the parked events")
        }
    }

    /// Calls the projection once more with the parked event at `position`.
    ///
    /// On success its writes are committed and the parked event removed, atomically; on failure
    /// the parked event's error and attempt count are updated. The retry takes its turn with the
    /// running page, so the two never interleave. The checkpoint does not move.
    /// - Parameter position: The parked event's position.
    /// - Returns: Whether the projection handled the event.
    /// - Throws: ``ProjectionError`` with ``ProjectionError/Code/parkedEventNotFound``,
    ///   ``ProjectionError/Code/storage`` or ``ProjectionError/Code/eventStore``.
    @discardableResult
    public func retryParkedEvent(at position: UInt64) async throws(ProjectionError) -> Bool {
        await self.takeTurn()
        let result = await self.retry(position)
        self.endTurn()
        return try result.get()
    }

    private func retry(_ position: UInt64) async -> Result<Bool, ProjectionError> {
        do {
            guard var parked = try await self.parkedEvents().first(where: { $0.position == position }) else {
                throw ProjectionError(
                    code: .parkedEventNotFound,
                    projection: self.name,
                    position: position,
                    message: "no event is parked at this position"
                )
            }
            let event = try await self.readPage(from: position, limit: 1).first
            guard let event, event.position == position else {
                throw ProjectionError(
                    code: .eventStore,
                    projection: self.name,
                    position: position,
                    message: "the store holds no event at this position"
                )
            }
            var transaction = ReadModelTransaction(store: self.projectionStore, earlier: [:])
            do {
                try await self.projection.apply(event, to: &transaction)
            } catch {
                parked.attempts += 1
                parked.error = String(describing: error)
                try await self.commit(KeyValueBatch(), checkpoint: nil, parking: [parked], removing: [])
                return .success(false)
            }
            try await self.commit(transaction.batch, checkpoint: nil, parking: [], removing: [position])
            return .success(true)
        } catch let error as ProjectionError {
            return .failure(error)
        } catch {
            preconditionFailure("unexpected error \(error)")
        }
    }

    // MARK: The loop

    /// A handled page, ready to commit.
    private struct HandledPage: Sendable {
        /// The page's writes, in order.
        var writes = KeyValueBatch()
        /// The page's writes by key (`nil`: deleted), which the next page reads before the store.
        var overlay: [String: [UInt8]?] = [:]
        var parked: [ParkedEvent] = []
        /// The position after the page's last event: the checkpoint its commit stores.
        var next: UInt64
        /// Whether the page held only the key-value store's own events: nothing to commit.
        var isInternal = true
    }

    private enum PageOutcome {
        case handled(HandledPage)
        /// The poison event under ``PoisonEventPolicy/stop``: the events before it are in the page.
        case poisoned(HandledPage, ProjectionError)
        case cancelled
    }

    /// The page whose commit runs, in the loop's task group, while the next page is handled.
    private struct InFlight {
        /// The committed page's writes, which the next page reads before the store.
        let overlay: [String: [UInt8]?]
        /// The checkpoint to publish once the commit returns: the page's, or later over pages of
        /// the key-value store's own events handled meanwhile.
        var publishes: UInt64
    }

    private typealias Commits = TaskGroup<Result<Void, ProjectionError>>

    private func loop() async -> Result<Void, ProjectionError> {
        let checkpoint: UInt64
        do {
            checkpoint = try await self.checkpoint()
        } catch {
            return .failure(error)
        }
        self.publish(checkpoint)
        return await withTaskGroup(of: Result<Void, ProjectionError>.self) { commits in
            var inFlight: InFlight?
            var holdsTurn = false
            let result = await self.follow(from: checkpoint, &commits, &inFlight, &holdsTurn)
            // Every exit settles the commit in flight: its page was handled whole, so a success
            // moves the checkpoint even when the loop was cancelled.
            let settled = await self.settle(&inFlight, &commits)
            if holdsTurn { self.endTurn() }
            if case .failure = result { return result }
            if let settled { return .failure(settled) }
            return result
        }
    }

    /// Reads, handles and commits pages until cancelled or failed.
    ///
    /// Page N's commit runs in `commits` while page N+1 is read and handled, so the state store's
    /// write and `fsync` overlap the projection's work. Page N+1 reads page N's writes from its
    /// overlay until they are committed, and is committed only after page N's commit succeeded:
    /// commits stay in order, and when one fails the page after it is discarded. The loop holds
    /// the turn while it handles pages and a commit is in flight; it settles the commit and lets
    /// a waiting parked-event retry go between pages, and before it waits for new events.
    private func follow(
        from start: UInt64,
        _ commits: inout Commits,
        _ inFlight: inout InFlight?,
        _ holdsTurn: inout Bool
    ) async -> Result<Void, ProjectionError> {
        var checkpoint = start
        // Where reading goes on: the checkpoint, or past it over positions that the store hides
        // from this runner (a filtered view), which it would otherwise wait for forever.
        var cursor = start
        while !Task.isCancelled {
            if holdsTurn && !self.turnWaiters.isEmpty {
                if let failure = await self.settle(&inFlight, &commits) { return .failure(failure) }
                self.endTurn()
                holdsTurn = false
            }
            let head: UInt64
            do {
                head = try await self.eventStore.headPosition()
            } catch {
                if Task.isCancelled { return .success(()) }
                return .failure(
                    ProjectionError(
                        code: .eventStore,
                        projection: self.name,
                        message: "cannot read the head",
                        cause: error
                    )
                )
            }
            let page: [RecordedEvent]
            do {
                page = try await self.readPage(from: cursor, limit: self.configuration.pageSize)
            } catch {
                return Task.isCancelled ? .success(()) : .failure(error)
            }
            if page.isEmpty {
                // Nothing visible before `head`: settle, let others take their turn, and wait
                // until the store holds an event at or after it, or for cancellation.
                if let failure = await self.settle(&inFlight, &commits) { return .failure(failure) }
                if holdsTurn {
                    self.endTurn()
                    holdsTurn = false
                }
                cursor = Swift.max(cursor, head)
                // Every event before `head` that this runner sees is committed, so the read model
                // includes every position before it: publish that, so that a caller waiting for a
                // position the store hides from this runner (another namespace's event, under a
                // filtered view) is not kept waiting for the next event the runner sees.
                if cursor > checkpoint { self.publish(cursor) }
                await self.eventStore.waitForHead(beyond: cursor)
                continue
            }
            if !holdsTurn {
                await self.takeTurn()
                holdsTurn = true
            }
            switch await self.handle(page, from: checkpoint, committing: inFlight?.overlay ?? [:]) {
            case .cancelled:
                return .success(())
            case .poisoned(let handled, let error):
                if let failure = await self.settle(&inFlight, &commits) { return .failure(failure) }
                if let failure = await self.commitOrFail(handled.writes, handled.next, handled.parked) {
                    return .failure(failure)
                }
                self.publish(handled.next)
                return .failure(error)
            case .handled(let handled):
                checkpoint = handled.next
                cursor = Swift.max(cursor, handled.next)
                // A page of key-value events alone is not committed: committing it would append
                // another such event, and the runner would chase its own tail. Re-reading them
                // after a restart changes nothing.
                if handled.isInternal {
                    if inFlight == nil { self.publish(handled.next) } else { inFlight?.publishes = handled.next }
                    continue
                }
                if let failure = await self.settle(&inFlight, &commits) { return .failure(failure) }
                let store = self.projectionStore
                let name = self.name
                commits.addTask {
                    do {
                        try await store.commit(
                            handled.writes,
                            checkpoint: handled.next,
                            parking: handled.parked,
                            removing: []
                        )
                        return .success(())
                    } catch {
                        return .failure(
                            ProjectionError(
                                code: .storage,
                                projection: name,
                                message: "cannot commit the read model",
                                cause: error
                            )
                        )
                    }
                }
                inFlight = InFlight(overlay: handled.overlay, publishes: handled.next)
            }
        }
        return .success(())
    }

    /// Waits for the commit in flight, if any, and publishes its checkpoint when it succeeded.
    /// - Returns: The commit's error, if it failed.
    private func settle(_ inFlight: inout InFlight?, _ commits: inout Commits) async -> ProjectionError? {
        guard let settling = inFlight else { return nil }
        inFlight = nil
        guard let result = await commits.next() else { preconditionFailure("a commit in flight without a task") }
        switch result {
        case .success:
            self.publish(settling.publishes)
            return nil
        case .failure(let error):
            return error
        }
    }

    /// Calls the projection for each event of `page`, which reads `committing` (the writes of the
    /// page whose commit is in flight) before the store.
    private func handle(
        _ page: [RecordedEvent],
        from checkpoint: UInt64,
        committing: [String: [UInt8]?]
    ) async -> PageOutcome {
        var handled = HandledPage(next: checkpoint)
        for event in page {
            if event.stream.category == EventStoreKeyValueStore.streamCategory {
                // The read model's own commits, when the key-value store shares the event store.
                handled.next = event.position + 1
                continue
            }
            handled.isInternal = false
            var attempt = 1
            // Made at the first failure: most events never need it.
            var delays: Backoff.Delays?
            while true {
                var transaction = ReadModelTransaction(
                    store: self.projectionStore,
                    earlier: handled.overlay,
                    committing: committing
                )
                do {
                    try await self.projection.apply(event, to: &transaction)
                    handled.writes.append(contentsOf: transaction.batch)
                    let changed = transaction.writes
                    // Let go of the transaction's reference to the overlay first: merging into a
                    // shared dictionary would copy all of it, once per event.
                    transaction = ReadModelTransaction(store: self.projectionStore, earlier: [:])
                    handled.overlay.merge(changed) { _, new in new }
                    break
                } catch {
                    if error is CancellationError || Task.isCancelled { return .cancelled }
                    if attempt < self.configuration.maxAttempts {
                        if delays == nil { delays = self.configuration.backoff.makeDelays(using: self.random) }
                        let delay = delays?.next() ?? .zero
                        if delay > .zero {
                            do {
                                try await self.sleep(delay)
                            } catch {
                                return .cancelled
                            }
                        }
                        attempt += 1
                        continue
                    }
                    self.logPoison(event, error: error, attempts: attempt)
                    if self.configuration.poisonEvents == .stop {
                        return .poisoned(
                            handled,
                            ProjectionError(
                                code: .handlerFailed,
                                projection: self.name,
                                position: event.position,
                                message: "the projection failed \(attempt) times for \(event.type) in \(event.stream)",
                                cause: error
                            )
                        )
                    }
                    handled.parked.append(
                        ParkedEvent(
                            position: event.position,
                            stream: event.stream,
                            version: event.version,
                            eventType: event.type,
                            error: String(describing: error),
                            attempts: attempt
                        )
                    )
                    break
                }
            }
            handled.next = event.position + 1
        }
        return .handled(handled)
    }

    /// Logs a poison event that the runner parks, or that stops it, per the configuration.
    private func logPoison(_ event: RecordedEvent, error: any Error, attempts: Int) {
        guard self.telemetry.isLogging(.error) else { return }
        let outcome =
            self.configuration.poisonEvents == .stop
            ? "stopping the projection" : "parking it and going on"
        self.telemetry.log(
            .error,
            source: "keel.projection",
            "projection \(self.name) failed \(attempts) time(s) on event \(event.position) (\(event.type) in \(event.stream)): \(error); \(outcome)",
            metadata: [
                "projection": self.name,
                "position": "\(event.position)",
                "stream": "\(event.stream)",
                "eventType": event.type,
                "attempts": "\(attempts)",
                "error": "\(error)",
            ]
        )
    }

    private func commitOrFail(
        _ writes: KeyValueBatch,
        _ checkpoint: UInt64,
        _ parked: [ParkedEvent]
    ) async
        -> ProjectionError?
    {
        do {
            try await self.commit(writes, checkpoint: checkpoint, parking: parked, removing: [])
            return nil
        } catch {
            return error
        }
    }

    // MARK: Helpers

    private func readPage(from position: UInt64, limit: Int) async throws(ProjectionError) -> [RecordedEvent] {
        do {
            return try await self.eventStore.readAll(from: position, limit: limit)
        } catch {
            throw ProjectionError(
                code: .eventStore,
                projection: self.name,
                position: position,
                message: "cannot read the store",
                cause: error
            )
        }
    }

    private func commit(
        _ writes: KeyValueBatch,
        checkpoint: UInt64?,
        parking: [ParkedEvent],
        removing: [UInt64]
    ) async throws(ProjectionError) {
        do {
            try await self.projectionStore.commit(writes, checkpoint: checkpoint, parking: parking, removing: removing)
        } catch {
            throw self.storageError(error, "cannot commit the read model")
        }
    }

    private func publish(_ checkpoint: UInt64) {
        let ready = self.progress.withLock { $0.advance(to: checkpoint) }
        for waiter in ready {
            waiter.resume()
        }
    }

    /// The error a wait for `position` fails with while the runner is not running: the one the
    /// last run failed with, if any.
    private func notRunningError(_ position: UInt64) -> ProjectionError {
        self.failure
            ?? ProjectionError(
                code: .notRunning,
                projection: self.name,
                position: position,
                message: "the runner is not running and has not reached the position"
            )
    }

    private func storageError(_ error: KeyValueStoreError, _ message: String) -> ProjectionError {
        ProjectionError(code: .storage, projection: self.name, message: message, cause: error)
    }

    /// Waits until no page or retry is in progress, then claims the turn. Not cancellable: a
    /// turn lasts one page (bounded by its retries' backoff) and the waiter must not lose its
    /// place.
    private func takeTurn() async {
        guard self.isBusy else {
            self.isBusy = true
            return
        }
        // `endTurn()` hands the turn over: resumed, this caller holds it.
        await withCheckedContinuation { continuation in
            self.turnWaiters.append(continuation)
        }
    }

    /// Ends the caller's turn, handing it to the first waiter, if any, so that a caller that
    /// takes its turn again right away waits behind it.
    private func endTurn() {
        if self.turnWaiters.isEmpty {
            self.isBusy = false
        } else {
            self.turnWaiters.removeFirst().resume()
        }
    }
}
