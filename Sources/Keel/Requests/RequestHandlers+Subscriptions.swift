import KeelEventSourcing

extension RequestHandlers {
    /// Declares a subscription to events of one type, which the host makes for each instance when
    /// it has started, and ends before it stops.
    ///
    /// The same as ``ServiceEnvironment/subscribe(to:name:options:_:)`` called at the end of
    /// ``ServiceActor/start(_:)``, except that the handler receives the service's actor isolated,
    /// so it reads and changes the service's state directly. It runs on the subscription's own
    /// task, one event at a time, with the envelope's trace context bound; what it throws is
    /// redelivered per the options, then dead-lettered.
    ///
    /// ```swift
    /// handlers.subscribe(to: OrderCreated.self) { service, event, envelope in
    ///     try await service.confirm(event)
    /// }
    /// ```
    /// - Parameters:
    ///   - type: The event type.
    ///   - name: A name for metrics and dead letters; defaults to `service:topic`.
    ///   - options: Buffering and redelivery; defaults to the bus's configuration.
    ///   - handler: Called once per event (more on redelivery), given the isolated service, the
    ///     event and its envelope.
    public mutating func subscribe<E: Event>(
        to type: E.Type,
        name: String? = nil,
        options: SubscriptionOptions? = nil,
        _ handler: @escaping @Sendable (isolated Service, E, EventEnvelope) async throws -> Void
    ) {
        let service = self.service
        self.subscriptions.append(
            DeclaredSubscription(durableType: nil) { environment in
                try environment.bus.subscribe(to: type, name: name, options: options) { event, envelope in
                    try await handler(service, event, envelope)
                }
            }
        )
    }

    /// Declares a subscription to events of one type whose handler also gets the instance's
    /// ``ServiceEnvironment``, for handlers that send requests or publish events. Otherwise the
    /// same as the form whose handler takes the service, the event and the envelope.
    /// - Parameters:
    ///   - type: The event type.
    ///   - name: A name for metrics and dead letters; defaults to `service:topic`.
    ///   - options: Buffering and redelivery; defaults to the bus's configuration.
    ///   - handler: Called once per event (more on redelivery), given the isolated service, the
    ///     event, its envelope and the environment the instance was started with.
    public mutating func subscribe<E: Event>(
        to type: E.Type,
        name: String? = nil,
        options: SubscriptionOptions? = nil,
        _ handler: @escaping @Sendable (isolated Service, E, EventEnvelope, ServiceEnvironment) async throws -> Void
    ) {
        let service = self.service
        self.subscriptions.append(
            DeclaredSubscription(durableType: nil) { environment in
                try environment.bus.subscribe(to: type, name: name, options: options) { event, envelope in
                    try await handler(service, event, envelope, environment)
                }
            }
        )
    }

    /// Declares a subscription to every event whose topic matches `pattern`, which the host makes
    /// for each instance when it has started, and ends before it stops. See
    /// ``subscribe(to:name:options:_:)-(_,_,_,(Service,E,EventEnvelope)->Void)``.
    /// - Parameters:
    ///   - pattern: The topic pattern, such as `order.*` or `order.#`.
    ///   - name: A name for metrics and dead letters; defaults to `service:pattern`.
    ///   - options: Buffering and redelivery; defaults to the bus's configuration.
    ///   - handler: Called once per event (more on redelivery), given the isolated service, the
    ///     event and its envelope.
    public mutating func subscribe(
        pattern: String,
        name: String? = nil,
        options: SubscriptionOptions? = nil,
        _ handler: @escaping @Sendable (isolated Service, any Event, EventEnvelope) async throws -> Void
    ) {
        let service = self.service
        self.subscriptions.append(
            DeclaredSubscription(durableType: nil) { environment in
                try environment.bus.subscribe(pattern: pattern, name: name, options: options) { event, envelope in
                    try await handler(service, event, envelope)
                }
            }
        )
    }

    /// Declares a durable subscription to events of type `E`, which the host makes once per
    /// service, with its first instance, when that instance has started, and stops before it
    /// stops. (A durable subscription's checkpoint is the service's: a runner per instance would
    /// deliver every event once per instance.) Its handler runs on that first instance.
    ///
    /// The same as ``ServiceEnvironment/subscribeDurably(to:name:configuration:_:)`` called at the
    /// end of ``ServiceActor/start(_:)`` (at least once, in global order, from where the
    /// subscription left off), except that the handler receives the service's actor isolated, and
    /// that the host checks the declaration before it starts anything: when no registered service
    /// declares `E` in ``ServiceActor/publishes``, ``ServiceHost/start()`` fails with
    /// ``HostError/Code-swift.struct/undeclaredPublication``. The subscription's handle is
    /// ``ServiceEnvironment/durableSubscription(named:)``.
    /// - Parameters:
    ///   - type: The event type.
    ///   - name: The subscription's name, unique within the service; it names its checkpoint.
    ///   - configuration: Attempts and backoff for a failing handler, and what to do after the
    ///     last one.
    ///   - handler: Called once per event (again after a crash before its checkpoint was
    ///     committed: make it idempotent), given the isolated service, the event and the stored
    ///     record.
    public mutating func subscribeDurably<E: DomainEvent>(
        to type: E.Type,
        name: String,
        configuration: ProjectionRunner.Configuration = ProjectionRunner.Configuration(),
        _ handler: @escaping @Sendable (isolated Service, E, RecordedEvent) async throws -> Void
    ) {
        let service = self.service
        self.subscriptions.append(
            DeclaredSubscription(durableType: type) { environment in
                _ = try await environment.subscribeDurably(to: type, name: name, configuration: configuration) {
                    event,
                    recorded in
                    try await handler(service, event, recorded)
                }
            }
        )
    }
}

/// A subscription a service declared, made by the host with the instance's environment.
struct DeclaredSubscription: Sendable {
    /// The event type of a durable subscription, which some service must declare; `nil` for a
    /// bus subscription.
    var durableType: (any DomainEvent.Type)?
    /// Makes the subscription.
    var make: @Sendable (ServiceEnvironment) async throws -> Void
}
