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
        let entry = Lock(Entry())
    }

    private struct Watcher {
        var instance: InstanceID
        var predicate: @Sendable (HealthReport) -> Bool
        var continuation: CheckedContinuation<Void, Never>
    }

    private let pools = Lock<[ServiceName: Pool]>([:])
    private let watchers = Lock<[UInt64: Watcher]>([:])
    private let nextWatcher = Atomic<UInt64>(0)
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
        let (known, changed) = pool.entry.withLock { entry -> (Bool, Bool) in
            guard entry.slots.indices.contains(instance.index) else { return (false, false) }
            let changed = entry.health[instance.index].isServing != report.isServing
            entry.health[instance.index] = report
            if changed { entry.rebuildServing() }
            return (true, changed)
        }
        if known {
            let satisfied = self.watchers.withLock { watchers -> [CheckedContinuation<Void, Never>] in
                let matching = watchers.filter { $0.value.instance == instance && $0.value.predicate(report) }
                for key in matching.keys { watchers.removeValue(forKey: key) }
                return matching.values.map(\.continuation)
            }
            for continuation in satisfied { continuation.resume() }
        }
        return changed
    }

    /// Suspends until the instance's health satisfies `predicate`: at once if it already does,
    /// otherwise when a report that does is recorded. Returns early when the task is cancelled.
    ///
    /// Useful to wait until an instance is ready, or, in tests, until a health check has taken an
    /// instance out of the rotation.
    /// - Parameters:
    ///   - instance: The instance.
    ///   - predicate: The condition on its health report; called under a lock, keep it cheap.
    public func waitForHealth(
        of instance: InstanceID,
        where predicate: @escaping @Sendable (HealthReport) -> Bool
    ) async {
        let id = self.nextWatcher.wrappingAdd(1, ordering: .relaxed).oldValue
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = self.watchers.withLock { watchers -> Bool in
                    // Read the health under the watchers' lock: a report recorded after this
                    // read finds the watcher registered.
                    let current = self.instances(of: instance.service).first { $0.id == instance }?.health
                    if let current, predicate(current) { return true }
                    if Task.isCancelled { return true }
                    watchers[id] = Watcher(instance: instance, predicate: predicate, continuation: continuation)
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let watcher = self.watchers.withLock { $0.removeValue(forKey: id) }
            watcher?.continuation.resume()
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
