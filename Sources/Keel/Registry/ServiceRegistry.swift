import KeelCore
import Synchronization

/// The host's directory of service instances: which exist, how healthy each is, and which one a
/// request goes to.
///
/// An instance is in the rotation while its last ``HealthReport`` is live and ready; it leaves
/// when a check says otherwise and returns when a later check says it serves again. Requests pick
/// among serving instances with the service's ``LoadBalancing`` strategy.
///
/// Once the host runs, a request chooses an instance without a lock: which instances serve is one
/// atomic word per service (for up to 64 instances; a service with more takes a short `Mutex`),
/// the rotation's cursor and each instance's outstanding-request count are atomics. Recording a
/// health report takes the lock. Nothing here suspends.
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
        var strategy: LoadBalancing = .roundRobin
    }

    /// The instances of one service behind their own lock, so that a route can hold its service's
    /// pool and pick an instance without looking the service up by name.
    package final class Pool: Sendable {
        let entry = Lock(Entry())
        /// Which of the first 64 instances serve, bit *i* for instance *i*: written under
        /// ``entry``'s lock with every change of health, read without it.
        package let servingMask = Atomic<UInt64>(0)
        /// The rotation's position, shared by every strategy that rotates.
        package let cursor = Atomic<UInt>(0)

        /// Rebuilds the serving list and mask after a change of `entry`'s health or slots; under
        /// the lock.
        func rebuildServing(_ entry: inout Entry) {
            var mask: UInt64 = 0
            var serving: [Slot] = []
            for (index, health) in entry.health.enumerated() where health.isServing {
                serving.append(entry.slots[index])
                if index < 64 { mask |= 1 << UInt64(index) }
            }
            entry.serving = serving
            self.servingMask.store(mask, ordering: .releasing)
        }
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

    /// A pool's instances in registration order and its strategy, once registration is over.
    package func slots(of pool: Pool) -> ([Slot], LoadBalancing) {
        pool.entry.withLock { ($0.slots, $0.strategy) }
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
            if changed { pool.rebuildServing(&entry) }
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

    /// Picks a serving instance from a pool with its service's strategy, under the pool's lock.
    package func pick(from pool: Pool) -> Slot? {
        pool.entry.withLock { entry -> Slot? in
            let count = entry.serving.count
            guard count > 0 else { return nil }
            let position = self.position(among: count, strategy: entry.strategy, pool: pool)
            if entry.strategy.isLeastOutstanding {
                var best = entry.serving[position]
                var bestLoad = best.outstanding.load(ordering: .relaxed)
                for offset in 1..<count {
                    let candidate = entry.serving[(position + offset) % count]
                    let load = candidate.outstanding.load(ordering: .relaxed)
                    if load < bestLoad {
                        best = candidate
                        bestLoad = load
                    }
                }
                return best
            }
            return entry.serving[position]
        }
    }

    /// Picks a serving instance without a lock, from the pool's serving mask: the same choice as
    /// ``pick(from:)`` (the same strategy over the serving instances in registration order).
    /// - Parameters:
    ///   - pool: The pool.
    ///   - slots: Its instances, in registration order; at most 64.
    ///   - strategy: Its strategy.
    /// - Returns: The index in `slots` of the chosen instance, or `nil` when none serves.
    @inline(__always)
    package func pickIndex(from pool: Pool, slots: [Slot], strategy: LoadBalancing) -> Int? {
        // Only the instances in `slots`: one added since (which the host never does once it
        // runs) is not offered.
        let known: UInt64 = slots.count >= 64 ? .max : (1 << UInt64(slots.count)) &- 1
        let mask = pool.servingMask.load(ordering: .acquiring) & known
        let count = mask.nonzeroBitCount
        guard count > 0 else { return nil }
        let position = self.position(among: count, strategy: strategy, pool: pool)
        guard strategy.isLeastOutstanding else { return Self.index(ofSetBit: position, in: mask) }
        var best = Self.index(ofSetBit: position, in: mask)
        var bestLoad = slots[best].outstanding.load(ordering: .relaxed)
        for offset in 1..<count {
            let candidate = Self.index(ofSetBit: (position + offset) % count, in: mask)
            let load = slots[candidate].outstanding.load(ordering: .relaxed)
            if load < bestLoad {
                best = candidate
                bestLoad = load
            }
        }
        return best
    }

    /// Where a choice among `count` serving instances starts: the next turn of the rotation, or
    /// a random position. With one serving instance there is no choice, and the rotation does not
    /// turn.
    @inline(__always)
    private func position(among count: Int, strategy: LoadBalancing, pool: Pool) -> Int {
        if count == 1 { return 0 }
        if strategy.isRandom { return self.random.next(upperBound: count) }
        return Int(pool.cursor.wrappingAdd(1, ordering: .relaxed).oldValue % UInt(count))
    }

    /// The index of the `rank`-th set bit of `mask`, counting from the lowest, from 0.
    @inline(__always)
    private static func index(ofSetBit rank: Int, in mask: UInt64) -> Int {
        var rest = mask
        for _ in 0..<rank { rest &= rest &- 1 }
        return rest.trailingZeroBitCount
    }
}
