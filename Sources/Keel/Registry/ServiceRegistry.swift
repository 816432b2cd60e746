import KeelCore
import Synchronization

/// The host's directory of service instances: which exist, how healthy each is, and which one a
/// request goes to.
///
/// An instance is in the rotation while its last ``HealthReport`` is live and ready; it leaves
/// when a check says otherwise and returns when a later check says it serves again. Requests pick
/// among serving instances with the service's ``LoadBalancing`` strategy.
///
/// Choosing an instance takes one short `Mutex`; the outstanding-request count of each instance is
/// an atomic. Nothing here suspends.
public final class ServiceRegistry: Sendable {
    /// What the registry knows about one instance.
    public struct InstanceStatus: Sendable, Hashable, CustomStringConvertible {
        /// The instance.
        public var id: InstanceID
        /// Its last health report.
        public var health: HealthReport
        /// Requests in flight on it now.
        public var outstanding: Int

        /// `id: health, outstanding`.
        public var description: String { "\(self.id): \(self.health), \(self.outstanding) in flight" }
    }

    /// One instance's live counters. A reference so that a chosen instance can be released
    /// without taking the registry's lock again.
    package final class Slot: Sendable {
        package let id: InstanceID
        package let outstanding = Atomic<Int>(0)

        init(id: InstanceID) {
            self.id = id
        }
    }

    struct Entry {
        var slots: [Slot] = []
        var health: [HealthReport] = []
        var serving: [Slot] = []
        var cursor = 0
        var strategy: LoadBalancing = .roundRobin

        mutating func rebuildServing() {
            self.serving = zip(self.slots, self.health).filter { $0.1.isServing }.map(\.0)
        }
    }

    private let state = Mutex<[ServiceName: Entry]>([:])
    private let random: RandomSource

    /// Creates an empty registry.
    /// - Parameter random: The source for ``LoadBalancing/random``.
    public init(random: RandomSource) {
        self.random = random
    }

    /// Adds an instance, not yet serving (``HealthReport/notReady(_:)`` "starting").
    package func add(_ id: InstanceID, strategy: LoadBalancing) {
        self.state.withLock { services in
            services[id.service, default: Entry()].slots.append(Slot(id: id))
            services[id.service]!.health.append(.notReady("starting"))
            services[id.service]!.strategy = strategy
        }
    }

    /// The services known to the registry, sorted by name.
    public var services: [ServiceName] {
        self.state.withLock { $0.keys.sorted() }
    }

    /// The instances of `service` and their status, in registration order.
    /// - Parameter service: The service.
    /// - Returns: Its instances; empty for an unknown service.
    public func instances(of service: ServiceName) -> [InstanceStatus] {
        self.state.withLock { services in
            guard let entry = services[service] else { return [] }
            return zip(entry.slots, entry.health).map {
                InstanceStatus(id: $0.0.id, health: $0.1, outstanding: $0.0.outstanding.load(ordering: .relaxed))
            }
        }
    }

    /// Records a health report for an instance; it enters or leaves the rotation accordingly.
    /// - Parameters:
    ///   - report: The report.
    ///   - instance: The instance. Unknown instances are ignored.
    /// - Returns: Whether the instance's serving state changed.
    @discardableResult
    public func setHealth(_ report: HealthReport, for instance: InstanceID) -> Bool {
        self.state.withLock { services in
            guard var entry = services[instance.service], entry.slots.indices.contains(instance.index) else {
                return false
            }
            let changed = entry.health[instance.index].isServing != report.isServing
            entry.health[instance.index] = report
            if changed { entry.rebuildServing() }
            services[instance.service] = entry
            return changed
        }
    }

    /// Picks a serving instance of `service` without reserving it.
    /// - Parameter service: The service.
    /// - Returns: The chosen instance, or `nil` when none serves.
    public func choose(_ service: ServiceName) -> InstanceID? {
        self.pick(service)?.id
    }

    /// Picks a serving instance with the service's strategy.
    package func pick(_ service: ServiceName) -> Slot? {
        self.state.withLock { services -> Slot? in
            guard var entry = services[service], !entry.serving.isEmpty else { return nil }
            let count = entry.serving.count
            let chosen: Slot
            if entry.strategy.isRoundRobin {
                chosen = entry.serving[entry.cursor % count]
                entry.cursor &+= 1
            } else if entry.strategy.isRandom {
                chosen = entry.serving[self.random.next(upperBound: count)]
            } else {
                let start = entry.cursor % count
                var best = entry.serving[start]
                var bestLoad = best.outstanding.load(ordering: .relaxed)
                for offset in 1..<max(count, 1) {
                    let candidate = entry.serving[(start + offset) % count]
                    let load = candidate.outstanding.load(ordering: .relaxed)
                    if load < bestLoad {
                        best = candidate
                        bestLoad = load
                    }
                }
                entry.cursor &+= 1
                chosen = best
            }
            services[service] = entry
            return chosen
        }
    }
}
