import KeelResilience
import Synchronization

/// A call under a ``Timeout`` alone, on each of the timeout's two paths: what bounding a call in
/// time costs.
///
/// Ours is `timeout.execute { the call }` with a one-second timeout on the `ContinuousClock`.
/// Calls are sequential, from the measuring task.
///
/// - ``Call/actor`` (`timeout.call`): the call is `await service.ping()` on an actor (a
///   ``PingService``, used here as a plain actor), and the baseline is that call, bare. The
///   timeout's child task starts on the caller's thread, but a task started that way cannot take
///   over an actor's thread: it is enqueued on the actor and suspends. The caller parks on a
///   continuation with its deadline in the shared timer, and the child resumes it when the call
///   returns: two hand-offs between threads per call. The timer task sleeps once per second, not
///   once per call.
/// - ``Call/inline`` (`timeout.call.inline`): the call bumps an atomic counter and returns without
///   suspending. The child task finishes on the caller's thread before the timeout looks at it:
///   no parking, no timer. The baseline is the floor of running the call in a child task at all:
///   a task group that runs the increment in one immediate child task and takes its result. The
///   ratio is what the timeout adds to that floor: the trace context, its deadline and binding,
///   and the check that the child has finished. (Against the bare increment, a few nanoseconds,
///   the ratio would say only how cheap an increment is.)
final class TimeoutScenario: Scenario {
    /// What the guarded call does.
    enum Call {
        /// The ping on an actor.
        case actor
        /// An atomic increment, which never suspends.
        case inline
    }

    let metrics: [Metric]
    let workload = Workload.calibrated(minimum: 2_000)

    private let call: Call
    private let service = PingService()
    private let counter = Counter()
    private let timeout: Timeout

    /// Creates the scenario.
    /// - Parameters:
    ///   - name: The metric's name.
    ///   - call: What the guarded call does.
    ///   - overheadGoal: The goal for ours minus the baseline, in nanoseconds per call, if any.
    ///   - recorded: The ratio recorded on the project's machine kind.
    init(name: String, call: Call, overheadGoal: Double? = nil, recorded: Double?) {
        self.call = call
        self.timeout = Timeout(name: name, duration: .seconds(1))
        let baseline =
            switch call {
            case .actor:
                "direct `await service.ping()` on an actor; ours: the same in `timeout.execute` (1 s), "
                    + "sequential from one task"
            case .inline:
                "an atomic increment in one immediate child task of a task group; ours: the increment "
                    + "in `timeout.execute` (1 s); sequential from one task"
            }
        self.metrics = [
            Metric(name: name, baseline: baseline, unit: "call", overheadGoal: overheadGoal, recorded: recorded)
        ]
    }

    func setUp() async throws {}

    func runOurs(_ count: Int) async throws -> [Double] {
        let timeout = self.timeout
        let service = self.service
        let counter = self.counter
        let clock = ContinuousClock()
        let start = clock.now
        switch self.call {
        case .actor:
            for _ in 0..<count {
                _ = try await timeout.execute { await service.ping() }
            }
        case .inline:
            for _ in 0..<count {
                _ = try await timeout.execute { counter.increment() }
            }
        }
        return [start.duration(to: clock.now).nanoseconds / Double(count)]
    }

    func runBaseline(_ count: Int) async throws -> [Double] {
        let service = self.service
        let counter = self.counter
        let clock = ContinuousClock()
        let start = clock.now
        switch self.call {
        case .actor:
            for _ in 0..<count {
                _ = await service.ping()
            }
        case .inline:
            for _ in 0..<count {
                _ = await withTaskGroup(of: Int.self) { group in
                    group.addImmediateTask { counter.increment() }
                    return await group.next() ?? 0
                }
            }
        }
        return [start.duration(to: clock.now).nanoseconds / Double(count)]
    }

    func tearDown() async {
        await self.timeout.shutdown()
    }
}

/// The inline call: an atomic increment, out of line as a call into another module would be.
private final class Counter: Sendable {
    private let value = Atomic(0)

    /// Adds one.
    /// - Returns: The new value.
    @inline(never)
    func increment() -> Int {
        self.value.wrappingAdd(1, ordering: .relaxed).newValue
    }
}
