import KeelCore
import Synchronization

/// A pool of reusable resources (connections, sessions, clients) with a separate maximum per
/// partition, so that one workload can never exhaust the resources another needs.
///
/// Each partition has its own limit, its own queue of waiting callers and its own idle
/// resources; analytics can hold all of its five connections while the user service still gets
/// its twenty. ``withResource(in:_:)`` lends a resource for a scope: an idle one if there is one,
/// else a new one from the factory; waiting for a free slot is bounded by
/// ``Configuration/maxWait``. When the scope ends the resource is validated: a valid one goes back
/// to the partition's idle list, an invalid one is discarded through `discard` and its slot freed.
///
/// ```swift
/// let connections = ResourcePool<Connection>(
///     name: "db",
///     configuration: .init(limits: [.critical: 20, .background: 5], maxWait: .milliseconds(200)),
///     make: { _ in try await Connection.open() },
///     validate: { await $0.isHealthy },
///     discard: { await $0.close() }
/// )
/// let user = try await connections.withResource(in: .critical) { try await $0.fetchUser(id) }
/// ```
///
/// ## Concurrency contract
/// `Sendable`. Slots per partition are counted as a ``Bulkhead``'s permits are (lock-free while
/// a slot is free, nobody waits and the telemetry makes no gauges; a `Mutex` state machine
/// otherwise), with its FIFO, timeout and cancellation guarantees; the idle lists sit in a
/// separate `Mutex` taken briefly. `make`, `validate` and `discard` run on the calling task,
/// outside every lock, while the caller holds a slot; a resource is used by one scope at a time.
/// ``drain()`` discards the idle resources; resources lent out at that moment are validated and
/// kept as usual when they come back.
public final class ResourcePool<Resource: Sendable>: Sendable {
    /// The limits of a ``ResourcePool``.
    ///
    /// Invariants, checked with `precondition`: at least one partition, every limit at least 1,
    /// `maxQueued >= 0`, `maxWait` `nil` or positive.
    public struct Configuration: Sendable, Hashable {
        /// The most resources each partition may hold, lent out and idle together.
        public var limits: [BulkheadPartition: Int]
        /// The most callers waiting per partition. Default 100.
        public var maxQueued: Int
        /// How long a caller may wait for a resource; `nil` without limit. Default one second.
        public var maxWait: Duration?

        /// Creates a configuration.
        /// - Parameters:
        ///   - limits: The most resources per partition.
        ///   - maxQueued: The most waiting callers per partition.
        ///   - maxWait: How long a caller may wait.
        public init(limits: [BulkheadPartition: Int], maxQueued: Int = 100, maxWait: Duration? = .seconds(1)) {
            self.limits = limits
            self.maxQueued = maxQueued
            self.maxWait = maxWait
            self.validate()
        }

        func validate() {
            precondition(!self.limits.isEmpty, "a resource pool needs at least one partition")
            for (partition, limit) in self.limits {
                precondition(limit >= 1, "the limit of partition \(partition) must be at least 1, got \(limit)")
            }
            precondition(self.maxQueued >= 0, "maxQueued must not be negative, got \(self.maxQueued)")
            precondition(
                self.maxWait.map { $0 > .zero } ?? true,
                "maxWait must be positive or nil, got \(String(describing: self.maxWait))"
            )
        }
    }

    private final class Partition: Sendable {
        let slots: BulkheadStorage
        let idle = Lock<[Resource]>([])

        init(slots: BulkheadStorage) {
            self.slots = slots
        }
    }

    /// The pool's name, in errors and metrics; each partition reports as `name.partition`.
    public let name: String
    /// The limits.
    public let configuration: Configuration
    private let partitions: [BulkheadPartition: Partition]
    private let make: @Sendable (BulkheadPartition) async throws -> Resource
    private let validate: @Sendable (Resource) async -> Bool
    private let discard: @Sendable (Resource) async -> Void

    /// Creates an empty pool; resources are made on demand.
    /// - Parameters:
    ///   - name: A name for errors and metrics.
    ///   - configuration: The limits; checked with `precondition`.
    ///   - clock: Measures `maxWait`; `ContinuousClock` by default.
    ///   - telemetry: Where metrics go, per partition.
    ///   - taskExecutor: The executor preference for the timer tasks.
    ///   - make: Makes a resource for a partition; runs on the calling task while it holds a slot.
    ///   - validate: Says whether a returned resource may be lent again; `true` by default.
    ///   - discard: Disposes of an invalid or drained resource; does nothing by default.
    public init(
        name: String,
        configuration: Configuration,
        clock: any Clock<Duration> = ContinuousClock(),
        telemetry: any Telemetry = NoOpTelemetry(),
        taskExecutor: (any TaskExecutor)? = nil,
        make: @escaping @Sendable (BulkheadPartition) async throws -> Resource,
        validate: @escaping @Sendable (Resource) async -> Bool = { _ in true },
        discard: @escaping @Sendable (Resource) async -> Void = { _ in }
    ) {
        configuration.validate()
        self.name = name
        self.configuration = configuration
        var partitions: [BulkheadPartition: Partition] = [:]
        for (partition, limit) in configuration.limits {
            let partitionName = "\(name).\(partition.name)"
            partitions[partition] = Partition(
                slots: BulkheadStorage(
                    name: partitionName,
                    capacity: limit,
                    maxQueued: configuration.maxQueued,
                    maxWait: configuration.maxWait,
                    clock: clock,
                    executor: taskExecutor,
                    instruments: .make(telemetry, name: partitionName),
                    unit: "resources"
                )
            )
        }
        self.partitions = partitions
        self.make = make
        self.validate = validate
        self.discard = discard
    }

    /// Suspends until at least `count` callers wait for a resource of `partition` at once: a
    /// handshake for tests (see ``Bulkhead/waitForQueued(count:)``). Returns at once when that
    /// many already wait.
    /// - Parameters:
    ///   - count: How many queued callers to wait for.
    ///   - partition: A configured partition.
    /// - Throws: ``BulkheadError`` with ``BulkheadError/Code/unknownPartition`` for a partition the
    ///   pool was not configured with.
    public func waitForQueued(count: Int, in partition: BulkheadPartition) async throws(BulkheadError) {
        let pool = try self.pool(of: partition)
        await pool.slots.waitForQueued(count: count)
    }

    /// The slots and idle resources of `partition`.
    /// - Throws: ``BulkheadError/Code/unknownPartition`` for a partition not configured.
    private func pool(of partition: BulkheadPartition) throws(BulkheadError) -> Partition {
        guard let pool = self.partitions[partition] else {
            throw BulkheadError(
                code: .unknownPartition,
                bulkhead: self.name,
                message: "no partition \"\(partition.name)\"; configured: \(self.partitions.keys.sorted().map(\.name))"
            )
        }
        return pool
    }

    /// Lends a resource of `partition` to `body` for its scope.
    ///
    /// Waits (FIFO, up to `maxWait`) while the partition's resources are all lent out; then
    /// takes the most recently returned idle resource, or makes a new one. When `body` returns or
    /// throws, the resource is validated and either kept idle or discarded, then the slot is
    /// freed for the next waiter. If `make` throws, the slot is freed and the error rethrown.
    /// - Parameters:
    ///   - partition: The workload asking; must be configured.
    ///   - body: The work; it must not keep the resource beyond its scope.
    /// - Returns: What `body` returns.
    /// - Throws: ``BulkheadError`` (``BulkheadError/Code/unknownPartition``,
    ///   ``BulkheadError/Code/queueFull``, ``BulkheadError/Code/waitTimedOut``),
    ///   `CancellationError` if cancelled while waiting, what `make` throws, or what `body` throws.
    public func withResource<T: Sendable>(
        in partition: BulkheadPartition,
        _ body: (Resource) async throws -> T
    ) async throws -> T {
        let pool = try self.pool(of: partition)
        try await pool.slots.acquire(weight: 1)
        let resource: Resource
        do {
            if let idle = pool.idle.withLock({ $0.popLast() }) {
                resource = idle
            } else {
                resource = try await self.make(partition)
            }
        } catch {
            pool.slots.release(weight: 1)
            throw error
        }
        let result: Result<T, any Error>
        do {
            result = .success(try await body(resource))
        } catch {
            result = .failure(error)
        }
        if await self.validate(resource) {
            pool.idle.withLock { $0.append(resource) }
        } else {
            await self.discard(resource)
        }
        pool.slots.release(weight: 1)
        return try result.get()
    }

    /// Discards every idle resource of every partition, in partition-name order.
    public func drain() async {
        for partition in self.partitions.keys.sorted() {
            let idle = self.partitions[partition]!.idle.withLock { idle in
                defer { idle.removeAll() }
                return idle
            }
            for resource in idle { await self.discard(resource) }
        }
    }

    /// The number of idle resources of `partition` now.
    /// - Parameter partition: The partition.
    public func idleCount(in partition: BulkheadPartition) -> Int {
        self.partitions[partition]?.idle.withLock { $0.count } ?? 0
    }

    /// A snapshot of `partition`'s slots (``BulkheadMetrics/inFlight`` counts resources lent out),
    /// or `nil` for an unknown partition.
    /// - Parameter partition: The partition.
    public func metrics(for partition: BulkheadPartition) -> BulkheadMetrics? {
        self.partitions[partition]?.slots.metrics()
    }
}
