import KeelCore

/// A read-only view of the host's ``ServiceRegistry``: which instances exist and how healthy
/// they are, without the means to change either.
///
/// A service gets it as ``ServiceEnvironment/registry``, to look up its peers (for example to
/// report, or to wait until a service it relies on is ready). It cannot take an instance out of
/// the rotation or put one in (``ServiceRegistry/setHealth(_:for:)``), nor move a service's
/// load-balancing cursor (``ServiceRegistry/choose(_:)``): health is the host's to record, from
/// each instance's own ``ServiceActor/health()``, and routing is the request channel's.
///
/// ```swift
/// let inventory = environment.registry.instances(of: "inventory")
/// let serving = inventory.filter { $0.health.isServing }.count
/// ```
public struct ReadOnlyRegistry: Sendable {
    let registry: ServiceRegistry

    init(_ registry: ServiceRegistry) {
        self.registry = registry
    }

    /// The services known to the registry, sorted by name.
    public var services: [ServiceName] {
        self.registry.services
    }

    /// The instances of `service` and their status, in registration order. See
    /// ``ServiceRegistry/instances(of:)``.
    /// - Parameter service: The service.
    /// - Returns: Its instances; empty for an unknown service.
    public func instances(of service: ServiceName) -> [ServiceRegistry.InstanceStatus] {
        self.registry.instances(of: service)
    }

    /// The last health report of one instance.
    /// - Parameter instance: The instance.
    /// - Returns: Its report; `nil` for an unknown instance.
    public func health(of instance: InstanceID) -> HealthReport? {
        self.registry.instances(of: instance.service).first { $0.id == instance }?.health
    }

    /// Suspends until the instance's health satisfies `predicate`. See
    /// ``ServiceRegistry/waitForHealth(of:where:)``: returns at once if it already does, and early
    /// when the calling task is cancelled.
    /// - Parameters:
    ///   - instance: The instance.
    ///   - predicate: The condition on its health report; called under a lock, keep it cheap.
    public func waitForHealth(
        of instance: InstanceID,
        where predicate: @escaping @Sendable (HealthReport) -> Bool
    ) async {
        await self.registry.waitForHealth(of: instance, where: predicate)
    }
}
