import KeelCore
import KeelEventSourcing

/// What a service receives when it starts: its identity, its clocks, its telemetry, its view of
/// the bus, a request client that reaches only the services it declared, a read-only view of the
/// registry, and its own storage (``storage()``).
///
/// ```swift
/// func start(_ environment: ServiceEnvironment) async throws {
///     self.environment = environment
///     try environment.subscribe(to: OrderCreated.self) { [self] event, _ in
///         await self.notify(event)
///     }
/// }
/// ```
///
/// A service gets exactly its own capabilities. Events published through the environment carry
/// the service's name as their source, and subscriptions made through it are the service's and end
/// when it stops (``ServiceBus``); it can look up instances and their health but not change them
/// (``ReadOnlyRegistry``); it reaches only its own storage; and it publishes durably only the
/// event types it declares in ``ServiceActor/publishes``. The host keeps the whole bus and
/// registry (``ServiceHost/bus``, ``ServiceHost/registry``) for operators and tests.
public struct ServiceEnvironment: Sendable {
    /// The service's name.
    public let name: ServiceName
    /// This instance's id.
    public let instanceID: InstanceID
    /// The host's clock; wait on it rather than on a clock of your own, so tests can drive time.
    public let clock: any Clock<Duration>
    /// Where metrics, spans and logs go.
    public let telemetry: any Telemetry
    /// The host's random source; draw from it so runs can be replayed from a seed.
    public let random: RandomSource
    /// The host's wall clock (``ServiceHost/Configuration/wallClock``): read the time of day from
    /// it, and give it to what stamps times (an aggregate repository, see
    /// ``makeRepository(_:serializer:configuration:)``), so that a test can fix it.
    public let wallClock: WallClock
    /// The service's view of the host's event bus: it publishes as this service and subscribes
    /// on its behalf.
    public let bus: ServiceBus
    /// A request client limited to the service's declared dependencies.
    public let requests: RequestClient
    /// A read-only view of the host's registry, to look up instances and their health.
    public let registry: ReadOnlyRegistry
    /// This instance's logger: records go through ``telemetry`` with the service's name, the
    /// instance and the current trace context.
    public var logger: ServiceLogger {
        ServiceLogger(instance: self.instanceID, telemetry: self.telemetry)
    }
    /// The host's storage, from which ``storage()`` takes this service's namespace.
    let hostStorage: HostStorage

    /// The task executor preference of the tasks the host starts, for components of Keel's other
    /// modules that start tasks on a service's behalf (a saga runner).
    package var executor: (any TaskExecutor)? { self.hostStorage.executor }
    /// Every registered service's declared durable publications.
    let publications: PublicationCatalog

    /// This service's own storage: its streams and its key-value store in the host's event store
    /// (see ``ServiceStorage``), opened the first time any service asks.
    ///
    /// Only this environment hands out this service's namespace. Where the data lives is the
    /// host's ``ServiceHost/Configuration/storage`` (an embedded directory by default; in memory
    /// under KeelTesting's `TestHost`).
    /// - Returns: The service's storage.
    /// - Throws: ``/KeelEventSourcing/EventStoreError`` when the host's store cannot be opened (a
    ///   second process holds its directory, damage on disk) or has been closed by shutdown;
    ///   ``/KeelEventSourcing/KeyValueStoreError`` when the key-value store cannot be read.
    public func storage() async throws -> ServiceStorage {
        try await self.hostStorage.storage(for: self.name)
    }

    /// Appends `event` durably to this service's outbox stream, for the host's durable
    /// subscribers (``subscribeDurably(to:name:configuration:_:)``) to receive at least once,
    /// across restarts. The event carries the current trace's ids and the host's wall-clock time.
    ///
    /// Only the types the service declares in ``ServiceActor/publishes`` may be published: they
    /// are its durable API. Events of a declared type that an aggregate of this service appends
    /// need no separate publication: durable subscribers of the type receive them from the same
    /// append.
    /// - Parameter event: The event.
    /// - Returns: Where it landed; its position is what
    ///   ``DurableSubscription/waitUntilDelivered(through:)`` waits for.
    /// - Throws: ``HostError`` with ``HostError/Code-swift.struct/undeclaredPublication`` when the
    ///   service does not declare `E`; ``/KeelEventSourcing/EventCodecError`` when the event does
    ///   not encode, or what ``storage()`` and the store's append throw.
    @discardableResult
    public func publishDurably<E: DomainEvent>(_ event: E) async throws -> AppendResult {
        try await self.publishDurably(event, id: nil)
    }

    /// ``publishDurably(_:)`` with the event's id given rather than drawn: a component that may
    /// publish the same event again after a crash (a process manager's outbox) gives it the same
    /// id each time, so that subscribers that deduplicate by event id see one event.
    /// - Parameters:
    ///   - event: The event.
    ///   - id: The event's id; `nil` draws one from the host's random source.
    /// - Returns: Where it landed.
    /// - Throws: What ``publishDurably(_:)`` throws.
    @discardableResult
    package func publishDurably<E: DomainEvent>(_ event: E, id: EventID?) async throws -> AppendResult {
        guard self.publications.declares(self.name, E.self) else {
            throw HostError(
                code: .undeclaredPublication,
                services: [self.name],
                message:
                    "\(self.name) publishes \(E.eventType) (\(E.self)) durably but does not declare it in `publishes`"
            )
        }
        let storage = try await self.storage()
        let metadata = EventMetadata.current(
            id: id ?? EventID.random(using: self.random),
            time: self.wallClock.nanosecondsSinceEpoch()
        )
        let data = try EventSerializer().encode(event, metadata: metadata)
        return try await storage.events.append(data, to: "$outbox", expecting: .any)
    }

    /// Subscribes durably to events of type `E` from the services that declare it in
    /// ``ServiceActor/publishes``: those they publish with ``publishDurably(_:)`` and those their
    /// aggregates append. Delivery is at least once, in global order, from where this
    /// subscription (by `name`) left off in an earlier run; a handler that keeps failing parks the
    /// event as a failed publication and the subscription goes on. The subscription's checkpoint
    /// and failures live in this service's storage; the host stops it before it stops this
    /// service.
    ///
    /// Events are matched by the publishing service and the type, not by the stored type name
    /// alone: an event of a service that does not declare `E` is never delivered, even when its
    /// type name is `E`'s (a private aggregate event stays private).
    ///
    /// The handler runs in the publisher's trace, as a bus subscriber's does: its
    /// ``/KeelCore/TraceContext/current`` has the event's trace and correlation ids (from its
    /// metadata), a new span whose parent is the publishing span, and the event's id as
    /// causation; requests it sends and events it publishes carry them on.
    /// - Parameters:
    ///   - type: The event type.
    ///   - name: The subscription's name, unique within this service (all its instances); it names
    ///     its checkpoint.
    ///   - configuration: Attempts and backoff for a failing handler (waits on the host's clock,
    ///     jitter from its random source), and what to do after the last one.
    ///   - handler: Called once per event (again after a crash before its checkpoint was
    ///     committed: make it idempotent, for example by the event's id).
    /// - Returns: The subscription, to inspect and resubmit its publications.
    /// - Throws: ``HostError`` with ``HostError/Code-swift.struct/undeclaredPublication`` when no
    ///   registered service declares `E`, or with
    ///   ``HostError/Code-swift.struct/duplicateSubscription`` when this service (any of its
    ///   instances) already runs a durable subscription named `name`; what ``storage()`` throws.
    public func subscribeDurably<E: DomainEvent>(
        to type: E.Type,
        name: String,
        configuration: ProjectionRunner.Configuration = ProjectionRunner.Configuration(),
        _ handler: @escaping @Sendable (E, RecordedEvent) async throws -> Void
    ) async throws -> DurableSubscription {
        let publishers = self.publications.publishers(of: E.self)
        guard !publishers.isEmpty else {
            throw HostError(
                code: .undeclaredPublication,
                services: [self.name],
                message:
                    "\(self.name) subscribes durably to \(E.eventType) (\(E.self)), which no service declares in `publishes`"
            )
        }
        let storage = try await self.storage()
        let shared = try await self.hostStorage.sharedStore()
        let eventType = E.eventType
        let namespaces = Set(publishers.map { Substring(HostStorage.namespace(for: $0)) })
        let view = FilteredEventView(base: shared) {
            $0.type == eventType && namespaces.contains(PublicationCatalog.namespace(of: $0.stream))
        }
        let checkpoints = try await self.hostStorage.stateNamespace(
            "durable-\(name)",
            of: self.name,
            events: storage.events
        )
        let runner = ProjectionRunner(
            projection: DeliveryProjection(
                name: name,
                serializer: EventSerializer(),
                random: self.random,
                handler: handler
            ),
            eventStore: view,
            projectionStore: ProjectionStore(keyValueStore: checkpoints),
            configuration: configuration,
            clock: self.clock,
            random: self.random,
            executor: self.hostStorage.executor,
            telemetry: self.telemetry
        )
        let subscription = DurableSubscription(name: name, runner: runner, view: view)
        try await self.hostStorage.start(subscription, for: self.name)
        return subscription
    }

    /// This service's running durable subscription named `name`: the handle of one declared with
    /// ``RequestHandlers/subscribeDurably(to:name:configuration:_:)``, or made with
    /// ``subscribeDurably(to:name:configuration:_:)``.
    /// - Parameter name: The subscription's name.
    /// - Returns: The subscription; `nil` when none by that name runs (not made yet, or stopped).
    public func durableSubscription(named name: String) async -> DurableSubscription? {
        await self.hostStorage.subscription(named: name, of: self.name)
    }

    /// Makes an aggregate repository on this service's own streams (``ServiceStorage/events``)
    /// with the host's clock, random source, wall clock and telemetry: the events it appends are
    /// stamped with the host's time and ids, and its backoff waits on the host's clock.
    ///
    /// ```swift
    /// let customers = try await environment.makeRepository(
    ///     Customer.self,
    ///     serializer: EventSerializer(registry: EventTypeRegistry([CustomerRegistered.self]))
    /// )
    /// ```
    /// - Parameters:
    ///   - type: The aggregate type.
    ///   - serializer: Encodes and decodes the aggregate's events.
    ///   - configuration: The snapshot settings.
    /// - Returns: The repository.
    /// - Throws: What ``storage()`` throws.
    public func makeRepository<A: Aggregate>(
        _ type: A.Type = A.self,
        serializer: EventSerializer,
        configuration: AggregateRepository<A>.Configuration = AggregateRepository<A>.Configuration()
    ) async throws -> AggregateRepository<A> {
        AggregateRepository<A>(
            store: try await self.storage().events,
            serializer: serializer,
            configuration: configuration,
            clock: self.clock,
            random: self.random,
            wallClock: self.wallClock,
            telemetry: self.telemetry
        )
    }

    /// Publishes an event with this service as its source. See ``ServiceBus/publish(_:)``.
    /// - Parameter event: The event.
    /// - Returns: What happened to the event.
    /// - Throws: ``EventBusError`` when the bus refuses it.
    @discardableResult
    public func publish<E: Event>(_ event: E) async throws(EventBusError) -> PublishReceipt {
        try await self.bus.publish(event)
    }

    /// Subscribes to events of one type; the subscription ends when this service stops. See
    /// ``ServiceBus/subscribe(to:name:options:_:)``.
    /// - Parameters:
    ///   - type: The event type.
    ///   - name: A name for metrics and dead letters; defaults to `service:topic`.
    ///   - options: Buffering and redelivery.
    ///   - handler: Called once per event (more on redelivery).
    /// - Returns: The subscription.
    /// - Throws: ``EventBusError`` when the bus is shut down.
    @discardableResult
    public func subscribe<E: Event>(
        to type: E.Type,
        name: String? = nil,
        options: SubscriptionOptions? = nil,
        _ handler: @escaping @Sendable (E, EventEnvelope) async throws -> Void
    ) throws(EventBusError) -> Subscription {
        try self.bus.subscribe(to: type, name: name, options: options, handler)
    }

    /// Subscribes to events whose topic matches `pattern`; the subscription ends when this service
    /// stops. See ``ServiceBus/subscribe(pattern:name:options:_:)``.
    /// - Parameters:
    ///   - pattern: The topic pattern.
    ///   - name: A name for metrics and dead letters; defaults to `service:pattern`.
    ///   - options: Buffering and redelivery.
    ///   - handler: Called once per event (more on redelivery).
    /// - Returns: The subscription.
    /// - Throws: ``EventBusError`` when the bus is shut down.
    @discardableResult
    public func subscribe(
        pattern: String,
        name: String? = nil,
        options: SubscriptionOptions? = nil,
        _ handler: @escaping @Sendable (any Event, EventEnvelope) async throws -> Void
    ) throws(EventBusError) -> Subscription {
        try self.bus.subscribe(pattern: pattern, name: name, options: options, handler)
    }

    /// Sends a request to a declared dependency. See ``RequestClient/send(_:deadline:)``.
    /// - Parameters:
    ///   - request: The request.
    ///   - deadline: A deadline for this call.
    /// - Returns: The response.
    /// - Throws: A ``RequestError``.
    public func send<R: ServiceRequest>(
        _ request: R,
        deadline: Deadline? = nil
    ) async throws(RequestError) -> R.Response {
        try await self.requests.send(request, deadline: deadline)
    }
}
