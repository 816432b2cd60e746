/// One result a scenario reports: a line of the table, an object of the JSON array.
struct Metric: Sendable {
    /// The scenario's name as the user filters and reads it (`bus.publish.1`).
    var name: String
    /// A short description of what ours is compared with.
    var baseline: String
    /// What one unit of work is: an operation, an element, a delivery, a sample.
    var unit: String
    /// What the values are: a cost per unit of throughput (the default), a latency or a size.
    var kind = Kind.throughput
    /// The goal for the ratio that the root README's performance tables set, if any.
    var goal: Double? = nil
    /// The goal for the overhead instead, ours minus the baseline in nanoseconds per unit, where
    /// the README sets one (a guarded call against the bare call: its ratio says little, as the
    /// baseline is a few nanoseconds). Reported beside the ratio, not gated: the gate measures the
    /// ratio against ``recorded``.
    var overheadGoal: Double? = nil
    /// The ratio recorded for this metric against this baseline on the project's machine kind
    /// (2 vCPU), if any: what the regression gate measures a run against.
    var recorded: Double? = nil

    /// What a metric's values measure, and so how the report prints them.
    enum Kind: Sendable {
        /// Nanoseconds per unit of work; its inverse is a rate.
        case throughput
        /// A percentile of samples, in nanoseconds; it has no meaningful rate.
        case latency
        /// Bytes per unit: a size (on disk, or of the data it holds) divided by the units it
        /// holds. No rate either; the ratio compares the two sides' sizes.
        case size
    }

    /// The ratio the regression gate compares a run with: the larger of the goal and the recorded
    /// ratio, so that a goal not yet met does not fail every run and a goal met with room to
    /// spare does not make the gate stricter than the goal. `nil` when there is neither.
    var reference: Double? {
        switch (self.goal, self.recorded) {
        case (let goal?, let recorded?): max(goal, recorded)
        case (let goal?, nil): goal
        case (nil, let recorded?): recorded
        case (nil, nil): nil
        }
    }
}

/// How much work one side of a scenario does per round.
enum Workload: Sendable {
    /// Enough units for a round to last the harness's target time, at least `minimum`; the
    /// count is calibrated per side during warm-up.
    case calibrated(minimum: Int)
    /// A fixed number of units (samples), smaller in a quick run.
    case fixed(full: Int, quick: Int)
    /// One measurement of a fixed number of units, smaller in a quick run: no warm-up, and one
    /// round whatever `--rounds` says. For sizes, which the same work reproduces, where a round
    /// is too long to repeat.
    case once(full: Int, quick: Int)
}

/// A measured comparison: the Keel code path ("ours") and a baseline that does the same job with
/// bare primitives, both run in the same process.
///
/// The harness calls ``setUp()`` once, then ``runOurs(_:)`` and ``runBaseline(_:)`` alternately
/// over several rounds, then ``tearDown()``. Each run does `count` units of work and returns one
/// value per metric, in nanoseconds per unit (or a latency in nanoseconds, or bytes per unit for
/// a ``Metric/Kind/size`` metric).
protocol Scenario: AnyObject {
    /// The results, in the order the run methods return their values.
    var metrics: [Metric] { get }
    /// How much work a round does.
    var workload: Workload { get }

    /// Builds what both sides need (a started host, a bus with its subscribers).
    func setUp() async throws
    /// Runs the Keel side.
    /// - Parameter count: The units of work.
    /// - Returns: One value per metric, in nanoseconds (bytes for a size).
    func runOurs(_ count: Int) async throws -> [Double]
    /// Runs the baseline side.
    /// - Parameter count: The units of work.
    /// - Returns: One value per metric, in nanoseconds (bytes for a size).
    func runBaseline(_ count: Int) async throws -> [Double]
    /// Shuts down what ``setUp()`` built.
    func tearDown() async
}
