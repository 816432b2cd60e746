import Foundation
import KeelCore
import KeelEventSourcing

/// What a service receives when it starts: its identity, its clock, its telemetry, the bus,
/// a request client that reaches only the services it declared, and its own storage
/// (``storage()``).
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
/// Events published through the environment carry the service's name as their source, and
/// subscriptions made through it end when the service stops.
public struct ServiceEnvironment: Sendable {
    /// The service's name.
    public let name: ServiceName
    /// This instance's id.
    public let instanceID: InstanceID
    /// The host's clock; wait on it rather than on a clock of your own, so tests can drive time.
    public let clock: any Clock<Duration>
    /// Where metrics and spans go.
    public let telemetry: any Telemetry
    /// The host's random source; draw from it so runs can be replayed from a seed.
    public let random: RandomSource
    /// The host's event bus.
    public let bus: EventBus
    /// A request client limited to the service's declared dependencies.
    public let requests: RequestClient
    /// The host's registry, to look up instances and their health.
    public let registry: ServiceRegistry
    /// The host's storage, from which ``storage()`` takes this service's namespace.
    let hostStorage: HostStorage
    /// The host's wall clock, for the time of durable publications.
    let wallClock: @Sendable () -> Date

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
    /// across restarts. The event carries the current trace's ids.
    ///
    /// Events that an aggregate of this service appends need no separate publication: durable
    /// subscribers of their types receive them from the same append.
    /// - Parameter event: The event.
    /// - Returns: Where it landed; its position is what
    ///   ``DurableSubscription/waitUntilDelivered(through:)`` waits for.
    /// - Throws: ``/KeelEventSourcing/EventCodecError`` when the event does not encode, or what
    ///   ``storage()`` and the store's append throw.
    @discardableResult
    public func publishDurably<E: DomainEvent>(_ event: E) async throws -> AppendResult {
        let storage = try await self.storage()
        let nanoseconds = Int64(self.wallClock().timeIntervalSince1970 * 1_000_000_000)
        let metadata = EventMetadata.current(id: EventID.random(using: self.random), time: nanoseconds)
        let data = try EventSerializer().encode(event, metadata: metadata)
        return try await storage.events.append(data, to: "$outbox", expecting: .any)
    }

    /// Subscribes durably to events of type `E` from every service of the host: those published
    /// with ``publishDurably(_:)`` and those aggregates append. Delivery is at least once, in
    /// global order, from where this subscription (by `name`) left off in an earlier run; a
    /// handler that keeps failing parks the event as a failed publication and the subscription
    /// goes on. The subscription's checkpoint and failures live in this service's storage; the
    /// host stops it before it stops this service.
    /// - Parameters:
    ///   - type: The event type.
    ///   - name: The subscription's name, unique within this service; it names its checkpoint.
    ///   - configuration: Attempts and backoff for a failing handler (waits on the host's clock,
    ///     jitter from its random source), and what to do after the last one.
    ///   - handler: Called once per event (again after a crash before its checkpoint was
    ///     committed: make it idempotent, for example by the event's id).
    /// - Returns: The subscription, to inspect and resubmit its publications.
    /// - Throws: What ``storage()`` throws.
    public func subscribeDurably<E: DomainEvent>(
        to type: E.Type,
        name: String,
        configuration: ProjectionRunner.Configuration = ProjectionRunner.Configuration(),
        _ handler: @escaping @Sendable (E, RecordedEvent) async throws -> Void
    ) async throws -> DurableSubscription {
        let storage = try await self.storage()
        let shared = try await self.hostStorage.sharedStore()
        let eventType = E.eventType
        let view = FilteredEventView(base: shared) { $0.type == eventType }
        let checkpoints = try await self.hostStorage.stateNamespace(
            "durable-\(name)",
            of: self.name,
            events: storage.events
        )
        let runner = ProjectionRunner(
            projection: DeliveryProjection(name: name, serializer: EventSerializer(), handler: handler),
            eventStore: view,
            projectionStore: ProjectionStore(keyValueStore: checkpoints),
            configuration: configuration,
            clock: self.clock,
            random: self.random,
            executor: self.hostStorage.executor
        )
        try await self.hostStorage.start(runner, for: self.name)
        return DurableSubscription(name: name, runner: runner, view: view)
    }

    /// Publishes an event with this service as its source. See ``EventBus/publish(_:source:)``.
    /// - Parameter event: The event.
    /// - Returns: What happened to the event.
    /// - Throws: ``EventBusError`` when the bus refuses it.
    @discardableResult
    public func publish<E: Event>(_ event: E) async throws(EventBusError) -> PublishReceipt {
        try await self.bus.publish(event, source: self.name)
    }

    /// Subscribes to events of one type; the subscription ends when this service stops. See
    /// ``EventBus/subscribe(to:name:owner:options:_:)``.
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
        try self.bus.subscribe(
            to: type,
            name: name ?? "\(self.name):\(E.topic)",
            owner: self.name,
            options: options,
            handler
        )
    }

    /// Subscribes to events whose topic matches `pattern`; the subscription ends when this service
    /// stops. See ``EventBus/subscribe(pattern:name:owner:options:_:)``.
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
        try self.bus.subscribe(
            pattern: pattern,
            name: name ?? "\(self.name):\(pattern)",
            owner: self.name,
            options: options,
            handler
        )
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
