/// One result a scenario reports: a line of the table, an object of the JSON array.
struct Metric: Sendable {
    /// The scenario's name as the user filters and reads it (`bus.publish.1`).
    var name: String
    /// A short description of what ours is compared with.
    var baseline: String
    /// What one unit of work is: an operation, an element, a delivery, a sample.
    var unit: String
    /// Whether the value is a latency (a percentile of samples) rather than a cost per unit of
    /// throughput; a latency has no meaningful rate.
    var isLatency = false
    /// The goal for the ratio that the root README's performance tables set, if any.
    var goal: Double? = nil
    /// The ratio recorded for this metric against this baseline on the project's machine kind
    /// (2 vCPU), if any: what the regression gate measures a run against.
    var recorded: Double? = nil

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
}

/// A measured comparison: the Keel code path ("ours") and a baseline that does the same job with
/// bare primitives, both run in the same process.
///
/// The harness calls ``setUp()`` once, then ``runOurs(_:)`` and ``runBaseline(_:)`` alternately
/// over several rounds, then ``tearDown()``. Each run does `count` units of work and returns one
/// value per metric, in nanoseconds per unit (or a latency in nanoseconds).
protocol Scenario: AnyObject {
    /// The results, in the order the run methods return their values.
    var metrics: [Metric] { get }
    /// How much work a round does.
    var workload: Workload { get }

    /// Builds what both sides need (a started host, a bus with its subscribers).
    func setUp() async throws
    /// Runs the Keel side.
    /// - Parameter count: The units of work.
    /// - Returns: One value per metric, in nanoseconds.
    func runOurs(_ count: Int) async throws -> [Double]
    /// Runs the baseline side.
    /// - Parameter count: The units of work.
    /// - Returns: One value per metric, in nanoseconds.
    func runBaseline(_ count: Int) async throws -> [Double]
    /// Shuts down what ``setUp()`` built.
    func tearDown() async
}
