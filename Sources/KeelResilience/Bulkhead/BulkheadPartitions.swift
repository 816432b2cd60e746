import KeelCore

/// A set of named bulkheads, one per workload, so that one workload can never take another's
/// permits.
///
/// Each partition is an independent ``Bulkhead`` with its own limits, queue and metrics: when
/// background work fills its two permits and its queue, its callers are refused, while critical
/// callers still find all of theirs free. Isolation is strict; no partition borrows another's
/// idle permits (see the article on isolation and utilisation).
///
/// ```swift
/// let partitions = BulkheadPartitions(name: "orders", partitions: [
///     .critical: .init(maxConcurrent: 10),
///     .normal: .init(maxConcurrent: 5),
///     .background: .init(maxConcurrent: 2, maxQueued: 0),
/// ])
/// try await partitions.run(in: .background) { try await rebuildReport() }
/// ```
///
/// ## Concurrency contract
/// `Sendable` and immutable after creation; each partition's ``Bulkhead`` has the contract of
/// ``Bulkhead/run(_:)``.
public final class BulkheadPartitions: Sendable {
    /// The name shared by the partitions; each bulkhead is named `name.partition`.
    public let name: String
    private let bulkheads: [BulkheadPartition: Bulkhead]

    /// Creates one bulkhead per partition.
    /// - Parameters:
    ///   - name: The name of the set; each bulkhead is called `name.partition`.
    ///   - partitions: The limits of each partition; at least one.
    ///   - clock: The clock for `maxWait` and wait times; `ContinuousClock` by default.
    ///   - telemetry: Where metrics go; each partition reports under its own bulkhead name.
    ///   - taskExecutor: The executor preference for the bulkheads' timer tasks.
    public init(
        name: String,
        partitions: [BulkheadPartition: Bulkhead.Configuration],
        clock: any Clock<Duration> = ContinuousClock(),
        telemetry: any Telemetry = NoOpTelemetry(),
        taskExecutor: (any TaskExecutor)? = nil
    ) {
        precondition(!partitions.isEmpty, "BulkheadPartitions \"\(name)\" needs at least one partition")
        self.name = name
        var bulkheads: [BulkheadPartition: Bulkhead] = [:]
        for (partition, configuration) in partitions {
            bulkheads[partition] = Bulkhead(
                name: "\(name).\(partition.name)",
                configuration: configuration,
                clock: clock,
                telemetry: telemetry,
                taskExecutor: taskExecutor
            )
        }
        self.bulkheads = bulkheads
    }

    /// The configured partitions, sorted by name.
    public var partitions: [BulkheadPartition] {
        self.bulkheads.keys.sorted()
    }

    /// The bulkhead of `partition`, or `nil` if it was not configured.
    /// - Parameter partition: The partition.
    public subscript(partition: BulkheadPartition) -> Bulkhead? {
        self.bulkheads[partition]
    }

    /// Runs `operation` in `partition`'s bulkhead; see ``Bulkhead/run(_:)`` for waiting,
    /// cancellation and errors.
    /// - Parameters:
    ///   - partition: The workload the operation belongs to.
    ///   - operation: The work.
    /// - Returns: What `operation` returns.
    /// - Throws: ``BulkheadError/Code/unknownPartition`` for a partition that was not configured,
    ///   otherwise what ``Bulkhead/run(_:)`` throws.
    public func run<T: Sendable>(in partition: BulkheadPartition, _ operation: () async throws -> T) async throws -> T {
        guard let bulkhead = self.bulkheads[partition] else {
            throw BulkheadError(
                code: .unknownPartition,
                bulkhead: self.name,
                message: "no partition \"\(partition.name)\"; configured: \(self.partitions.map(\.name))"
            )
        }
        return try await bulkhead.run(operation)
    }

    /// A snapshot of every partition's metrics.
    public var metrics: [BulkheadPartition: BulkheadMetrics] {
        self.bulkheads.mapValues(\.metrics)
    }
}
