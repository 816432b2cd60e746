import Keel
import KeelCore
import KeelEventSourcing
import Synchronization

/// Runs a ``ProcessManager`` in a service: feeds it events from durable subscriptions, keeps its
/// instances in the service's storage, fires its timeouts and delivers its effects.
///
/// Start it in the service's ``/Keel/ServiceActor/start(_:)`` and stop it in
/// ``/Keel/ServiceActor/stop()``:
///
/// ```swift
/// actor OrderService: ServiceActor {
///     static let name: ServiceName = "order"
///     static let dependencies: [ServiceName] = ["payment", "inventory"]
///     static let publishes: [any DomainEvent.Type] = [OrderCreated.self, OrderConfirmed.self, OrderCancelled.self]
///     let fulfilment = ProcessManagerRunner(OrderFulfilment())
///
///     func start(_ environment: ServiceEnvironment) async throws {
///         try await self.fulfilment.start(in: environment)
///     }
///
///     func stop() async throws {
///         await self.fulfilment.stop()
///     }
/// }
/// ```
///
/// **Handling a message.** For each event of a declared type (from a durable subscription per type,
/// at least once, across restarts) and each timeout that comes due, the runner:
/// 1. waits for the instance's turn: one message per correlation key at a time, different keys
///    concurrently;
/// 2. reads the instance's record and skips the message when the instance handled that event
///    already, when the timeout was cancelled or rescheduled, or when the instance completed;
/// 3. calls the handler with the decoded state;
/// 4. commits, in one atomic batch of the service's key-value storage, the new state, the handled
///    event's id, the changed timeouts and the recorded effects (the *outbox*);
/// 5. arms the new timeouts and hands the effects to the instance's relay, and returns, so that the
///    event's subscription records it as delivered.
///
/// A crash before step 4 leaves nothing: the subscription delivers the event again. A crash after it
/// leaves the effects in the outbox: the next start delivers them, and a redelivered event is a
/// duplicate that only wakes the relay. So the state changes exactly once per event, and every
/// effect is delivered at least once.
///
/// **Effects.** One relay task per instance with effects pending delivers them in the order they
/// were recorded, each with its idempotency key as the request's or event's causation id, and
/// deletes each once it is delivered. A failed delivery is retried with
/// ``Configuration-swift.struct/deliveryBackoff``; after
/// ``Configuration-swift.struct/deliveryAttempts`` the effect is parked as failed
/// (``failedEffects()``, ``retryFailedEffects()``) and the relay goes on with the next one.
///
/// **Timeouts.** A pending timeout is stored with its instance, its due time on the host's wall
/// clock. The runner arms a task per pending timeout that sleeps on the host's clock; at
/// ``start(in:)`` it re-arms every stored one, and those that came due while the service was down
/// fire at once.
///
/// **Concurrency.** The runner is an actor; handlers run on it, synchronously, so keep them short.
/// It owns every task it starts (timers and relays): ``stop()`` stops its subscriptions, cancels
/// the tasks and waits for them. Every method may be called from any task.
public actor ProcessManagerRunner<Manager: ProcessManager> {
    /// The process manager.
    public nonisolated let manager: Manager
    /// The runner's settings.
    public nonisolated let configuration: Configuration
    /// What the process manager declared.
    private nonisolated let handlers: ProcessHandlers<Manager>

    private enum Phase {
        case idle
        case starting
        case running(Running)
        case stopping
        case stopped
    }

    /// What a running runner works with.
    private struct Running {
        var environment: ServiceEnvironment
        var namespace: StateNamespace
    }

    /// An armed timeout: the scheduling it fires and the task that sleeps until then.
    private struct ArmedTimer {
        var id: String
        var task: Task<Void, Never>
    }

    private var phase = Phase.idle
    private var subscriptionHandles: [DurableSubscription] = []
    /// The instances whose turn is taken, with the messages waiting for it, in arrival order.
    private var turns: [String: [CheckedContinuation<Void, Never>]] = [:]
    /// Armed timeouts by escaped correlation key and name.
    private var timers: [String: ArmedTimer] = [:]
    /// The relay tasks, by escaped correlation key.
    private var relays: [String: Task<Void, Never>] = [:]
    /// Relays that must look at their outbox again before they end: effects were committed while
    /// they were finding it empty.
    private var relaysToRepeat: Set<String> = []
    /// Callers of ``stop()`` that came while another call was stopping. (They wait without
    /// honouring cancellation: the stop they wait for only waits for tasks it has cancelled.)
    private var stopWaiters: [CheckedContinuation<Void, Never>] = []
    /// The callers of ``waitUntilEffectsDelivered()``, resumed when the last relay ends.
    private let idleWaiters = Lock(IdleWaiters())

    /// Makes a runner for `manager`, which declares its handlers now.
    /// - Parameters:
    ///   - manager: The process manager.
    ///   - configuration: Retries, delivery and retention.
    public init(_ manager: Manager, configuration: Configuration = Configuration()) {
        self.manager = manager
        self.configuration = configuration
        var handlers = ProcessHandlers<Manager>()
        manager.registerHandlers(&handlers)
        self.handlers = handlers
    }

    /// The durable subscriptions feeding the runner, one per declared event type, in declaration
    /// order; empty before ``start(in:)``.
    public var subscriptions: [DurableSubscription] { self.subscriptionHandles }

    /// Whether the runner is running.
    public var isRunning: Bool {
        if case .running = self.phase { return true }
        return false
    }

    // MARK: - Lifecycle

    /// Opens the process manager's storage in `environment`'s service, re-arms the stored timeouts,
    /// resumes the delivery of the stored effects, and subscribes durably to every declared event
    /// type. Returns when the subscriptions are running; their events and the timers are handled
    /// on tasks the runner owns.
    ///
    /// Call it from the service's ``/Keel/ServiceActor/start(_:)``: a runner runs for the life of
    /// one start of its service, and its subscriptions' names (`process-<name>-<event type>`) are
    /// taken in the host until the service stops.
    /// - Parameter environment: The service's environment: its storage, its request client (which
    ///   must reach the commands' targets), its clocks and its random source.
    /// - Throws: ``ProcessManagerError`` with ``ProcessManagerError/Code/alreadyRunning`` on a
    ///   second call, or ``ProcessManagerError/Code/storageFailed`` when the storage cannot be
    ///   opened or read; what ``/Keel/ServiceEnvironment/subscribeDurably(to:name:configuration:_:)``
    ///   throws (no service declares a handled event type, a duplicate subscription name). On a
    ///   failure nothing keeps running.
    public func start(in environment: ServiceEnvironment) async throws {
        guard case .idle = self.phase else {
            throw ProcessManagerError(code: .alreadyRunning, message: "\(Manager.name) was started before")
        }
        self.phase = .starting
        let namespace: StateNamespace
        do {
            namespace = try await environment.storage().keyValues(named: "process-\(Manager.name)")
        } catch {
            self.phase = .idle
            throw ProcessManagerError(
                code: .storageFailed,
                message: "the storage of \(Manager.name) cannot be opened",
                underlying: error
            )
        }
        // `stop()` may have run while the storage opened.
        guard case .starting = self.phase else {
            throw ProcessManagerError(code: .notRunning, message: "\(Manager.name) was stopped while it started")
        }
        self.phase = .running(Running(environment: environment, namespace: namespace))
        do {
            try await self.recover(namespace, environment)
            for route in self.handlers.routes {
                let subscription = try await route.subscribe(self, environment, self.configuration.subscription)
                guard self.isRunning else {
                    // `stop()` ran meanwhile and did not see this one.
                    await subscription.runner.stop()
                    throw ProcessManagerError(
                        code: .notRunning,
                        message: "\(Manager.name) was stopped while it started"
                    )
                }
                self.subscriptionHandles.append(subscription)
            }
        } catch {
            await self.stop()
            throw error
        }
        environment.logger.info(
            "process manager \(Manager.name) started",
            metadata: ["events": self.handlers.routes.map(\.eventType).joined(separator: ",")]
        )
    }

    /// Stops the runner: stops its durable subscriptions (waiting for the event being handled),
    /// cancels its timers and relays and waits for them. Effects not yet delivered and timeouts
    /// not yet fired stay stored, for the next start. A call made while another is stopping waits
    /// for it; a call on a stopped runner returns at once. A stopped runner does not start again:
    /// make a new one.
    public func stop() async {
        switch self.phase {
        case .idle, .stopped:
            self.phase = .stopped
            return
        case .stopping:
            // Another call is stopping: wait for it to finish.
            await withCheckedContinuation { self.stopWaiters.append($0) }
            return
        case .starting, .running:
            break
        }
        self.phase = .stopping
        for subscription in self.subscriptionHandles {
            await subscription.runner.stop()
        }
        var tasks = self.timers.values.map(\.task) + self.relays.values.map { $0 }
        self.timers = [:]
        self.relays = [:]
        self.relaysToRepeat = []
        for task in tasks { task.cancel() }
        for task in tasks { await task.value }
        // Work a message finished while the tasks ended (a timer it armed) is cancelled too.
        tasks = self.timers.values.map(\.task) + self.relays.values.map { $0 }
        self.timers = [:]
        self.relays = [:]
        for task in tasks { task.cancel() }
        for task in tasks { await task.value }
        self.phase = .stopped
        self.resumeIdleWaitersIfIdle()
        let waiters = self.stopWaiters
        self.stopWaiters = []
        for waiter in waiters { waiter.resume() }
    }

    // MARK: - Inspection

    /// The stored instance with correlation key `correlationKey`.
    /// - Parameter correlationKey: The instance's key.
    /// - Returns: The instance, or `nil` when none is stored (never started, or deleted after its
    ///   retention).
    /// - Throws: ``ProcessManagerError``: ``ProcessManagerError/Code/notRunning`` before
    ///   ``start(in:)``, ``ProcessManagerError/Code/stateUndecodable`` or
    ///   ``ProcessManagerError/Code/recordCorrupt`` for damaged entries,
    ///   ``ProcessManagerError/Code/storageFailed`` when the store fails.
    public func instance(
        for correlationKey: String
    ) async throws(ProcessManagerError) -> ProcessInstance<
        Manager.State
    >? {
        let namespace = try self.running().namespace
        guard let record = try await self.loadRecord(correlationKey, from: namespace) else { return nil }
        let state = try await self.loadState(correlationKey, from: namespace)
        return ProcessInstance(
            correlationKey: correlationKey,
            state: state,
            isCompleted: record.isCompleted,
            timeouts: visibleTimeouts(record.timeouts),
            handledCount: record.handledCount
        )
    }

    /// The effects recorded and not yet delivered, instance by instance (by escaped correlation
    /// key), each instance's in order.
    /// - Returns: The effects.
    /// - Throws: ``ProcessManagerError`` with ``ProcessManagerError/Code/notRunning`` before
    ///   ``start(in:)``, or ``ProcessManagerError/Code/storageFailed`` /
    ///   ``ProcessManagerError/Code/recordCorrupt``.
    public func pendingEffects() async throws(ProcessManagerError) -> [ProcessEffect] {
        try await self.effects(withPrefix: ProcessStorageLayout.allOutbox)
    }

    /// The effects whose delivery failed ``Configuration-swift.struct/deliveryAttempts`` times, or
    /// whose type the process manager no longer declares; ``ProcessEffect/failure`` says why.
    /// - Returns: The failed effects.
    /// - Throws: As ``pendingEffects()``.
    public func failedEffects() async throws(ProcessManagerError) -> [ProcessEffect] {
        try await self.effects(withPrefix: ProcessStorageLayout.allFailed)
    }

    /// Moves every failed effect back to its instance's outbox, in its original place, and delivers
    /// it again (with a fresh count of attempts).
    /// - Returns: How many effects were moved.
    /// - Throws: ``ProcessManagerError`` with ``ProcessManagerError/Code/notRunning`` before
    ///   ``start(in:)``, or ``ProcessManagerError/Code/storageFailed`` when the move does not
    ///   commit (then none moved).
    @discardableResult
    public func retryFailedEffects() async throws(ProcessManagerError) -> Int {
        let namespace = try self.running().namespace
        let keys = await namespace.keys(withPrefix: ProcessStorageLayout.allFailed)
        var batch = KeyValueBatch()
        var instances: [String] = []
        for key in keys {
            guard let bytes = try await Self.read(key, from: namespace) else { continue }
            let pending = "o/" + key.dropFirst(2)
            var moved = bytes
            if var entry = try? OutboxEntry.decode(bytes) {
                entry.header.attempts = 0
                entry.header.failure = nil
                moved = (try? entry.encoded()) ?? bytes
            }
            batch.delete(key)
            batch.put(moved, forKey: pending)
            let instance = Self.instanceOfEntry(key)
            if instances.last != instance { instances.append(instance) }
        }
        try await Self.commit(batch, to: namespace, key: nil)
        for instance in instances { self.wakeRelay(instance) }
        return keys.count
    }

    /// Waits until no effect is on its way: every relay has delivered (or parked as failed) the
    /// effects committed so far, or the runner stopped.
    ///
    /// Effects that later messages record are not waited for. Cancelling the caller ends the wait
    /// at once.
    public func waitUntilEffectsDelivered() async {
        guard !self.relays.isEmpty else { return }
        let id = self.idleWaiters.withLock { $0.makeID() }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = self.idleWaiters.withLock { $0.park(id, continuation) }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            self.idleWaiters.withLock { $0.cancel(id) }?.resume()
        }
    }

    /// Resumes the callers of ``waitUntilEffectsDelivered()`` when no relay runs.
    private func resumeIdleWaitersIfIdle() {
        guard self.relays.isEmpty else { return }
        for waiter in self.idleWaiters.withLock({ $0.takeAll() }) { waiter.resume() }
    }

    // MARK: - Handling

    /// Handles one event for the instance `correlationKey`: see the type's discussion.
    func handleEvent(
        correlationKey: String,
        eventID: String,
        _ apply: @Sendable (inout Manager.State?, inout ProcessContext) throws -> Void
    ) async throws(ProcessManagerError) {
        let running = try self.running()
        guard !correlationKey.isEmpty else {
            throw ProcessManagerError(
                code: .invalidCorrelationKey,
                message: "an event \(eventID) for \(Manager.name) has an empty correlation key"
            )
        }
        await self.takeTurn(correlationKey)
        defer { self.endTurn(correlationKey) }
        try await self.handle(.event(eventID), for: correlationKey, in: running, apply)
    }

    /// Fires `timeout` of the instance `correlationKey`, unless it was cancelled or rescheduled.
    private func fire(_ timeout: ProcessTimeout, for correlationKey: String) async throws(ProcessManagerError) {
        let running = try self.running()
        await self.takeTurn(correlationKey)
        defer { self.endTurn(correlationKey) }
        let manager = self.manager
        try await self.handle(.timeout(timeout), for: correlationKey, in: running) { state, context in
            try manager.handleTimeout(timeout, state: &state, context: &context)
        }
    }

    private enum Message {
        case event(String)
        case timeout(ProcessTimeout)

        var id: String {
            switch self {
            case .event(let id): id
            case .timeout(let timeout): timeout.id
            }
        }
    }

    /// Steps 2 to 5 of handling a message, under the instance's turn.
    private func handle(
        _ message: Message,
        for correlationKey: String,
        in running: Running,
        _ apply: @Sendable (inout Manager.State?, inout ProcessContext) throws -> Void
    ) async throws(ProcessManagerError) {
        let namespace = running.namespace
        let logger = running.environment.logger
        let record = try await self.loadRecord(correlationKey, from: namespace)
        switch message {
        case .event(let id):
            let marker = ProcessStorageLayout.handled(correlationKey, id)
            if try await Self.read(marker, from: namespace) != nil {
                logger.debug(
                    "\(Manager.name) skips a duplicate event",
                    metadata: ["correlation": correlationKey, "event": id]
                )
                // The first delivery may have failed after its commit, before its effects left and
                // its timeouts were armed: deliver and arm them now.
                let escaped = ProcessStorageLayout.escape(correlationKey)
                for timeout in (record?.timeouts ?? [:]).values.sorted(by: { $0.name < $1.name })
                where self.timers[escaped + "/" + timeout.name]?.id != timeout.id {
                    self.arm(timeout, for: correlationKey)
                }
                self.wakeRelay(escaped)
                return
            }
        case .timeout(let timeout):
            guard record?.timeouts[timeout.name]?.id == timeout.id else { return }
        }
        if let record, record.isCompleted {
            if case .timeout(let timeout) = message, timeout.name == Self.purgeTimeout {
                try await self.purge(record, in: namespace, timeout: timeout)
            } else {
                logger.debug(
                    "\(Manager.name) ignores a message for a completed instance",
                    metadata: ["correlation": correlationKey, "message": message.id]
                )
            }
            return
        }

        var state = record == nil ? nil : try await self.loadState(correlationKey, from: namespace)
        var context = ProcessContext(
            process: Manager.name,
            correlationKey: correlationKey,
            messageID: message.id,
            now: running.environment.wallClock.nanosecondsSinceEpoch(),
            timeouts: record?.timeouts ?? [:],
            declarations: self.handlers.effects,
            codec: self.configuration.codec
        )
        if case .timeout(let timeout) = message { context.consumeTimeout(timeout.name) }
        do {
            try apply(&state, &context)
        } catch let error as ProcessManagerError {
            throw error
        } catch {
            throw ProcessManagerError(
                code: .handlerFailed,
                message: "the handler of \(Manager.name) threw for message \(message.id)",
                correlationKey: correlationKey,
                underlying: error
            )
        }
        if record == nil, state == nil, context.effects.isEmpty, context.timeouts.isEmpty, !context.isCompleted {
            return  // nothing started, nothing to remember
        }

        // Step 4: one batch.
        var updated = record ?? InstanceRecord(correlationKey: correlationKey)
        updated.handledCount += 1
        if context.isCompleted {
            updated.isCompleted = true
            if let retention = self.configuration.completedRetention {
                context.scheduleTimeout(Self.purgeTimeout, after: retention)
            }
        }
        let before = record?.timeouts ?? [:]
        updated.timeouts = context.timeouts
        var batch = KeyValueBatch()
        let codec = self.configuration.codec
        if let state {
            do {
                batch.put(try codec.encode(state), forKey: ProcessStorageLayout.state(correlationKey))
            } catch {
                throw ProcessManagerError(
                    code: .encodingFailed,
                    message: "the state of \(Manager.name) does not encode",
                    correlationKey: correlationKey,
                    underlying: error
                )
            }
        } else {
            batch.delete(ProcessStorageLayout.state(correlationKey))
        }
        if case .event(let id) = message {
            batch.put([], forKey: ProcessStorageLayout.handled(correlationKey, id))
        }
        for name in before.keys.sorted() where updated.timeouts[name] == nil {
            batch.delete(ProcessStorageLayout.timeout(correlationKey, name))
        }
        let changedTimeouts = updated.timeouts.values.filter { before[$0.name] != $0 }.sorted { $0.name < $1.name }
        let escaped = ProcessStorageLayout.escape(correlationKey)
        do {
            for timeout in changedTimeouts {
                batch.put(
                    try JSONEventCodec().encode(TimeoutEntry(correlationKey: correlationKey, timeout: timeout)),
                    forKey: ProcessStorageLayout.timeout(correlationKey, timeout.name)
                )
            }
            for effect in context.effects {
                let key =
                    ProcessStorageLayout.outboxPrefix(correlationKey)
                    + ProcessStorageLayout.sequence(updated.nextEffect)
                updated.nextEffect += 1
                batch.put(try effect.encoded(), forKey: key)
            }
            batch.put(try JSONEventCodec().encode(updated), forKey: ProcessStorageLayout.record(correlationKey))
        } catch {
            throw ProcessManagerError(
                code: .encodingFailed,
                message: "the record of a \(Manager.name) instance does not encode",
                correlationKey: correlationKey,
                underlying: error
            )
        }
        try await Self.commit(batch, to: namespace, key: correlationKey)

        // Step 5: the runner may have begun to stop while the batch committed; what it commits
        // stays stored for the next start.
        for name in before.keys.sorted() where updated.timeouts[name] != before[name] {
            self.disarm(escaped, name)
        }
        for timeout in changedTimeouts {
            self.arm(timeout, for: correlationKey)
        }
        if !context.effects.isEmpty { self.wakeRelay(escaped) }
        if context.isCompleted {
            logger.debug("\(Manager.name) completed an instance", metadata: ["correlation": correlationKey])
        }
    }

    /// Deletes a completed instance whose retention has passed, unless effects of it still wait
    /// for delivery (then it waits one more retention).
    private func purge(
        _ record: InstanceRecord,
        in namespace: StateNamespace,
        timeout: ProcessTimeout
    ) async throws(ProcessManagerError) {
        let key = record.correlationKey
        let outbox = await namespace.keys(withPrefix: ProcessStorageLayout.outboxPrefix(key))
        let failed = await namespace.keys(withPrefix: ProcessStorageLayout.failedPrefix(key))
        var batch = KeyValueBatch()
        if outbox.isEmpty && failed.isEmpty {
            batch.delete(ProcessStorageLayout.record(key))
            batch.delete(ProcessStorageLayout.state(key))
            batch.deleteAll(withPrefix: ProcessStorageLayout.handledPrefix(key))
            batch.deleteAll(withPrefix: ProcessStorageLayout.timeoutPrefix(key))
            try await Self.commit(batch, to: namespace, key: key)
            self.disarm(ProcessStorageLayout.escape(key), Self.purgeTimeout)
            return
        }
        guard let retention = self.configuration.completedRetention else { return }
        var updated = record
        var again = timeout
        again.dueTime = timeout.dueTime &+ retention.clampedNanoseconds
        again.id = timeout.id + "+"
        updated.timeouts[Self.purgeTimeout] = again
        do {
            batch.put(try JSONEventCodec().encode(updated), forKey: ProcessStorageLayout.record(key))
            batch.put(
                try JSONEventCodec().encode(TimeoutEntry(correlationKey: key, timeout: again)),
                forKey: ProcessStorageLayout.timeout(key, Self.purgeTimeout)
            )
        } catch {
            throw ProcessManagerError(code: .encodingFailed, message: "a record does not encode", correlationKey: key)
        }
        try await Self.commit(batch, to: namespace, key: key)
        self.arm(again, for: key)
    }

    /// The reserved name of the timeout that deletes a completed instance.
    static var purgeTimeout: String { "$purge" }

    // MARK: - Turns

    /// Waits until no other message of the instance is being handled.
    ///
    /// The wait ignores cancellation on purpose: the message ahead never waits for anything but
    /// its store commit, which completes whatever happens to its task, so every wait ends.
    private func takeTurn(_ correlationKey: String) async {
        guard self.turns[correlationKey] != nil else {
            self.turns[correlationKey] = []
            return
        }
        await withCheckedContinuation { continuation in
            self.turns[correlationKey]!.append(continuation)
        }
    }

    /// Hands the instance's turn to the next waiting message, in arrival order.
    private func endTurn(_ correlationKey: String) {
        guard var waiting = self.turns[correlationKey], !waiting.isEmpty else {
            self.turns[correlationKey] = nil
            return
        }
        let next = waiting.removeFirst()
        self.turns[correlationKey] = waiting
        next.resume()
    }

    // MARK: - Timers

    private func arm(_ timeout: ProcessTimeout, for correlationKey: String) {
        guard case .running(let running) = self.phase else { return }
        let slot = ProcessStorageLayout.escape(correlationKey) + "/" + timeout.name
        self.timers[slot]?.task.cancel()
        let clock = running.environment.clock
        let wallClock = running.environment.wallClock
        let random = running.environment.random
        let logger = running.environment.logger
        // Unstructured: a timer outlives the handler that armed it. The runner owns it: `disarm`
        // or `stop()` cancels it, and `stop()` awaits it.
        let task = TaskSpawner.spawn(executor: running.environment.executor) { [self] in
            let remaining = timeout.dueTime &- wallClock.nanosecondsSinceEpoch()
            if remaining > 0 {
                do { try await clock.sleep(for: .nanoseconds(remaining)) } catch { return }
            }
            var delays = self.configuration.deliveryBackoff.makeDelays(using: random)
            for attempt in 1...self.configuration.timeoutAttempts {
                do throws(ProcessManagerError) {
                    try await self.fire(timeout, for: correlationKey)
                    return
                } catch {
                    guard !Task.isCancelled, error.code != .notRunning else { return }
                    logger.error(
                        "a timeout of \(Manager.name) failed (attempt \(attempt)): \(error)",
                        metadata: ["correlation": correlationKey, "timeout": timeout.name]
                    )
                }
                guard attempt < self.configuration.timeoutAttempts, let delay = delays.next() else { break }
                do { try await clock.sleep(for: delay) } catch { return }
            }
            logger.error(
                "a timeout of \(Manager.name) stays pending until the next start",
                metadata: ["correlation": correlationKey, "timeout": timeout.name]
            )
        }
        self.timers[slot] = ArmedTimer(id: timeout.id, task: task)
    }

    private func disarm(_ escapedKey: String, _ name: String) {
        self.timers.removeValue(forKey: escapedKey + "/" + name)?.task.cancel()
    }

    // MARK: - Relays

    /// Starts the relay of an instance's outbox, or makes the running one look again.
    private func wakeRelay(_ escapedKey: String) {
        guard case .running(let running) = self.phase else { return }
        if self.relays[escapedKey] != nil {
            self.relaysToRepeat.insert(escapedKey)
            return
        }
        // Unstructured: the relay outlives the message whose effects it delivers. The runner owns
        // it: the relay removes itself when the outbox is empty, and `stop()` cancels and awaits it.
        self.relays[escapedKey] = TaskSpawner.spawn(executor: running.environment.executor) { [self] in
            await self.relay(escapedKey, running)
        }
    }

    /// Whether the relay of `escapedKey` may end: no effects were committed since it listed its
    /// outbox. When it may, it is forgotten.
    private func relayMayEnd(_ escapedKey: String) -> Bool {
        if self.relaysToRepeat.remove(escapedKey) != nil { return false }
        self.relays[escapedKey] = nil
        self.resumeIdleWaitersIfIdle()
        return true
    }

    /// Delivers the outbox of one instance, in order, until it is empty or the task is cancelled.
    private nonisolated func relay(_ escapedKey: String, _ running: Running) async {
        let prefix = "o/" + escapedKey + "/"
        while !Task.isCancelled {
            let keys = await running.namespace.keys(withPrefix: prefix)
            if keys.isEmpty {
                if await self.relayMayEnd(escapedKey) { return }
                continue
            }
            for key in keys {
                guard await self.deliver(key, running) else { return }
            }
        }
    }

    /// Delivers the effect stored under `key`, retrying per the configuration; parks it as failed
    /// after the last attempt. Returns `false` when the task was cancelled (the effect stays).
    private nonisolated func deliver(_ key: String, _ running: Running) async -> Bool {
        let namespace = running.namespace
        let environment = running.environment
        let logger = environment.logger
        var delays = self.configuration.deliveryBackoff.makeDelays(using: environment.random)
        var attempts = 0
        while true {
            guard !Task.isCancelled else { return false }
            let entry: OutboxEntry
            do {
                guard let bytes = try await namespace.value(forKey: key) else { return true }
                entry = try OutboxEntry.decode(bytes)
            } catch {
                if let error = error as? KeyValueStoreError, error.code != .corrupted,
                    error.code != .decodingFailed
                {
                    logger.warning("\(Manager.name) cannot read its outbox: \(error)")
                    guard let delay = delays.next() else { return false }
                    do { try await environment.clock.sleep(for: delay) } catch { return false }
                    continue
                }
                await self.park(key, entry: nil, failure: "the entry does not decode: \(error)", in: namespace)
                return true
            }
            let kindKey = EffectDeclarations.key(entry.header.kind, entry.header.type)
            guard let delivery = self.handlers.effects.deliver[kindKey] else {
                let error = ProcessManagerError(
                    code: .unknownEffectType,
                    message: "\(Manager.name) does not declare the \(entry.header.kind) \(entry.header.type)",
                    correlationKey: entry.header.correlationKey
                )
                await self.park(key, entry: entry, failure: error.description, in: namespace)
                return true
            }
            do {
                var trace =
                    entry.header.trace?.makeChild(using: environment.random)
                    ?? TraceContext.makeRoot(using: environment.random)
                trace.correlationID = entry.header.correlationKey
                trace.causationID = entry.header.idempotencyKey
                trace.deadline = nil
                try await TraceContext.$current.withValue(trace) {
                    try await delivery(
                        entry.payload,
                        entry.header.idempotencyKey,
                        self.configuration.codec,
                        environment,
                        self.configuration.commandTimeout
                    )
                }
                try await namespace.delete(key)
                return true
            } catch {
                guard !Task.isCancelled else { return false }
                attempts += 1
                if attempts >= self.configuration.deliveryAttempts {
                    var failed = entry
                    failed.header.attempts = attempts
                    await self.park(key, entry: failed, failure: "\(error)", in: namespace)
                    logger.error(
                        "\(Manager.name) parked the \(entry.header.kind) \(entry.header.type) after \(attempts) attempts: \(error)",
                        metadata: ["correlation": entry.header.correlationKey, "effect": entry.header.idempotencyKey]
                    )
                    return true
                }
                logger.warning(
                    "\(Manager.name) could not deliver the \(entry.header.kind) \(entry.header.type): \(error)",
                    metadata: ["correlation": entry.header.correlationKey, "effect": entry.header.idempotencyKey]
                )
                guard let delay = delays.next() else { return false }
                do { try await environment.clock.sleep(for: delay) } catch { return false }
            }
        }
    }

    /// Moves the outbox entry `key` to the failed effects, with `failure`.
    private nonisolated func park(
        _ key: String,
        entry: OutboxEntry?,
        failure: String,
        in namespace: StateNamespace
    ) async {
        var batch = KeyValueBatch()
        batch.delete(key)
        let failedKey = "f/" + key.dropFirst(2)
        if var entry {
            entry.header.failure = failure
            batch.put((try? entry.encoded()) ?? entry.payload, forKey: failedKey)
        } else if let bytes = try? await namespace.value(forKey: key) {
            batch.put(bytes, forKey: failedKey)
        }
        try? await namespace.commit(batch)
    }

    // MARK: - Recovery

    /// Re-arms the stored timeouts and wakes the relays of the stored effects.
    private func recover(
        _ namespace: StateNamespace,
        _ environment: ServiceEnvironment
    ) async throws(ProcessManagerError) {
        var armed = 0
        for key in await namespace.keys(withPrefix: ProcessStorageLayout.allTimeouts) {
            guard let bytes = try await Self.read(key, from: namespace) else { continue }
            do {
                let entry = try JSONEventCodec().decode(TimeoutEntry.self, from: bytes)
                self.arm(entry.timeout, for: entry.correlationKey)
                armed += 1
            } catch {
                environment.logger.error("\(Manager.name) cannot read the pending timeout \(key): \(error)")
            }
        }
        var instances: [String] = []
        for key in await namespace.keys(withPrefix: ProcessStorageLayout.allOutbox) {
            let instance = Self.instanceOfEntry(key)
            if instances.last != instance { instances.append(instance) }
        }
        for instance in instances { self.wakeRelay(instance) }
        if armed > 0 || !instances.isEmpty {
            environment.logger.info(
                "process manager \(Manager.name) recovered \(armed) timeouts and the outboxes of \(instances.count) instances"
            )
        }
    }

    // MARK: - Storage

    private func running() throws(ProcessManagerError) -> Running {
        guard case .running(let running) = self.phase else {
            throw ProcessManagerError(code: .notRunning, message: "\(Manager.name) is not running")
        }
        return running
    }

    private func loadRecord(
        _ correlationKey: String,
        from namespace: StateNamespace
    ) async throws(ProcessManagerError) -> InstanceRecord? {
        guard let bytes = try await Self.read(ProcessStorageLayout.record(correlationKey), from: namespace) else {
            return nil
        }
        do {
            return try JSONEventCodec().decode(InstanceRecord.self, from: bytes)
        } catch {
            throw ProcessManagerError(
                code: .recordCorrupt,
                message: "the record of a \(Manager.name) instance does not decode",
                correlationKey: correlationKey,
                underlying: error
            )
        }
    }

    private func loadState(
        _ correlationKey: String,
        from namespace: StateNamespace
    ) async throws(ProcessManagerError) -> Manager.State? {
        guard let bytes = try await Self.read(ProcessStorageLayout.state(correlationKey), from: namespace) else {
            return nil
        }
        do {
            return try self.configuration.codec.decode(Manager.State.self, from: bytes)
        } catch {
            throw ProcessManagerError(
                code: .stateUndecodable,
                message: "the stored state does not decode as \(Manager.State.self)",
                correlationKey: correlationKey,
                underlying: error
            )
        }
    }

    private func effects(withPrefix prefix: String) async throws(ProcessManagerError) -> [ProcessEffect] {
        let namespace = try self.running().namespace
        var effects: [ProcessEffect] = []
        for key in await namespace.keys(withPrefix: prefix) {
            guard let bytes = try await Self.read(key, from: namespace) else { continue }
            do {
                effects.append(try OutboxEntry.decode(bytes).effect)
            } catch {
                throw ProcessManagerError(
                    code: .recordCorrupt,
                    message: "the stored effect \(key) does not decode",
                    underlying: error
                )
            }
        }
        return effects
    }

    private static func read(
        _ key: String,
        from namespace: StateNamespace
    ) async throws(ProcessManagerError)
        -> [UInt8]?
    {
        do {
            return try await namespace.value(forKey: key)
        } catch {
            throw ProcessManagerError(
                code: .storageFailed,
                message: "\(Manager.name) cannot read \(key)",
                underlying: error
            )
        }
    }

    private static func commit(
        _ batch: KeyValueBatch,
        to namespace: StateNamespace,
        key: String?
    ) async throws(ProcessManagerError) {
        do {
            try await namespace.commit(batch)
        } catch {
            throw ProcessManagerError(
                code: .storageFailed,
                message: "\(Manager.name) cannot commit its changes",
                correlationKey: key,
                underlying: error
            )
        }
    }

    /// The escaped correlation key of an `o/` or `f/` entry's key.
    private static func instanceOfEntry(_ key: String) -> String {
        let rest = key.dropFirst(2)
        return String(rest[..<(rest.lastIndex(of: "/") ?? rest.endIndex)])
    }

}

/// The callers of ``ProcessManagerRunner/waitUntilEffectsDelivered()``: parked continuations by id,
/// and the ids cancelled before their continuation was parked.
struct IdleWaiters {
    private var nextID = 0
    private var waiting: [Int: CheckedContinuation<Void, Never>] = [:]
    private var cancelled: Set<Int> = []

    mutating func makeID() -> Int {
        defer { self.nextID += 1 }
        return self.nextID
    }

    /// Parks `continuation`; `true` when its caller was cancelled already and must resume it.
    mutating func park(_ id: Int, _ continuation: CheckedContinuation<Void, Never>) -> Bool {
        if self.cancelled.remove(id) != nil { return true }
        self.waiting[id] = continuation
        return false
    }

    /// The continuation to resume for a cancelled caller, or `nil` when it is not parked yet.
    mutating func cancel(_ id: Int) -> CheckedContinuation<Void, Never>? {
        if let continuation = self.waiting.removeValue(forKey: id) { return continuation }
        self.cancelled.insert(id)
        return nil
    }

    mutating func takeAll() -> [CheckedContinuation<Void, Never>] {
        defer { self.waiting = [:] }
        return self.waiting.keys.sorted().map { self.waiting[$0]! }
    }
}
