import KeelResilience

/// A call guarded by a ``CircuitBreaker``, with the breaker closed (the call runs) or open (the
/// call is rejected), against a baseline that does the same: the call, or a rejection.
///
/// The protected work is one hop onto an actor (`await service.ping()` on a ``PingService``,
/// used here as a plain actor, without a host). Calls are sequential, from the measuring task
/// (one task, so one thread of the pool at a time).
///
/// Closed, the baseline is the bare, unguarded `await service.ping()`. Open, no call is made, so
/// the baseline makes none either: an ``OpenFlag`` whose `check()` (for the permit API) or
/// `run { the call }` (for `.run`) loads a set atomic flag and throws a prebuilt error, caught
/// as ours is caught. What ours does beyond that floor: counts the rejection, reports it to the
/// telemetry and the event stream, and makes a new ``CircuitBreakerError``.
///
/// Two ways to guard the call are measured. With ``API/permit`` (the names without a suffix):
/// `let permit = try breaker.acquirePermit()`, the call, `permit.recordSuccess()`: an atomic load
/// to admit and the success counted with one compare-and-swap, outside the breaker's lock (a
/// closed breaker with a count-based window and no event consumer). With ``API/run`` (`.run`):
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
    private let flag: OpenFlag

    /// Creates the scenario.
    /// - Parameters:
    ///   - name: The metric's name.
    ///   - mode: The breaker's state during the measurement.
    ///   - api: How the call is guarded.
    ///   - goal: The README's goal for the ratio, if any.
    ///   - recorded: The ratio recorded on the project's machine kind.
    init(name: String, mode: Mode, api: API, goal: Double? = nil, recorded: Double?) {
        self.mode = mode
        self.api = api
        var configuration = CircuitBreaker.Configuration()
        if mode != .closed {
            configuration.consecutiveFailureThreshold = 1
            configuration.openDuration = .fixed(.seconds(3_600))
            configuration.halfOpenTransition = mode == .open ? .automatic : .onNextCall
        }
        self.breaker = CircuitBreaker(name: name, configuration: configuration)
        self.flag = OpenFlag(name: name, isOpen: mode != .closed)
        let ours: String
        switch (mode, api) {
        case (.closed, .permit): ours = "ours: acquirePermit(), the call, recordSuccess()"
        case (.closed, .run): ours = "ours: breaker.run { the call }"
        case (.open, .permit): ours = "ours: acquirePermit() throws (atomic load, automatic half-open)"
        case (.open, .run): ours = "ours: breaker.run throws without calling (automatic half-open)"
        case (.openLazy, _): ours = "ours: acquirePermit() throws after a clock read and the lock (lazy half-open)"
        }
        let baseline: String
        switch (mode, api) {
        case (.closed, _):
            baseline = "direct `await service.ping()` on an actor, unguarded"
        case (_, .permit):
            baseline = "no call: a set atomic flag, `throw prebuiltError` from a non-inlined check()"
        case (_, .run):
            baseline = "no call: a non-inlined async run(closure) that throws a prebuilt error on a set flag"
        }
        self.metrics = [
            Metric(
                name: name,
                baseline: "\(baseline); \(ours); sequential, one task",
                unit: "call",
                goal: goal,
                recorded: recorded
            )
        ]
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
        if self.mode == .closed {
            let start = clock.now
            for _ in 0..<count {
                _ = await service.ping()
            }
            return [start.duration(to: clock.now).nanoseconds / Double(count)]
        }
        let flag = self.flag
        var rejected = 0
        let start = clock.now
        switch self.api {
        case .permit:
            for _ in 0..<count {
                do {
                    try flag.check()
                    _ = await service.ping()
                } catch {
                    rejected &+= 1
                }
            }
        case .run:
            for _ in 0..<count {
                do {
                    _ = try await flag.run { await service.ping() }
                } catch is OpenFlag.Rejection {
                    rejected &+= 1
                }
            }
        }
        let elapsed = start.duration(to: clock.now)
        precondition(rejected == count, "unexpected admissions: \(count - rejected) of \(count)")
        return [elapsed.nanoseconds / Double(count)]
    }

    func tearDown() async {
        await self.breaker.shutdown()
    }
}
