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

    /// The instances of one service behind their own lock, so that a route can hold its service's
    /// pool and pick an instance without looking the service up by name.
    package final class Pool: Sendable {
        let entry = Mutex(Entry())
    }

    private let pools = Mutex<[ServiceName: Pool]>([:])
    private let random: RandomSource

    /// Creates an empty registry.
    /// - Parameter random: The source for ``LoadBalancing/random``.
    public init(random: RandomSource) {
        self.random = random
    }

    /// The pool of `service`, made on first use.
    package func pool(for service: ServiceName) -> Pool {
        self.pools.withLock { pools in
            if let pool = pools[service] { return pool }
            let pool = Pool()
            pools[service] = pool
            return pool
        }
    }

    private func existingPool(for service: ServiceName) -> Pool? {
        self.pools.withLock { $0[service] }
    }

    /// Adds an instance, not yet serving (``HealthReport/notReady(_:)`` "starting").
    package func add(_ id: InstanceID, strategy: LoadBalancing) {
        self.pool(for: id.service).entry.withLock { entry in
            entry.slots.append(Slot(id: id))
            entry.health.append(.notReady("starting"))
            entry.strategy = strategy
        }
    }

    /// The services known to the registry, sorted by name.
    public var services: [ServiceName] {
        self.pools.withLock { $0.keys.sorted() }
    }

    /// The instances of `service` and their status, in registration order.
    /// - Parameter service: The service.
    /// - Returns: Its instances; empty for an unknown service.
    public func instances(of service: ServiceName) -> [InstanceStatus] {
        guard let pool = self.existingPool(for: service) else { return [] }
        return pool.entry.withLock { entry in
            zip(entry.slots, entry.health).map {
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
        guard let pool = self.existingPool(for: instance.service) else { return false }
        return pool.entry.withLock { entry in
            guard entry.slots.indices.contains(instance.index) else { return false }
            let changed = entry.health[instance.index].isServing != report.isServing
            entry.health[instance.index] = report
            if changed { entry.rebuildServing() }
            return changed
        }
    }

    /// Picks a serving instance of `service` without reserving it.
    /// - Parameter service: The service.
    /// - Returns: The chosen instance, or `nil` when none serves.
    public func choose(_ service: ServiceName) -> InstanceID? {
        guard let pool = self.existingPool(for: service) else { return nil }
        return self.pick(from: pool)?.id
    }

    /// Picks a serving instance from a pool with its service's strategy.
    package func pick(from pool: Pool) -> Slot? {
        pool.entry.withLock { entry -> Slot? in
            let count = entry.serving.count
            guard count > 0 else { return nil }
            if entry.strategy.isRoundRobin {
                defer { entry.cursor &+= 1 }
                return entry.serving[entry.cursor % count]
            }
            if entry.strategy.isRandom {
                return entry.serving[self.random.next(upperBound: count)]
            }
            let start = entry.cursor % count
            entry.cursor &+= 1
            var best = entry.serving[start]
            var bestLoad = best.outstanding.load(ordering: .relaxed)
            for offset in 1..<count {
                let candidate = entry.serving[(start + offset) % count]
                let load = candidate.outstanding.load(ordering: .relaxed)
                if load < bestLoad {
                    best = candidate
                    bestLoad = load
                }
            }
            return best
        }
    }
}
