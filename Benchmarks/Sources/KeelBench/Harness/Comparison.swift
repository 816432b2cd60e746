/// The measurements of one metric: one value per round for each side.
struct Comparison: Sendable {
    /// What was measured.
    var metric: Metric
    /// Ours, nanoseconds per unit, one per round.
    var ours: [Double]
    /// The baseline, nanoseconds per unit, one per round.
    var baseline: [Double]

    /// Ours, median over rounds.
    var oursMedian: Double { Statistics.median(self.ours) }
    /// The baseline, median over rounds.
    var baselineMedian: Double { Statistics.median(self.baseline) }
    /// How many times the baseline's cost ours is: above 1 is slower than the baseline.
    var ratio: Double { self.oursMedian / self.baselineMedian }
    /// What ours costs beyond the baseline, per unit: the difference of the medians.
    var overhead: Double { self.oursMedian - self.baselineMedian }
}
