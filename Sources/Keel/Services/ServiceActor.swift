import KeelEventSourcing

/// A service: an actor that owns its state and talks to other services only by request and event.
///
/// A service names itself and the services it calls, declares the requests it handles, and
/// reacts to the lifecycle the ``ServiceHost`` drives:
///
/// ```swift
/// actor UserService: ServiceActor {
///     static let name: ServiceName = "user"
///     private var users: [Int: String] = [1: "Ada"]
///
///     nonisolated func registerHandlers(_ handlers: inout RequestHandlers<UserService>) {
///         handlers.on(GetUser.self) { service, request in
///             guard let name = service.users[request.id] else { throw UserError.unknown }
///             return name
///         }
///     }
/// }
/// ```
///
/// A handler runs on the service's actor: the actor is the mailbox, and a request is a direct
/// call on it. The state is therefore reachable only through the actor, by request or by event.
///
/// Every hook has a default: ``dependencies`` and ``publishes`` are empty,
/// ``registerHandlers(_:)`` registers nothing, ``start(_:)`` and ``stop()`` do nothing, and
/// ``health()`` reports healthy.
///
/// A service gets exactly its capabilities (``ServiceEnvironment``): a bus that publishes and
/// subscribes only as itself, a registry it can only read, requests only to the services in
/// ``dependencies``, its own storage, and durable publications only of the types in
/// ``publishes``.
public protocol ServiceActor: Actor {
    /// The service's name, shared by all of its instances.
    static var name: ServiceName { get }

    /// The services this one sends requests to. The host refuses to start when one is missing or
    /// when they form a cycle, and a request to a service not listed here fails with
    /// ``RequestError/Code-swift.struct/undeclaredDependency``.
    static var dependencies: [ServiceName] { get }

    /// The durable event types this service publishes: the events of these types that it
    /// publishes with ``ServiceEnvironment/publishDurably(_:)`` or that its aggregates append
    /// cross its boundary, and other services may subscribe to them durably
    /// (``ServiceEnvironment/subscribeDurably(to:name:configuration:_:)``). Its other events stay
    /// private, whatever their type names.
    ///
    /// ```swift
    /// static let publishes: [any DomainEvent.Type] = [OrderPlaced.self]
    /// ```
    ///
    /// Publishing an undeclared type fails, and so does a durable subscription to a type no
    /// service declares, with ``HostError/Code-swift.struct/undeclaredPublication``.
    static var publishes: [any DomainEvent.Type] { get }

    /// Declares the requests this service handles and the events it subscribes to. Called once per
    /// instance before it starts: when it is registered, or, for an instance its factory builds
    /// (``ServiceHost/register(_:loadBalancing:_:)``), when the factory has built it.
    /// - Parameter handlers: The table to add handlers and subscriptions to.
    nonisolated func registerHandlers(_ handlers: inout RequestHandlers<Self>)

    /// Starts the service. Called once, after every service it depends on has started.
    ///
    /// Keep what the environment offers, or start what the service owns (a projection runner),
    /// here. Subscriptions declared in ``registerHandlers(_:)`` are made when this returns;
    /// subscriptions can also be made here, through the environment. Throwing stops this service
    /// (``stop()`` is called, to release what it set up before it threw) and every service that
    /// already started, in reverse order, and fails ``ServiceHost/start()``.
    ///
    /// A service whose dependencies exist only once it runs (repositories on its storage) can
    /// instead be built by a factory with them, as non-optional `let`s: see
    /// ``ServiceHost/register(_:loadBalancing:_:)``.
    /// - Parameter environment: The service's identity, clock, bus, request client and
    ///   telemetry.
    /// - Throws: Any error, to refuse to start.
    func start(_ environment: ServiceEnvironment) async throws

    /// Stops the service. Called once, after its subscriptions have ended and before the services
    /// it depends on stop, also when this service's own ``start(_:)`` threw: release what was set
    /// up and skip what was not. An error is reported and the host goes on stopping the others.
    /// - Throws: Any error; it is reported, not rethrown by the host.
    func stop() async throws

    /// Reports the instance's health. Called on the host's schedule.
    /// - Returns: Liveness and readiness.
    func health() async -> HealthReport
}

extension ServiceActor {
    /// No dependencies.
    public static var dependencies: [ServiceName] { [] }

    /// No durable publications.
    public static var publishes: [any DomainEvent.Type] { [] }

    /// Registers no handlers.
    /// - Parameter handlers: Unused.
    public nonisolated func registerHandlers(_ handlers: inout RequestHandlers<Self>) {}

    /// Does nothing.
    /// - Parameter environment: Unused.
    public func start(_ environment: ServiceEnvironment) async throws {}

    /// Does nothing.
    public func stop() async throws {}

    /// Reports ``HealthReport/healthy``.
    /// - Returns: ``HealthReport/healthy``.
    public func health() async -> HealthReport { .healthy }
}
