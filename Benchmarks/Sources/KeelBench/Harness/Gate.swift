/// The ratio gate of `--check` and `--max-regression`: a metric fails when its measured ratio is
/// more than `factor` times its ``Metric/reference`` (the recorded goal or ratio).
///
/// A ratio, not an absolute time, is gated: both sides of a comparison run interleaved in the
/// same process, so a busy machine slows both and moves the ratio far less than the nanoseconds.
/// Still, a quick run has one 15 ms round, and on a shared 2-core machine a scenario that hands
/// work between tasks can come out several times off in one round (a time slice of another
/// process lands on one side). So a metric over its bound is measured again, with a fresh
/// instance of its scenario and the median of at least ``retryRounds`` rounds, up to ``retries``
/// more times, each after a pause of ``retryPause`` (a burst of noise on a shared machine, such as
/// CPU taken by its host, can last longer than one measurement), and fails only when every
/// measurement is over: noise rarely repeats over seconds, a regression does.
struct Gate {
    /// How many times a metric over its bound is measured again before it fails.
    static let retries = 4
    /// How long the gate waits before measuring a metric again.
    static let retryPause = Duration.seconds(3)
    /// The fewest rounds of a measurement made again; the round length stays the run's.
    static let retryRounds = 5

    /// The multiple of the reference a ratio may reach.
    let factor: Double

    /// The ratio a metric's ratio may not exceed, or `nil` when the metric has no reference.
    /// - Parameter metric: The metric.
    /// - Returns: `factor × reference`.
    func bound(for metric: Metric) -> Double? {
        metric.reference.map { $0 * self.factor }
    }

    /// Whether a measurement is within its bound. A metric without a reference always passes;
    /// a ratio that is not a finite number (a baseline that measured zero) never does.
    /// - Parameter comparison: The measurement.
    /// - Returns: `true` when it passes.
    func passes(_ comparison: Comparison) -> Bool {
        guard let bound = self.bound(for: comparison.metric) else { return true }
        return comparison.ratio.isFinite && comparison.ratio <= bound
    }

    /// One line for standard error saying what was checked and how it came out.
    /// - Parameters:
    ///   - comparison: The measurement.
    ///   - attempt: Which measurement of the metric this is, from 1.
    /// - Returns: The line.
    func line(for comparison: Comparison, attempt: Int) -> String {
        let metric = comparison.metric
        let prefix =
            "check \(metric.name)"
            + (attempt > 1 ? " (measurement \(attempt) of \(Self.retries + 1), \(Self.retryRounds)+ rounds)" : "")
        guard let reference = metric.reference, let bound = self.bound(for: metric) else {
            return "\(prefix): ratio \(Self.ratio(comparison.ratio)), no goal or recorded ratio: not checked"
        }
        let source: String
        switch (metric.goal, metric.recorded) {
        case (let goal?, let recorded?) where goal >= recorded:
            source = "goal (met: recorded \(Self.ratio(recorded)))"
        case (let goal?, _?):
            source = "recorded (goal \(Self.ratio(goal)) not met)"
        case (_?, nil):
            source = "goal"
        default:
            source = "recorded"
        }
        let verdict = self.passes(comparison) ? "ok" : "OVER"
        return
            "\(prefix): ratio \(Self.ratio(comparison.ratio)), reference \(Self.ratio(reference)) \(source), "
            + "bound \(Report.fixed(self.factor, decimals: 1)) × \(Self.ratio(reference)) = \(Self.ratio(bound)): "
            + verdict
    }

    /// A ratio as the lines print it: `1.74x`, `11.6x`.
    private static func ratio(_ value: Double) -> String {
        Report.fixed(value, decimals: value < 10 ? 2 : 1) + "x"
    }
}
