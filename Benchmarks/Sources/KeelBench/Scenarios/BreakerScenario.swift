import KeelResilience

/// A call guarded by a ``CircuitBreaker`` against the same call unguarded, with the breaker
/// closed (the call runs) or open (the call is rejected).
///
/// The protected work is one hop onto an actor (`await service.ping()` on a ``PingService``,
/// used here as a plain actor, without a host). Closed, ours is `breaker.run { await
/// service.ping() }` on a breaker with the default configuration (failure rate over the last 100
/// calls, no slow-call detection): an atomic load to admit, the hop, then the outcome recorded
/// under the breaker's lock. Open, ours is the same `run` on a breaker that one failure opened for
/// an hour: an atomic load, a clock read and a thrown ``CircuitBreakerError``, never reaching the
/// actor. Both baselines are the bare `await service.ping()`. Calls are sequential, from the
/// measuring task.
final class BreakerScenario: Scenario {
    /// Which state the breaker is in while it is measured.
    enum Mode {
        case closed
        case open
    }

    let metrics: [Metric]
    let workload = Workload.calibrated(minimum: 10_000)

    private let mode: Mode
    private let service = PingService()
    private let breaker: CircuitBreaker

    /// Creates the scenario.
    /// - Parameters:
    ///   - name: The metric's name.
    ///   - mode: The breaker's state during the measurement.
    init(name: String, mode: Mode) {
        self.mode = mode
        var configuration = CircuitBreaker.Configuration()
        if mode == .open {
            configuration.consecutiveFailureThreshold = 1
            configuration.openDuration = .fixed(.seconds(3_600))
        }
        self.breaker = CircuitBreaker(name: name, configuration: configuration)
        let baseline = "direct `await service.ping()` on an actor, unguarded"
        self.metrics = [Metric(name: name, baseline: baseline, unit: "call")]
    }

    func setUp() async throws {
        if self.mode == .open {
            struct Unavailable: Error {}
            _ = try? await self.breaker.run { () async throws -> Int in throw Unavailable() }
            precondition(self.breaker.state == .open, "the breaker did not open: \(self.breaker.state)")
        }
    }

    func runOurs(_ count: Int) async throws -> [Double] {
        let breaker = self.breaker
        let service = self.service
        let clock = ContinuousClock()
        var rejected = 0
        let start = clock.now
        for _ in 0..<count {
            do {
                _ = try await breaker.run { await service.ping() }
            } catch is CircuitBreakerError {
                rejected &+= 1
            }
        }
        let elapsed = start.duration(to: clock.now)
        precondition(rejected == (self.mode == .open ? count : 0), "unexpected rejections: \(rejected) of \(count)")
        return [elapsed.nanoseconds / Double(count)]
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
        await self.breaker.shutdown()
    }
}
