/// The name of a workload that gets its own share of a bulkhead or pool.
///
/// Three names come predefined (``critical``, ``normal``, ``background``); make others with
/// ``init(_:)``. Partitions compare by name.
public struct BulkheadPartition: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The partition's name, used in errors and metric names.
    public let name: String

    /// Creates a partition name.
    /// - Parameter name: The name, such as `analytics`.
    public init(_ name: String) {
        self.name = name
    }

    /// Work that must go on when everything else is shed: user-facing requests, payments.
    public static let critical = BulkheadPartition("critical")
    /// Ordinary work.
    public static let normal = BulkheadPartition("normal")
    /// Work that can wait or be refused: reports, analytics, reindexing.
    public static let background = BulkheadPartition("background")

    /// Orders partitions by name.
    /// - Parameters:
    ///   - lhs: A partition.
    ///   - rhs: Another partition.
    /// - Returns: Whether `lhs`'s name sorts first.
    public static func < (lhs: BulkheadPartition, rhs: BulkheadPartition) -> Bool {
        lhs.name < rhs.name
    }

    /// The name.
    public var description: String {
        self.name
    }
}
