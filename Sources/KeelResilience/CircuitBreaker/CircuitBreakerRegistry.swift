import KeelCore
import Synchronization

/// Circuit breakers by name, made on first use from a shared default configuration.
///
/// Use one registry per host (or per downstream system) so that every caller of a dependency
/// shares its breaker: `registry.breaker(named: "payments")` returns the same breaker every time.
/// All breakers share the registry's clock, random source, telemetry and executor
/// preference.
///
/// Thread-safe: every method may be called from any task; lookups take a short lock and never
/// suspend. The registry owns its breakers: ``shutdown()`` shuts every one down.
///
/// ```swift
/// let registry = CircuitBreakerRegistry(defaultConfiguration: .init())
/// let receipt = try await registry.breaker(named: "payments").run { try await gateway.charge(order) }
/// ```
public final class CircuitBreakerRegistry: Sendable {
    /// The configuration of breakers made without one of their own.
    public let defaultConfiguration: CircuitBreaker.Configuration

    private let makeBreaker: @Sendable (String, CircuitBreaker.Configuration) -> CircuitBreaker
    /// The breakers, by name; listed in name order so that iteration never depends on hashing.
    private let breakersByName = Lock<[String: CircuitBreaker]>([:])

    /// Makes an empty registry.
    /// - Parameters:
    ///   - defaultConfiguration: The configuration of breakers made without one of their own.
    ///   - clock: The clock every breaker uses.
    ///   - random: The source of jitter every breaker draws from. By default a new source seeded
    ///     from the system's generator; pass a seeded one (or a host's) so that a run repeats.
    ///   - telemetry: Where every breaker reports.
    ///   - taskExecutor: The executor preference for the breakers' timer tasks.
    public init(
        defaultConfiguration: CircuitBreaker.Configuration = CircuitBreaker.Configuration(),
        clock: some Clock<Duration> = ContinuousClock(),
        random: RandomSource = RandomSource(),
        telemetry: any Telemetry = NoOpTelemetry(),
        taskExecutor: (any TaskExecutor)? = nil
    ) {
        defaultConfiguration.validate()
        self.defaultConfiguration = defaultConfiguration
        self.makeBreaker = { name, configuration in
            CircuitBreaker(
                name: name,
                configuration: configuration,
                clock: clock,
                random: random,
                telemetry: telemetry,
                taskExecutor: taskExecutor
            )
        }
    }

    /// The breaker called `name`, made now if it does not exist yet.
    ///
    /// `configuration` is used only when the breaker is made; an existing breaker keeps the
    /// configuration it was made with. Never suspends.
    /// - Parameters:
    ///   - name: The breaker's name.
    ///   - configuration: The configuration for a new breaker; `nil` for the registry's default.
    /// - Returns: The breaker.
    public func breaker(named name: String, configuration: CircuitBreaker.Configuration? = nil) -> CircuitBreaker {
        self.breakersByName.withLock { breakers in
            if let breaker = breakers[name] { return breaker }
            let breaker = self.makeBreaker(name, configuration ?? self.defaultConfiguration)
            breakers[name] = breaker
            return breaker
        }
    }

    /// The names of the breakers made so far, sorted.
    public var names: [String] {
        self.breakersByName.withLock { $0.keys.sorted() }
    }

    /// The breakers made so far, sorted by name.
    public var breakers: [CircuitBreaker] {
        self.breakersByName.withLock { breakers in breakers.keys.sorted().map { breakers[$0]! } }
    }

    /// Shuts down every breaker made so far (see ``CircuitBreaker/shutdown()``), one after the
    /// other in name order. Breakers stay registered and usable.
    public func shutdown() async {
        for breaker in self.breakers {
            await breaker.shutdown()
        }
    }
}
