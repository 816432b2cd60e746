import Keel

/// Publish-to-handler latency on an idle bus against the bare wake-up of a parked task.
///
/// Each sample waits a short gap so that the subscriber's task is parked again, reads the clock,
/// publishes one event and waits for the handler's own clock reading: the sample is the time from
/// before `publish` to the handler's start. The baseline resumes a task parked on a continuation
/// and takes the time until that task runs. Reports the p50 and the p99 of each round's samples.
/// Each side has one waiting task (the subscriber's handler task, made in ``setUp()``; the
/// baseline's parked task, made per round) and the measuring task, on the cooperative pool (one
/// thread per core).
final class LatencyScenario: Scenario {
    let metrics: [Metric]
    let workload = Workload.fixed(full: 2_000, quick: 200)

    /// The idle time before each sample.
    private static let gap = Duration.microseconds(50)

    private let signal = InstantSignal()
    private var bus: EventBus?

    /// Creates the scenario.
    /// - Parameters:
    ///   - prefix: The metrics' common prefix; the scenario reports `prefix.p50` and
    ///     `prefix.p99`.
    ///   - recordedP50: The p50 ratio recorded on the project's machine kind.
    ///   - recordedP99: The p99 ratio recorded on the project's machine kind.
    init(prefix: String, recordedP50: Double?, recordedP99: Double?) {
        let baseline =
            "resume a task parked on a continuation; time until it runs; ours: publish one event, time "
            + "until the handler starts; 50 µs idle before each sample, one waiting task, \(Machine.pool)"
        self.metrics = [
            Metric(
                name: "\(prefix).p50",
                baseline: "\(baseline) (p50)",
                unit: "sample",
                kind: .latency,
                recorded: recordedP50
            ),
            Metric(
                name: "\(prefix).p99",
                baseline: "\(baseline) (p99)",
                unit: "sample",
                kind: .latency,
                recorded: recordedP99
            ),
        ]
    }

    func setUp() async throws {
        let bus = EventBus()
        try bus.subscribe(to: Tick.self, name: "bench.latency") { [signal] _, _ in
            signal.fire(ContinuousClock.now)
        }
        self.bus = bus
    }

    func runOurs(_ count: Int) async throws -> [Double] {
        let bus = self.bus!
        var samples: [Double] = []
        samples.reserveCapacity(count)
        for sequence in 0..<count {
            try await Task.sleep(for: Self.gap)
            let start = ContinuousClock.now
            try await bus.publish(Tick(sequence: sequence))
            let started = await self.signal.wait()
            samples.append(start.duration(to: started).nanoseconds)
        }
        return Self.percentiles(samples)
    }

    func runBaseline(_ count: Int) async throws -> [Double] {
        let parker = Parker()
        let signal = self.signal
        return try await withThrowingDiscardingTaskGroup(returning: [Double].self) { group in
            group.addTask {
                while await parker.park() {
                    signal.fire(ContinuousClock.now)
                }
            }
            // The waiting task must end on every path, or the group would never return.
            defer { parker.close() }
            var samples: [Double] = []
            samples.reserveCapacity(count)
            for _ in 0..<count {
                try await Task.sleep(for: Self.gap)
                let start = ContinuousClock.now
                parker.wake()
                let started = await signal.wait()
                samples.append(start.duration(to: started).nanoseconds)
            }
            return Self.percentiles(samples)
        }
    }

    func tearDown() async {
        await self.bus?.shutdown()
        self.bus = nil
    }

    private static func percentiles(_ samples: [Double]) -> [Double] {
        let sorted = samples.sorted()
        return [Statistics.percentile(0.5, ofSorted: sorted), Statistics.percentile(0.99, ofSorted: sorted)]
    }
}
