import KeelCore

/// One service's view of the host's ``EventBus``: it publishes as that service and subscribes
/// on its behalf, and reaches nothing else.
///
/// A service gets its view as ``ServiceEnvironment/bus``. Whatever it publishes carries the
/// service's name as its source, and every subscription it makes is owned by the service, so it
/// ends when the service stops. What it can inspect and manage is its own: its live
/// subscriptions and the dead letters they left.
///
/// ```swift
/// func start(_ environment: ServiceEnvironment) async throws {
///     try environment.bus.subscribe(to: OrderCreated.self) { [self] event, _ in
///         await self.confirm(event)
///     }
///     try await environment.bus.publish(ShopOpened())
/// }
/// ```
///
/// What the view leaves out, and why: ``EventBus/shutdown()`` (the host shuts its bus down),
/// ``EventBus/cancelSubscriptions(ownedBy:)`` (the host ends a service's subscriptions when it
/// stops), the `source:` of ``EventBus/publish(_:source:)`` and the `owner:` of
/// ``EventBus/subscribe(to:name:owner:options:_:)`` (a service speaks only for itself), and the
/// whole bus's ``EventBus/subscriptions`` and dead letters (another service's failures are that
/// service's, or the operator's, through ``ServiceHost/bus``).
public struct ServiceBus: Sendable {
    /// The service this view belongs to: the source of its events, the owner of its subscriptions.
    public let service: ServiceName
    let bus: EventBus

    init(service: ServiceName, bus: EventBus) {
        self.service = service
        self.bus = bus
    }

    /// Publishes an event with this service as its source. See ``EventBus/publish(_:source:)``.
    /// - Parameter event: The event.
    /// - Returns: What happened to the event.
    /// - Throws: ``EventBusError/Code-swift.struct/shuttingDown`` when the bus takes no new events;
    ///   ``EventBusError/Code-swift.struct/cancelled`` when cancelled while waiting for room.
    @discardableResult
    public func publish<E: Event>(_ event: E) async throws(EventBusError) -> PublishReceipt {
        try await self.bus.publish(event, source: self.service)
    }

    /// Subscribes this service to events of one type; the subscription ends when the service
    /// stops. See ``EventBus/subscribe(to:name:owner:options:_:)``.
    /// - Parameters:
    ///   - type: The event type.
    ///   - name: A name for metrics and dead letters; defaults to `service:topic`.
    ///   - options: Buffering and redelivery; defaults to the bus's configuration.
    ///   - handler: Called once per event (more on redelivery), on the subscription's own task.
    /// - Returns: The subscription.
    /// - Throws: ``EventBusError/Code-swift.struct/shuttingDown`` when the bus is shut down.
    @discardableResult
    public func subscribe<E: Event>(
        to type: E.Type,
        name: String? = nil,
        options: SubscriptionOptions? = nil,
        _ handler: @escaping @Sendable (E, EventEnvelope) async throws -> Void
    ) throws(EventBusError) -> Subscription {
        try self.bus.subscribe(
            to: type,
            name: name ?? "\(self.service):\(E.topic)",
            owner: self.service,
            options: options,
            handler
        )
    }

    /// Subscribes this service to events whose topic matches `pattern`; the subscription ends when
    /// the service stops. See ``EventBus/subscribe(pattern:name:owner:options:_:)``.
    /// - Parameters:
    ///   - pattern: The topic pattern, such as `order.*` or `order.#`.
    ///   - name: A name for metrics and dead letters; defaults to `service:pattern`.
    ///   - options: Buffering and redelivery; defaults to the bus's configuration.
    ///   - handler: Called once per event (more on redelivery), on the subscription's own task.
    /// - Returns: The subscription.
    /// - Throws: ``EventBusError/Code-swift.struct/shuttingDown`` when the bus is shut down.
    @discardableResult
    public func subscribe(
        pattern: String,
        name: String? = nil,
        options: SubscriptionOptions? = nil,
        _ handler: @escaping @Sendable (any Event, EventEnvelope) async throws -> Void
    ) throws(EventBusError) -> Subscription {
        try self.bus.subscribe(
            pattern: pattern,
            name: name ?? "\(self.service):\(pattern)",
            owner: self.service,
            options: options,
            handler
        )
    }

    /// This service's live subscriptions, in subscription order, with their statistics.
    public var subscriptions: [Subscription] {
        self.bus.subscriptions.filter { $0.owner == self.service }
    }

    /// The dead letters of this service's live subscriptions, oldest first. (Letters of a
    /// subscription that has ended can no longer be replayed; the operator sees them on
    /// ``ServiceHost/bus``.)
    public var deadLetters: [DeadLetter] {
        let owned = self.ownedIDs()
        return self.bus.deadLetters.filter { owned.contains($0.subscription) }
    }

    /// Gives matching dead letters of this service's live subscriptions to those subscriptions
    /// again, as if newly published (same envelope), and removes them from the queue. See
    /// ``EventBus/replayDeadLetters(where:)``.
    /// - Parameter predicate: Which of this service's letters to replay; all by default.
    /// - Returns: How many letters were replayed.
    @discardableResult
    public func replayDeadLetters(where predicate: (DeadLetter) -> Bool = { _ in true }) async -> Int {
        let owned = self.ownedIDs()
        return await self.bus.replayDeadLetters { owned.contains($0.subscription) && predicate($0) }
    }

    /// Removes matching dead letters of this service's live subscriptions without replaying them.
    /// - Parameter predicate: Which of this service's letters to remove.
    /// - Returns: The removed letters.
    @discardableResult
    public func removeDeadLetters(where predicate: (DeadLetter) -> Bool) -> [DeadLetter] {
        let owned = self.ownedIDs()
        return self.bus.removeDeadLetters { owned.contains($0.subscription) && predicate($0) }
    }

    /// The ids of this service's live subscriptions. Ids are never reused, so a letter that
    /// matches one is this service's even if the subscription ends meanwhile.
    private func ownedIDs() -> Set<SubscriptionID> {
        Set(self.subscriptions.map(\.id))
    }
}
