import Keel
import KeelEventSourcing

/// Names a service that lives in another process, for the ``RemoteService`` that stands in for
/// it: `RemoteService<Payments>` is registered under `Payments.name`.
///
/// A host names a service by its type (``/Keel/ServiceActor/name`` is static), so each remote
/// service gets a type of its own; an empty enum does:
///
/// ```swift
/// enum Payments: RemoteServiceName {
///     static let name: ServiceName = "payment"
/// }
/// ```
public protocol RemoteServiceName: Sendable {
    /// The remote service's name, as its own host knows it and as this host's callers declare it
    /// in their ``/Keel/ServiceActor/dependencies``.
    static var name: ServiceName { get }

    /// The remote service's durable publications, as it declares them in its own
    /// ``/Keel/ServiceActor/publishes``; default none.
    ///
    /// Name them when this host's services subscribe durably to them
    /// (``/Keel/ServiceEnvironment/subscribeDurably(to:name:configuration:_:)``) through an event
    /// store both hosts share: a host delivers only publications of services it knows to
    /// publish them, and ``RemoteService`` declares these.
    static var publishes: [any DomainEvent.Type] { get }
}

extension RemoteServiceName {
    /// No durable publications.
    public static var publishes: [any DomainEvent.Type] { [] }
}
