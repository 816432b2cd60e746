import KeelResilience

/// A trivial call through a pipeline of five strategies against the bare call: the overhead of
/// guarding a call with everything KeelResilience has, in the recommended order.
///
/// Ours is `pipeline.execute { await service.ping() }` where the pipeline is, outermost first, a
/// retry (default policy; nothing fails, so it never retries), a circuit breaker (closed), a rate
/// limiter (a token bucket too large to ever refuse), a bulkhead (8 permits, uncontended) and a
/// timeout per attempt (one second). The timeout runs the call in a child task, which suspends on
/// the hop to the actor; the caller waits for it with its deadline in the timeout's shared timer
/// (see `timeout.call`). The baseline is the bare `await service.ping()`. Calls are sequential,
/// from the measuring task. The goal is an overhead, ours minus the baseline, of at most 3 µs per
/// call.
final class PipelineScenario: Scenario {
    let metrics: [Metric]
    let workload = Workload.calibrated(minimum: 2_000)

    private let service = PingService()
    private let pipeline: ResiliencePipeline

    /// Creates the scenario.
    /// - Parameters:
    ///   - name: The metric's name.
    ///   - overheadGoal: The goal for ours minus the baseline, in nanoseconds per call, if any.
    ///   - recorded: The ratio recorded on the project's machine kind.
    init(name: String, overheadGoal: Double? = nil, recorded: Double?) {
        let breaker = CircuitBreaker(name: name)
        let limiter = RateLimiter(
            name: name,
            configuration: .init(
                algorithm: .tokenBucket(
                    capacity: 1_000_000_000,
                    refillAmount: 1_000_000_000,
                    refillInterval: .seconds(1)
                )
            )
        )
        self.pipeline = ResiliencePipeline {
            Retry(name: name)
            breaker
            limiter
            Bulkhead(name: name, configuration: .init(maxConcurrent: 8, maxQueued: 8, maxWait: nil))
            Timeout(name: name, duration: .seconds(1))
        }
        let baseline =
            "direct `await service.ping()` on an actor, unguarded; ours: the call through retry, breaker, "
            + "rate limiter, bulkhead and a 1 s timeout (the call in a child task, one shared timer); "
            + "sequential from one task"
        self.metrics = [
            Metric(name: name, baseline: baseline, unit: "call", overheadGoal: overheadGoal, recorded: recorded)
        ]
    }

    func setUp() async throws {}

    func runOurs(_ count: Int) async throws -> [Double] {
        let pipeline = self.pipeline
        let service = self.service
        let clock = ContinuousClock()
        let start = clock.now
        for _ in 0..<count {
            _ = try await pipeline.execute { await service.ping() }
        }
        return [start.duration(to: clock.now).nanoseconds / Double(count)]
    }

    func runBaseline(_ count: Int) async throws -> [Double] {
        let service = self.service
        let clock = ContinuousClock()
        let start = clock.now
        for _ in 0..<count {
            _ = await service.ping()
        }
        return [start.duration(to: clock.now).nanoseconds / Double(count)]
    }

    func tearDown() async {
        await self.pipeline.shutdown()
    }
}
