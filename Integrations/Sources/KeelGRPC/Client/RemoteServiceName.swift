import Keel

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
}
