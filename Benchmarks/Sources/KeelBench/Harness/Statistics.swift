/// Order statistics over measured values.
enum Statistics {
    /// The median; the mean of the two middle values for an even count.
    /// - Parameter values: The values; must not be empty.
    /// - Returns: The median.
    static func median(_ values: [Double]) -> Double {
        precondition(!values.isEmpty, "median of no values")
        let sorted = values.sorted()
        let middle = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
    }

    /// The `fraction` percentile by the nearest-rank method.
    /// - Parameters:
    ///   - fraction: Between 0 and 1 (0.99 for p99).
    ///   - sorted: The values in ascending order; must not be empty.
    /// - Returns: The smallest value with at least `fraction` of the values at or below it.
    static func percentile(_ fraction: Double, ofSorted sorted: [Double]) -> Double {
        precondition(!sorted.isEmpty, "percentile of no values")
        let rank = Int((fraction * Double(sorted.count)).rounded(.up))
        return sorted[min(max(rank, 1), sorted.count) - 1]
    }
}
