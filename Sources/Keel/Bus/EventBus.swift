import Foundation
import KeelCore
import Synchronization

/// The asynchronous event bus: publish facts, subscribe by type or by topic pattern.
///
/// ```swift
/// let subscription = try bus.subscribe(to: OrderCreated.self) { event, envelope in
///     print("order \(event.orderID) from \(envelope.source?.description ?? "outside")")
/// }
/// try await bus.publish(OrderCreated(orderID: 7), source: "order")
/// ```
///
/// **Delivery.** Every subscription has its own bounded mailbox and one long-lived task that
/// drains it in batches and runs the handler; no task is created per event. The handler runs with
/// a ``/KeelCore/TraceContext`` made from the event's ``EventEnvelope``. Events from one publisher
/// reach each subscriber in the order they were published.
///
/// **Backpressure.** When a mailbox is full its ``OverflowPolicy`` decides: the publisher waits
/// for room (the default), or the oldest or the new event is dropped and counted. A slow or
/// failing subscriber never delays another beyond that policy.
///
/// **Failures.** A handler that throws is retried per its ``RedeliveryPolicy`` on the bus's clock,
/// then its event goes to the dead-letter queue, which can be listed and replayed.
///
/// **Lifetime.** The bus owns its subscription tasks: ``shutdown()`` ends them all and waits for
/// them. A ``ServiceHost`` does this for its bus; a bus made on its own must be shut down by its
/// owner.
public final class EventBus: Sendable {
    /// The bus's settings.
    public struct Configuration: Sendable {
        /// Options for subscriptions that do not pass their own.
        public var defaultSubscriptionOptions = SubscriptionOptions()
        /// The most dead letters kept, not negative; older ones are evicted first.
        public var deadLetterCapacity = 10_000

        /// Creates the default configuration.
        public init() {}
    }

    /// The subscribers of one event type and topic, and the type's name, made once.
    private struct Targets {
        var subscribers: [Subscriber]
        var eventType: String
    }

    private struct RouteKey: Hashable {
        var type: ObjectIdentifier
        var topic: String
    }

    private struct State {
        var subscribers: [Subscriber] = []
        var routes: [RouteKey: Targets] = [:]
        var nextID: UInt64 = 0
        var isClosed = false
    }

    private static let routeCacheLimit = 4096

    let configuration: Configuration
    let clock: any Clock<Duration>
    let reader: ClockReader
    let telemetry: any Telemetry
    /// Whether handler durations are recorded: the telemetry is not ``/KeelCore/NoOpTelemetry``.
    let isRecording: Bool
    /// Whether publish and handler spans are started: ``/KeelCore/Telemetry/recordsSpans``.
    let recordsSpans: Bool
    let random: RandomSource
    let wallClock: WallClock
    let executor: (any TaskExecutor)?
    let tracker: WorkTracker
    let deadLetterQueue: DeadLetterQueue
    /// The fault injector of a test, consulted once per delivery in `publish`.
    let faults: (any FaultInjecting)?
    private let state = Lock(State())
    private let publishedCounter: any TelemetryCounter

    /// Creates a bus.
    /// - Parameters:
    ///   - configuration: The bus's settings.
    ///   - clock: The clock for redelivery backoff.
    ///   - telemetry: Where metrics and spans go.
    ///   - random: The source of event ids and span ids. By default a new source seeded from the
    ///     system's generator; a host passes its own.
    ///   - wallClock: The time of day stamped on envelopes; the system's by default.
    ///   - executor: The task executor preference of the subscription tasks.
    public convenience init(
        configuration: Configuration = Configuration(),
        clock: some Clock<Duration> = ContinuousClock(),
        telemetry: any Telemetry = NoOpTelemetry(),
        random: RandomSource = RandomSource(),
        wallClock: WallClock = .system,
        executor: (any TaskExecutor)? = nil
    ) {
        self.init(
            configuration: configuration,
            clock: clock,
            telemetry: telemetry,
            random: random,
            wallClock: wallClock,
            executor: executor,
            tracker: WorkTracker()
        )
    }

    package init(
        configuration: Configuration,
        clock: any Clock<Duration>,
        telemetry: any Telemetry,
        random: RandomSource,
        wallClock: WallClock,
        executor: (any TaskExecutor)?,
        tracker: WorkTracker,
        faults: (any FaultInjecting)? = nil
    ) {
        self.configuration = configuration
        self.clock = clock
        self.reader = ClockReader(clock)
        self.telemetry = telemetry
        self.isRecording = telemetry.recordsMetrics
        self.recordsSpans = telemetry.recordsSpans
        self.random = random
        self.wallClock = wallClock
        self.executor = executor
        self.tracker = tracker
        self.faults = faults
        self.deadLetterQueue = DeadLetterQueue(capacity: configuration.deadLetterCapacity)
        self.publishedCounter = telemetry.makeCounter(label: "keel.bus.published", dimensions: [])
    }

    // MARK: Publishing

    /// Publishes an event to every matching subscription.
    ///
    /// Returns once every matching subscriber's mailbox has taken the event or its overflow
    /// policy has dropped it; it does not wait for handlers. Under
    /// ``OverflowPolicy/suspendPublisher`` it suspends while a subscriber's mailbox is full.
    /// The envelope's trace ids come from the current ``/KeelCore/TraceContext`` (a new trace when
    /// none is bound); its causation is the current context's causation.
    ///
    /// - Parameters:
    ///   - event: The event.
    ///   - source: The publishing service, recorded in the envelope.
    /// - Returns: What happened to the event.
    /// - Throws: ``EventBusError/Code-swift.struct/shuttingDown`` when the bus takes no new events;
    ///   ``EventBusError/Code-swift.struct/cancelled`` when cancelled while waiting for room.
    @discardableResult
    public func publish<E: Event>(_ event: E, source: ServiceName? = nil) async throws(EventBusError) -> PublishReceipt
    {
        let topic = event.topic
        let key = RouteKey(type: ObjectIdentifier(E.self), topic: topic)
        let current = TraceContext.current
        let cached = self.state.withLock { state -> Targets? in
            if state.isClosed { return nil }
            if let cached = state.routes[key] { return cached }
            let matched = Targets(
                subscribers: state.subscribers.filter { $0.matches(typeID: key.type, topic: topic) },
                eventType: String(describing: E.self)
            )
            if state.routes.count >= Self.routeCacheLimit { state.routes.removeAll(keepingCapacity: true) }
            state.routes[key] = matched
            return matched
        }
        guard let cached, self.tracker.enter(cached.subscribers.count, nested: current?.isInHandler ?? false) else {
            throw EventBusError(code: .shuttingDown, topic: topic, message: "the bus takes no new events")
        }
        let targets = cached.subscribers

        let envelope = self.makeEnvelope(
            eventType: cached.eventType,
            topic: topic,
            source: source,
            current: current
        )
        self.publishedCounter.increment(by: 1)
        let published = PublishedEvent(event: event, envelope: envelope)
        var dropped = 0
        var cancelled = false
        for target in targets {
            let outcome: MailboxStateMachine<PublishedEvent>.SendOutcome
            if let faults = self.faults {
                outcome = await self.send(published, to: target, injecting: faults, mayWait: !cancelled)
            } else {
                // No async call unless the mailbox is full and the publisher must wait.
                switch target.offer(published, mayWait: !cancelled) {
                case .done(let done): outcome = done
                case .mustPark(let id): outcome = await target.park(id: id, event: published)
                }
            }
            switch outcome {
            case .enqueued, .finished: break
            case .droppedNewest: dropped += 1
            case .cancelled: cancelled = true
            }
        }
        if cancelled {
            throw EventBusError(
                code: .cancelled,
                topic: topic,
                message: "cancelled while waiting for room in a subscriber's mailbox"
            )
        }
        return PublishReceipt(id: envelope.id, subscribers: targets.count, dropped: dropped)
    }

    private func makeEnvelope(
        eventType: String,
        topic: String,
        source: ServiceName?,
        current: TraceContext?
    ) -> EventEnvelope {
        var context = current ?? .makeRoot(using: self.random)
        // A producer span, ended at once: it marks where in the trace the event was published. A
        // tracer may give it ids of its own; the envelope takes them (and, for a new trace, the
        // correlation that follows the trace id), so the handlers' spans are its children.
        let span =
            self.recordsSpans
            ? self.telemetry.startSpan(
                "publish \(topic)",
                context: context.makeChild(using: self.random),
                kind: .producer
            )
            : nil
        if let span { context.traceID = span.context.traceID }
        let envelope = EventEnvelope(
            id: .random(using: self.random),
            time: self.wallClock.date(),
            source: source,
            topic: topic,
            eventType: eventType,
            correlation: context.correlation,
            causation: context.causation,
            traceID: context.traceID,
            spanID: span?.context.spanID ?? context.spanID
        )
        if let span {
            span.setAttribute("event.id", .string(envelope.id.description))
            span.end()
        }
        return envelope
    }

    // MARK: Subscribing

    /// Subscribes to events of one type.
    ///
    /// The handler runs on the subscription's own task, one event at a time, in publication
    /// order per publisher, with the envelope's trace context bound. If it throws, the event is
    /// retried per the options' ``RedeliveryPolicy``, then dead-lettered. Cancellation of the
    /// subscription cancels the handler in progress.
    /// - Parameters:
    ///   - type: The event type.
    ///   - name: A name for metrics, traces and dead letters; defaults to the type's topic.
    ///   - owner: The service that owns the subscription; it ends when that service stops.
    ///   - options: Buffering and redelivery; defaults to the bus's configuration.
    ///   - handler: Called once per event (more on redelivery).
    /// - Returns: The subscription.
    /// - Throws: ``EventBusError/Code-swift.struct/shuttingDown`` when the bus is shut down.
    @discardableResult
    public func subscribe<E: Event>(
        to type: E.Type,
        name: String? = nil,
        owner: ServiceName? = nil,
        options: SubscriptionOptions? = nil,
        _ handler: @escaping @Sendable (E, EventEnvelope) async throws -> Void
    ) throws(EventBusError) -> Subscription {
        try self.add(
            name: name ?? E.topic,
            owner: owner,
            filter: .type(ObjectIdentifier(type)),
            options: options
        ) { event, envelope in
            // The filter guarantees the type.
            try await handler(event as! E, envelope)
        }
    }

    /// Subscribes to every event whose topic matches a pattern, whatever its type.
    ///
    /// See ``TopicPattern`` for the syntax; otherwise the same as ``subscribe(to:name:owner:options:_:)``.
    /// - Parameters:
    ///   - pattern: The topic pattern, such as `order.*` or `order.#`.
    ///   - name: A name for metrics, traces and dead letters; defaults to the pattern.
    ///   - owner: The service that owns the subscription.
    ///   - options: Buffering and redelivery.
    ///   - handler: Called once per event (more on redelivery).
    /// - Returns: The subscription.
    /// - Throws: ``EventBusError/Code-swift.struct/shuttingDown`` when the bus is shut down.
    @discardableResult
    public func subscribe(
        pattern: String,
        name: String? = nil,
        owner: ServiceName? = nil,
        options: SubscriptionOptions? = nil,
        _ handler: @escaping @Sendable (any Event, EventEnvelope) async throws -> Void
    ) throws(EventBusError) -> Subscription {
        try self.add(
            name: name ?? pattern,
            owner: owner,
            filter: .pattern(TopicPattern(pattern)),
            options: options,
            handler
        )
    }

    private func add(
        name: String,
        owner: ServiceName?,
        filter: SubscriberFilter,
        options: SubscriptionOptions?,
        _ handler: @escaping Subscriber.Handler
    ) throws(EventBusError) -> Subscription {
        let subscriber = self.state.withLock { state -> Subscriber? in
            guard !state.isClosed else { return nil }
            let subscriber = Subscriber(
                id: SubscriptionID(rawValue: state.nextID),
                name: name,
                owner: owner,
                filter: filter,
                options: options ?? self.configuration.defaultSubscriptionOptions,
                bus: self,
                handler: handler
            )
            state.nextID += 1
            state.subscribers.append(subscriber)
            state.routes.removeAll(keepingCapacity: true)
            return subscriber
        }
        guard let subscriber else {
            throw EventBusError(code: .shuttingDown, topic: name, message: "the bus takes no new subscriptions")
        }
        subscriber.start(executor: self.executor)
        return Subscription(subscriber: subscriber)
    }

    func remove(_ subscriber: Subscriber) {
        self.state.withLock { state in
            state.subscribers.removeAll { $0 === subscriber }
            state.routes.removeAll(keepingCapacity: true)
        }
    }

    /// The live subscriptions, in subscription order.
    public var subscriptions: [Subscription] {
        self.state.withLock { $0.subscribers.map(Subscription.init(subscriber:)) }
    }

    /// Ends every subscription owned by `owner` and waits for their handlers to return.
    /// - Parameter owner: The owning service.
    public func cancelSubscriptions(ownedBy owner: ServiceName) async {
        let owned = self.state.withLock { state in
            let owned = state.subscribers.filter { $0.owner == owner }
            state.subscribers.removeAll { $0.owner == owner }
            state.routes.removeAll(keepingCapacity: true)
            return owned
        }
        for subscriber in owned { await subscriber.stop() }
    }

    /// Stops taking events and subscriptions, ends every subscription and waits for every handler
    /// to return. Events still buffered are discarded and counted in their subscription's
    /// statistics. Safe to call more than once.
    public func shutdown() async {
        let all = self.state.withLock { state in
            state.isClosed = true
            defer {
                state.subscribers.removeAll()
                state.routes.removeAll()
            }
            return state.subscribers
        }
        for subscriber in all { await subscriber.stop() }
    }

    // MARK: Dead letters

    /// The dead letters waiting, oldest first.
    public var deadLetters: [DeadLetter] {
        self.deadLetterQueue.letters
    }

    /// How many dead letters were evicted because the queue was full.
    public var evictedDeadLetters: Int {
        self.deadLetterQueue.evicted
    }

    /// Gives matching dead letters to their subscriptions again, as if newly published (same
    /// envelope), and removes them from the queue. Letters whose subscription has ended stay.
    /// - Parameter predicate: Which letters to replay; all by default.
    /// - Returns: How many letters were replayed.
    @discardableResult
    public func replayDeadLetters(where predicate: (DeadLetter) -> Bool = { _ in true }) async -> Int {
        let live = self.state.withLock { state in
            Dictionary(uniqueKeysWithValues: state.subscribers.map { ($0.id, $0) })
        }
        let taken = self.deadLetterQueue.remove { predicate($0) && live[$0.subscription] != nil }
        var replayed = 0
        var failed: [DeadLetter] = []
        for letter in taken {
            guard let subscriber = live[letter.subscription], self.tracker.enter(nested: true) else {
                failed.append(letter)
                continue
            }
            let outcome = await subscriber.send(
                PublishedEvent(event: letter.event, envelope: letter.envelope),
                mayWait: true
            )
            if outcome == .enqueued { replayed += 1 } else { failed.append(letter) }
        }
        self.deadLetterQueue.putBack(failed)
        return replayed
    }

    /// Removes matching dead letters without replaying them.
    /// - Parameter predicate: Which letters to remove.
    /// - Returns: The removed letters.
    @discardableResult
    public func removeDeadLetters(where predicate: (DeadLetter) -> Bool) -> [DeadLetter] {
        self.deadLetterQueue.remove(where: predicate)
    }
}

/// What happened to one published event.
public struct PublishReceipt: Sendable, Hashable {
    /// The event's id.
    public var id: EventID
    /// How many subscriptions matched.
    public var subscribers: Int
    /// How many of them dropped it (``OverflowPolicy/dropNewest``, or a fault a test injected).
    public var dropped: Int
}
