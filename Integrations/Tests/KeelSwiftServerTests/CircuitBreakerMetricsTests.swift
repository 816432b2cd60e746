import KeelCore
import KeelResilience
import KeelSwiftServer
import KeelTesting
import MetricsTestKit
import Testing

/// What a breaker's operation throws.
private struct Outage: Error {}

@Suite("SwiftServerTelemetry with a real circuit breaker")
struct CircuitBreakerMetricsTests {
    @Test("a breaker's calls, slow calls, transitions and state reach swift-metrics as Keel names them")
    func breakerMetrics() async throws {
        let metrics = TestMetrics()
        let clock = TestClock()
        var configuration = CircuitBreaker.Configuration()
        configuration.failureRateThreshold = nil
        configuration.consecutiveFailureThreshold = 2
        configuration.slowCallDurationThreshold = .milliseconds(100)
        let breaker = CircuitBreaker(
            name: "payments",
            configuration: configuration,
            clock: clock,
            random: RandomSource(seed: 5),
            telemetry: SwiftServerTelemetry(metrics: metrics)
        )

        #expect(try await breaker.run { 1 } == 1)
        // Slow: the call takes 200 ms on the breaker's clock.
        #expect(
            try await breaker.run {
                clock.advance(by: .milliseconds(200))
                return 2
            } == 2
        )
        for _ in 0..<2 {
            await #expect(throws: Outage.self) { try await breaker.run { () async throws -> Int in throw Outage() } }
        }
        // Two failures in a row opened it: the next call is refused without running.
        await #expect(throws: CircuitBreakerError.self) { try await breaker.run { 3 } }
        await breaker.shutdown()

        func calls(_ outcome: String) throws -> Int64 {
            try metrics.expectCounter("keel.breaker.calls", [("breaker", "payments"), ("outcome", outcome)]).totalValue
        }
        #expect(try calls("success") == 2)
        #expect(try calls("failure") == 2)
        #expect(try calls("notPermitted") == 1)
        #expect(try calls("ignored") == 0)
        #expect(try metrics.expectCounter("keel.breaker.slow_calls", [("breaker", "payments")]).totalValue == 1)
        #expect(try metrics.expectCounter("keel.breaker.transitions", [("breaker", "payments")]).totalValue == 1)
        // Closed (0) when made, then open (1).
        let state = try metrics.expectGauge("keel.breaker.state", [("breaker", "payments")])
        #expect(state.values == [0, 1])
        #expect(state.aggregate == false)
        // Seven metrics, made once each when the breaker was made; nothing else.
        #expect(metrics.counters.count == 6)
        #expect(metrics.recorders.count == 1)
        #expect(metrics.timers.isEmpty)
    }
}
