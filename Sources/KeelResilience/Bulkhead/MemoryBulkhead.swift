import KeelCore

/// A byte budget per category of work, so that large payloads of one kind (image uploads, report
/// exports) cannot take the memory that the others need.
///
/// Work declares how many bytes it will hold with ``withLease(bytes:category:_:)``; the bytes
/// count against the category's budget for the scope of the lease and return when it ends,
/// whether it returns or throws. A lease that does not fit waits in FIFO order (a large lease at
/// the head is not overtaken by small ones) up to ``Configuration/maxWait``, or is refused at
/// once with ``BulkheadError/Code/overBudget`` when ``Configuration/maxQueued`` is 0 (the
/// default) or the queue is full. A lease larger than the whole budget is refused with
/// ``BulkheadError/Code/exceedsCapacity``.
///
/// The budget is an admission limit, not an allocator: it bounds what cooperating callers
/// declare, so declare a generous estimate (for example the request's content length).
///
/// ```swift
/// let memory = MemoryBulkhead<String>(
///     name: "payloads",
///     configuration: .init(budgets: ["uploads": 64 << 20, "exports": 16 << 20])
/// )
/// try await memory.withLease(bytes: upload.contentLength, category: "uploads") {
///     try await store(upload)
/// }
/// ```
///
/// ## Concurrency contract
/// `Sendable`; each category is a weighted semaphore with the costs, cancellation and timeout
/// guarantees of ``Bulkhead``: a lease that fits while nobody waits takes and returns its bytes
/// with compare-and-exchanges on an atomic word (no lock) when the telemetry makes no gauges;
/// otherwise it goes through the category's `Mutex`, FIFO. A cancelled or timed-out waiter
/// leaves the queue and its bytes never leak.
public final class MemoryBulkhead<Category: Hashable & Sendable>: Sendable {
    /// The budgets and waiting rules of a ``MemoryBulkhead``.
    ///
    /// Invariants, checked with `precondition`: at least one category, every budget at least 1
    /// byte, `maxQueued >= 0`, `maxWait` `nil` or positive.
    public struct Configuration: Sendable {
        /// The byte budget of each category.
        public var budgets: [Category: Int]
        /// The most leases waiting per category; 0 (the default) refuses a lease that does not
        /// fit at once with ``BulkheadError/Code/overBudget``.
        public var maxQueued: Int
        /// How long a lease may wait for bytes; `nil` without limit. Default one second.
        public var maxWait: Duration?

        /// Creates a configuration.
        /// - Parameters:
        ///   - budgets: The byte budget of each category.
        ///   - maxQueued: The most leases waiting per category.
        ///   - maxWait: How long a lease may wait.
        public init(budgets: [Category: Int], maxQueued: Int = 0, maxWait: Duration? = .seconds(1)) {
            self.budgets = budgets
            self.maxQueued = maxQueued
            self.maxWait = maxWait
            self.validate()
        }

        func validate() {
            precondition(!self.budgets.isEmpty, "a memory bulkhead needs at least one category")
            for (category, budget) in self.budgets {
                precondition(budget >= 1, "the budget of \(category) must be at least 1 byte, got \(budget)")
            }
            precondition(self.maxQueued >= 0, "maxQueued must not be negative, got \(self.maxQueued)")
            precondition(
                self.maxWait.map { $0 > .zero } ?? true,
                "maxWait must be positive or nil, got \(String(describing: self.maxWait))"
            )
        }
    }

    /// The name, in errors and metrics; each category reports as `name.category`.
    public let name: String
    private let categories: [Category: BulkheadStorage]

    /// Creates a memory bulkhead with nothing leased.
    /// - Parameters:
    ///   - name: A name for errors and metrics.
    ///   - configuration: The budgets; checked with `precondition`.
    ///   - clock: Measures `maxWait` and wait times; `ContinuousClock` by default.
    ///   - telemetry: Where metrics go (`keel.bulkhead.*` in bytes, per category).
    ///   - taskExecutor: The executor preference for the timer tasks.
    public init(
        name: String,
        configuration: Configuration,
        clock: any Clock<Duration> = ContinuousClock(),
        telemetry: any Telemetry = NoOpTelemetry(),
        taskExecutor: (any TaskExecutor)? = nil
    ) {
        configuration.validate()
        self.name = name
        var categories: [Category: BulkheadStorage] = [:]
        for (category, budget) in configuration.budgets {
            let categoryName = "\(name).\(category)"
            categories[category] = BulkheadStorage(
                name: categoryName,
                capacity: budget,
                maxQueued: configuration.maxQueued,
                maxWait: configuration.maxWait,
                clock: clock,
                executor: taskExecutor,
                instruments: .make(telemetry, name: categoryName),
                queueFullCode: .overBudget,
                unit: "bytes"
            )
        }
        self.categories = categories
    }

    /// Holds `bytes` of `category`'s budget while `body` runs.
    ///
    /// Suspends while the bytes do not fit and waiting is allowed; `body` runs on the calling
    /// task, exactly once if the lease is granted. The bytes return when `body` returns or
    /// throws, and go to the oldest waiting lease first. A lease of 0 bytes runs at once.
    /// - Parameters:
    ///   - bytes: How many bytes the work will hold; not negative.
    ///   - category: Whose budget they count against; must be configured.
    ///   - body: The work.
    /// - Returns: What `body` returns.
    /// - Throws: ``BulkheadError`` with ``BulkheadError/Code/overBudget``,
    ///   ``BulkheadError/Code/waitTimedOut``, ``BulkheadError/Code/exceedsCapacity`` or
    ///   ``BulkheadError/Code/unknownPartition`` (an unknown category); `CancellationError` if
    ///   cancelled while waiting; or what `body` throws.
    public func withLease<T: Sendable>(
        bytes: Int,
        category: Category,
        _ body: () async throws -> T
    ) async throws -> T {
        precondition(bytes >= 0, "a lease cannot hold a negative number of bytes, got \(bytes)")
        let storage = try self.storage(for: category)
        guard bytes > 0 else { return try await body() }
        try await storage.acquire(weight: bytes)
        defer { storage.release(weight: bytes) }
        return try await body()
    }

    /// A snapshot of `category`'s budget, in bytes (``BulkheadMetrics/inFlight`` counts leases),
    /// or `nil` for an unknown category.
    /// - Parameter category: The category.
    public func metrics(for category: Category) -> BulkheadMetrics? {
        self.categories[category]?.metrics()
    }

    private func storage(for category: Category) throws -> BulkheadStorage {
        guard let storage = self.categories[category] else {
            throw BulkheadError(
                code: .unknownPartition,
                bulkhead: self.name,
                message: "no budget for the category \(category)"
            )
        }
        return storage
    }
}
