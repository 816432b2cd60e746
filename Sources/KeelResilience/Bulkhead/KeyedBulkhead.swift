import KeelCore
import Synchronization

/// One bulkhead per key (a tenant, a customer, a downstream host), made on first use, so that
/// one key's burst cannot take the permits of the others.
///
/// Every key gets the same limits, ``Configuration/perKey``. The number of live keys is bounded
/// by ``Configuration/maxKeys``: when a new key arrives and the bound is reached, keys idle for
/// longer than ``Configuration/idleTimeout`` are evicted, then, if needed, the least recently used
/// key that nobody is using; if every key is in use the call is refused with
/// ``BulkheadError/Code/tooManyKeys``. A key in use (running or waiting) is never evicted.
///
/// ```swift
/// let perTenant = KeyedBulkhead<String>(
///     name: "tenants",
///     configuration: .init(perKey: .init(maxConcurrent: 4, maxQueued: 8), maxKeys: 10_000)
/// )
/// try await perTenant.run(key: request.tenantID) { try await handle(request) }
/// ```
///
/// ## Concurrency contract
/// `Sendable`. The key table sits in a `Mutex` taken briefly before and after each operation;
/// each key's bulkhead has the contract of ``Bulkhead/run(_:)`` (keys make no gauges, so a free
/// permit of an idle queue is taken without a lock whatever the telemetry). Eviction happens on the caller's
/// task, when a new key needs room or when ``evictIdle()`` is called; there is no background
/// task. Metrics are reported once for all keys (rejections and waits with the dimension
/// `bulkhead` = name), never per key, to keep metric cardinality bounded.
public final class KeyedBulkhead<Key: Hashable & Sendable>: Sendable {
    /// The limits of a ``KeyedBulkhead``.
    ///
    /// Invariants, checked with `precondition`: `maxKeys >= 1`; `idleTimeout` is `nil` or not
    /// negative; `perKey` satisfies ``Bulkhead/Configuration``'s.
    public struct Configuration: Sendable, Hashable {
        /// The limits every key gets. Default: ``Bulkhead/Configuration`` with
        /// `maxConcurrent` 4, `maxQueued` 16, `maxWait` one second.
        public var perKey: Bulkhead.Configuration
        /// The most keys alive at once. Default 1,000.
        public var maxKeys: Int
        /// How long a key must be unused before it is evicted when room is needed or
        /// ``KeyedBulkhead/evictIdle()`` runs; `nil` evicts only to make room, least recently
        /// used first. Default five minutes.
        public var idleTimeout: Duration?

        /// Creates a configuration.
        /// - Parameters:
        ///   - perKey: The limits of each key's bulkhead.
        ///   - maxKeys: The most live keys; at least 1.
        ///   - idleTimeout: When an unused key counts as idle; `nil` or not negative.
        public init(
            perKey: Bulkhead.Configuration = .init(maxConcurrent: 4, maxQueued: 16),
            maxKeys: Int = 1_000,
            idleTimeout: Duration? = .seconds(300)
        ) {
            self.perKey = perKey
            self.maxKeys = maxKeys
            self.idleTimeout = idleTimeout
            self.validate()
        }

        func validate() {
            self.perKey.validate()
            precondition(self.maxKeys >= 1, "maxKeys must be at least 1, got \(self.maxKeys)")
            precondition(
                self.idleTimeout.map { $0 >= .zero } ?? true,
                "idleTimeout must not be negative, got \(String(describing: self.idleTimeout))"
            )
        }
    }

    private struct Entry {
        let storage: BulkheadStorage
        var users = 0
        var lastUsedAt: Duration
        var lastUsedTick: UInt64
    }

    private struct Table {
        var entries: [Key: Entry] = [:]
        var tick: UInt64 = 0
        var evicted = 0
    }

    /// The name, in errors and as the `bulkhead` dimension of the metrics.
    public let name: String
    /// The limits.
    public let configuration: Configuration
    private let table = Lock(Table())
    private let clock: any Clock<Duration>
    private let reader: ClockReader
    private let executor: (any TaskExecutor)?
    private let instruments: BulkheadInstruments
    private let evictedCounter: (any TelemetryCounter)?

    /// Creates a keyed bulkhead with no keys.
    /// - Parameters:
    ///   - name: A name for errors and metrics.
    ///   - configuration: The limits; checked with `precondition`.
    ///   - clock: Measures `maxWait`, wait times and idleness; `ContinuousClock` by default.
    ///   - telemetry: Where metrics go; handlers are made here, once, shared by all keys.
    ///   - taskExecutor: The executor preference for the keys' timer tasks.
    public init(
        name: String,
        configuration: Configuration = Configuration(),
        clock: any Clock<Duration> = ContinuousClock(),
        telemetry: any Telemetry = NoOpTelemetry(),
        taskExecutor: (any TaskExecutor)? = nil
    ) {
        configuration.validate()
        self.name = name
        self.configuration = configuration
        self.clock = clock
        self.reader = ClockReader(clock)
        self.executor = taskExecutor
        self.instruments = .make(telemetry, name: name, withGauges: false)
        self.evictedCounter =
            !telemetry.recordsMetrics
            ? nil : telemetry.makeCounter(label: "keel.bulkhead.evicted", dimensions: [("bulkhead", name)])
    }

    /// Runs `operation` in `key`'s bulkhead, making it if it does not exist.
    ///
    /// The key stays alive (cannot be evicted) while the operation waits or runs. Otherwise
    /// behaves as ``Bulkhead/run(_:)``: FIFO per key, cancellation-safe, no permit leaks.
    /// - Parameters:
    ///   - key: Whose limit the operation counts against.
    ///   - operation: The work.
    /// - Returns: What `operation` returns.
    /// - Throws: ``BulkheadError/Code/tooManyKeys`` when a new key finds every live key busy,
    ///   otherwise what ``Bulkhead/run(_:)`` throws.
    public func run<T: Sendable>(key: Key, _ operation: () async throws -> T) async throws -> T {
        let storage = try self.checkOut(key)
        defer { self.checkIn(key) }
        try await storage.acquire(weight: 1)
        defer { storage.release(weight: 1) }
        return try await operation()
    }

    /// The number of keys alive now.
    public var keyCount: Int {
        self.table.withLock { $0.entries.count }
    }

    /// The number of keys evicted so far.
    public var evictedCount: Int {
        self.table.withLock { $0.evicted }
    }

    /// A snapshot of `key`'s bulkhead, or `nil` if the key is not alive.
    /// - Parameter key: The key.
    public func metrics(for key: Key) -> BulkheadMetrics? {
        self.table.withLock { $0.entries[key]?.storage }?.metrics()
    }

    /// Evicts every key unused for at least ``Configuration/idleTimeout``; does nothing when it
    /// is `nil`. Never suspends.
    /// - Returns: How many keys were evicted.
    @discardableResult
    public func evictIdle() -> Int {
        let now = self.reader.now()
        let count = self.table.withLock { self.evictIdle(in: &$0, now: now) }
        if count > 0 { self.evictedCounter?.increment(by: Int64(count)) }
        return count
    }

    // MARK: Internals

    private func checkOut(_ key: Key) throws -> BulkheadStorage {
        let now = self.reader.now()
        let (storage, evicted) = try self.table.withLock { table throws -> (BulkheadStorage, Int) in
            table.tick &+= 1
            if var entry = table.entries[key] {
                entry.users += 1
                entry.lastUsedTick = table.tick
                table.entries[key] = entry
                return (entry.storage, 0)
            }
            var evicted = 0
            if table.entries.count >= self.configuration.maxKeys {
                evicted += self.evictIdle(in: &table, now: now)
            }
            if table.entries.count >= self.configuration.maxKeys {
                // The least recently used key nobody is using; ticks are unique, so the choice
                // does not depend on the dictionary's order.
                let victim = table.entries.filter { $0.value.users == 0 }.min {
                    $0.value.lastUsedTick < $1.value.lastUsedTick
                }
                guard let victim else {
                    throw BulkheadError(
                        code: .tooManyKeys,
                        bulkhead: self.name,
                        message: "all \(table.entries.count) of \(self.configuration.maxKeys) keys are busy"
                    )
                }
                table.entries[victim.key] = nil
                table.evicted += 1
                evicted += 1
            }
            let perKey = self.configuration.perKey
            let storage = BulkheadStorage(
                name: self.name,
                capacity: perKey.maxConcurrent,
                maxQueued: perKey.maxQueued,
                maxWait: perKey.maxWait,
                clock: self.clock,
                executor: self.executor,
                instruments: self.instruments
            )
            table.entries[key] = Entry(storage: storage, users: 1, lastUsedAt: now, lastUsedTick: table.tick)
            return (storage, evicted)
        }
        if evicted > 0 { self.evictedCounter?.increment(by: Int64(evicted)) }
        return storage
    }

    private func checkIn(_ key: Key) {
        let now = self.reader.now()
        self.table.withLock { table in
            guard var entry = table.entries[key] else {
                preconditionFailure("keyed bulkhead \"\(self.name)\": a key in use was evicted")
            }
            entry.users -= 1
            entry.lastUsedAt = now
            table.entries[key] = entry
        }
    }

    private func evictIdle(in table: inout Table, now: Duration) -> Int {
        guard let idleTimeout = self.configuration.idleTimeout else { return 0 }
        let before = table.entries.count
        table.entries = table.entries.filter { $0.value.users > 0 || now - $0.value.lastUsedAt < idleTimeout }
        let evicted = before - table.entries.count
        table.evicted += evicted
        return evicted
    }
}
