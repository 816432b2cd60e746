import KeelResilience

/// A call guarded by a ``CircuitBreaker`` against the same call unguarded, with the breaker
/// closed (the call runs) or open (the call is rejected).
///
/// The protected work is one hop onto an actor (`await service.ping()` on a ``PingService``,
/// used here as a plain actor, without a host); both baselines are the bare `await
/// service.ping()`, and calls are sequential, from the measuring task.
///
/// Two ways to guard the call are measured. With ``API/permit`` (the names without a suffix):
/// `let permit = try breaker.acquirePermit()`, the call, `permit.recordSuccess()`: an atomic load
/// to admit and the outcome recorded under the breaker's lock. With ``API/run`` (`.run`):
/// `breaker.run { await service.ping() }`, the same work plus calling the operation through an
/// async closure, whose cost is the runtime's, not the breaker's.
///
/// Open means opened by one failure for an hour. `breaker.open` and `breaker.open.run` use the
/// automatic half-open transition (a timer ends the open state, so a rejection reads no clock);
/// `breaker.open.lazy` uses the default lazy transition, which reads the clock and takes the lock
/// to see whether the open duration is over.
final class BreakerScenario: Scenario {
    /// Which state the breaker is in while it is measured.
    enum Mode {
        case closed
        case open
        case openLazy
    }

    /// How the call is guarded.
    enum API {
        /// `acquirePermit()`, the call, `recordSuccess()`.
        case permit
        /// `run { the call }`.
        case run
    }

    let metrics: [Metric]
    let workload = Workload.calibrated(minimum: 10_000)

    private let mode: Mode
    private let api: API
    private let service = PingService()
    private let breaker: CircuitBreaker

    /// Creates the scenario.
    /// - Parameters:
    ///   - name: The metric's name.
    ///   - mode: The breaker's state during the measurement.
    ///   - api: How the call is guarded.
    init(name: String, mode: Mode, api: API) {
        self.mode = mode
        self.api = api
        var configuration = CircuitBreaker.Configuration()
        if mode != .closed {
            configuration.consecutiveFailureThreshold = 1
            configuration.openDuration = .fixed(.seconds(3_600))
            configuration.halfOpenTransition = mode == .open ? .automatic : .onNextCall
        }
        self.breaker = CircuitBreaker(name: name, configuration: configuration)
        let baseline = "direct `await service.ping()` on an actor, unguarded"
        self.metrics = [Metric(name: name, baseline: baseline, unit: "call")]
    }

    func setUp() async throws {
        if self.mode != .closed {
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
        switch self.api {
        case .permit:
            for _ in 0..<count {
                do {
                    let permit = try breaker.acquirePermit()
                    _ = await service.ping()
                    permit.recordSuccess()
                } catch {
                    rejected &+= 1
                }
            }
        case .run:
            for _ in 0..<count {
                do {
                    _ = try await breaker.run { await service.ping() }
                } catch is CircuitBreakerError {
                    rejected &+= 1
                }
            }
        }
        let elapsed = start.duration(to: clock.now)
        precondition(rejected == (self.mode == .closed ? 0 : count), "unexpected rejections: \(rejected) of \(count)")
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
