import Keel

/// A request round trip through a started ``ServiceHost`` against a direct call on the same
/// service actor, from one caller or from several concurrent callers.
///
/// Ours is `host.client.send(Ping())`: route lookup, work tracking, a child trace context bound
/// as a task-local, instance choice, then the handler on the service's actor. The baseline is
/// `await service.ping()`, the hop onto the actor alone. The host uses the default
/// `NoOpInstrumentation`; health checks are off so that no timer wakes up during a round.
final class RequestScenario: Scenario {
    let metrics: [Metric]
    let workload = Workload.calibrated(minimum: 2_000)

    private let callers: Int
    private let service = PingService()
    private var host: ServiceHost?

    /// Creates the scenario.
    /// - Parameters:
    ///   - name: The metric's name.
    ///   - callers: How many tasks call at once; 1 calls sequentially from the measuring task.
    init(name: String, callers: Int) {
        precondition(callers >= 1, "at least one caller, got \(callers)")
        self.callers = callers
        let baseline =
            callers == 1
            ? "direct `await service.ping()` on the same actor"
            : "\(callers) concurrent callers (task group) of direct `await service.ping()`"
        self.metrics = [Metric(name: name, baseline: baseline, unit: "request")]
    }

    func setUp() async throws {
        var configuration = ServiceHost.Configuration()
        configuration.healthCheckInterval = nil
        let host = ServiceHost(configuration: configuration)
        try await host.register(self.service)
        try await host.start()
        self.host = host
    }

    func runOurs(_ count: Int) async throws -> [Double] {
        let client = self.host!.client
        return [try await self.measureCalls(count) { try await client.send(Ping()) }]
    }

    func runBaseline(_ count: Int) async throws -> [Double] {
        let service = self.service
        return [try await self.measureCalls(count) { await service.ping() }]
    }

    func tearDown() async {
        await self.host?.shutdown()
        self.host = nil
    }

    /// Makes `count` calls, spread evenly over the callers.
    /// - Returns: Nanoseconds per call.
    private func measureCalls(_ count: Int, _ call: @escaping @Sendable () async throws -> Int) async throws -> Double {
        let perCaller = max(count / self.callers, 1)
        let clock = ContinuousClock()
        let start = clock.now
        if self.callers == 1 {
            for _ in 0..<perCaller { _ = try await call() }
        } else {
            try await withThrowingDiscardingTaskGroup { group in
                for _ in 0..<self.callers {
                    group.addTask {
                        for _ in 0..<perCaller { _ = try await call() }
                    }
                }
            }
        }
        return start.duration(to: clock.now).nanoseconds / Double(perCaller * self.callers)
    }
}
