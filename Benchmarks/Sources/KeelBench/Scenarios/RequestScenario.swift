import Keel

/// A request round trip through a started ``ServiceHost`` against a direct call on a service
/// actor, from one caller or from several concurrent callers, on one instance of the service or
/// spread over several.
///
/// Ours is `host.client.send(Ping())`: the route, resolved once per client and request type (an
/// atomic load and an array probe, no lock, no dictionary), work tracking and the cancellation
/// check (a few atomic operations), a new trace context bound as a task-local around the handler,
/// the instance choice without a lock (round-robin, the host's default, over the serving instances:
/// one atomic word, and the rotation's cursor when more than one serves) and its outstanding count,
/// then the handler on the chosen instance's actor, reached and left with the same two executor
/// switches as a direct call. The baseline is `await service.ping()`, the hop onto an actor alone.
/// The host uses the default `NoOpTelemetry`, so no span is started; health checks are off so that
/// no timer wakes up during a round.
///
/// Binding the trace context is the largest part of what ours adds (on the project's machine kind,
/// about 70 ns of CPU against about 50 ns for the whole direct call: the push takes the task's
/// status lock, and `withValue` adds two executor checks), and it is what every handler needs to
/// see its context and to have its own requests and events accepted while the host drains; see
/// the root README for where the rest goes.
///
/// Concurrent callers are child tasks of a task group: tasks, not threads; all of them share the
/// cooperative pool, one thread per core. With one instance, every call of both sides queues on
/// the same actor, so the scenario measures contention on it. With one instance per caller, ours
/// registers the service that many times and the router spreads the calls round-robin; the
/// baseline's caller *i* calls its own actor *i*.
final class RequestScenario: Scenario {
    let metrics: [Metric]
    let workload = Workload.calibrated(minimum: 2_000)

    private let callers: Int
    /// The service instances: the host's registrations and the baseline's actors.
    private let services: [PingService]
    private var host: ServiceHost?

    /// Creates the scenario.
    /// - Parameters:
    ///   - name: The metric's name.
    ///   - callers: How many tasks call at once; 1 calls sequentially from the measuring task.
    ///   - instances: Instances of the service: 1, or `callers` for one per caller.
    ///   - goal: The README's goal for the ratio, if any.
    ///   - recorded: The ratio recorded on the project's machine kind.
    init(name: String, callers: Int, instances: Int, goal: Double? = nil, recorded: Double?) {
        precondition(callers >= 1, "at least one caller, got \(callers)")
        precondition(instances == 1 || instances == callers, "one instance, or one per caller")
        self.callers = callers
        self.services = (0..<instances).map { _ in PingService() }
        let baseline: String
        if callers == 1 {
            baseline = "direct `await service.ping()` on the same actor, sequential from one task"
        } else if instances == 1 {
            baseline =
                "\(callers) callers (task group: \(callers) tasks on \(Machine.pool)) of direct "
                + "`await service.ping()` on one actor, as ours has one instance (contention-bound)"
        } else {
            baseline =
                "\(callers) callers (task group: \(callers) tasks on \(Machine.pool)), each calling "
                + "`await service.ping()` on its own actor; ours: \(instances) instances, round-robin"
        }
        self.metrics = [Metric(name: name, baseline: baseline, unit: "request", goal: goal, recorded: recorded)]
    }

    func setUp() async throws {
        var configuration = ServiceHost.Configuration()
        configuration.healthCheckInterval = nil
        let host = ServiceHost(configuration: configuration)
        for service in self.services {
            try await host.register(service)
        }
        try await host.start()
        self.host = host
        let serving = host.registry.instances(of: PingService.name).filter(\.health.isServing).count
        precondition(serving == self.services.count, "\(serving) of \(self.services.count) instances serve")
    }

    func runOurs(_ count: Int) async throws -> [Double] {
        let client = self.host!.client
        return [try await self.measureCalls(count) { _ in try await client.send(Ping()) }]
    }

    func runBaseline(_ count: Int) async throws -> [Double] {
        let services = self.services
        return [try await self.measureCalls(count) { caller in await services[caller % services.count].ping() }]
    }

    func tearDown() async {
        await self.host?.shutdown()
        self.host = nil
    }

    /// Makes `count` calls, spread evenly over the callers.
    /// - Parameters:
    ///   - count: The calls in all.
    ///   - call: One call, given the caller's index.
    /// - Returns: Nanoseconds per call.
    private func measureCalls(
        _ count: Int,
        _ call: @escaping @Sendable (Int) async throws -> Int
    ) async throws -> Double {
        let perCaller = max(count / self.callers, 1)
        let clock = ContinuousClock()
        let start = clock.now
        if self.callers == 1 {
            for _ in 0..<perCaller { _ = try await call(0) }
        } else {
            try await withThrowingDiscardingTaskGroup { group in
                for caller in 0..<self.callers {
                    group.addTask {
                        for _ in 0..<perCaller { _ = try await call(caller) }
                    }
                }
            }
        }
        return start.duration(to: clock.now).nanoseconds / Double(perCaller * self.callers)
    }
}
