import KeelCore
import KeelResilience
import KeelTesting
import Synchronization
import Testing

@Suite("Strategies in a pipeline, by default", .timeLimit(.minutes(2)))
struct PipelineDefaultsTests {
    struct Outage: Error {}

    @Test("a breaker does not count another strategy's rejection as a failure of its dependency")
    func breakerIgnoresRejections() async throws {
        var configuration = CircuitBreaker.Configuration()
        configuration.consecutiveFailureThreshold = 1
        configuration.failureRateThreshold = nil
        let clock = TestClock()
        let outer = CircuitBreaker(name: "outer", configuration: configuration, clock: clock)
        let inner = CircuitBreaker(name: "inner", clock: clock)
        await inner.forceOpen()
        let pipeline = ResiliencePipeline {
            outer
            inner
        }
        await #expect(throws: CircuitBreakerError.self) { try await pipeline.execute { 1 } }
        #expect(outer.state == .closed, "an inner rejection opened the outer breaker")
        await #expect(throws: Outage.self) {
            try await outer.run { () async throws -> Int in throw Outage() }
        }
        #expect(outer.state == .open, "a real failure still counts")
        await outer.shutdown()
        await inner.shutdown()
    }

    @Test("a retry does not retry an open breaker's rejection")
    func retryStopsAtOpenBreaker() async throws {
        let clock = TestClock()
        let breaker = CircuitBreaker(name: "open", clock: clock)
        await breaker.forceOpen()
        let attempts = Atomic<Int>(0)
        let retry = Retry(
            configuration: .init(maxAttempts: 3, backoff: .constant(.milliseconds(10))),
            clock: clock
        )
        let pipeline = ResiliencePipeline {
            retry
            breaker
        }
        await #expect(throws: CircuitBreakerError.self) {
            try await pipeline.execute { () async throws -> Int in
                attempts.wrappingAdd(1, ordering: .relaxed)
                return 1
            }
        }
        #expect(attempts.load(ordering: .relaxed) == 0, "the open breaker never ran the call")
        #expect(clock.sleeperCount == 0, "no backoff was slept")
        await breaker.shutdown()
    }
}
