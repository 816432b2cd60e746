import KeelCore
import KeelResilience
import KeelTestSupport
import KeelTesting
import XCTest

/// The circuit breaker driven from XCTest async tests, as users of XCTest write them.
final class CircuitBreakerXCTests: TimeLimitedTestCase {
    private struct Unavailable: Error {}

    private func makeBreaker(
        clock: TestClock,
        halfOpen: CircuitBreaker.Configuration.HalfOpenTransition
    ) -> CircuitBreaker {
        var configuration = CircuitBreaker.Configuration()
        configuration.failureRateThreshold = nil
        configuration.consecutiveFailureThreshold = 2
        configuration.openDuration = .fixed(.seconds(30))
        configuration.permittedCallsInHalfOpen = 1
        configuration.halfOpenTransition = halfOpen
        return CircuitBreaker(name: "xctest", configuration: configuration, clock: clock, random: RandomSource(seed: 1))
    }

    func testOpensRejectsAndRecoversOnTheNextCall() async throws {
        let clock = TestClock()
        let breaker = self.makeBreaker(clock: clock, halfOpen: .onNextCall)
        for _ in 0..<2 {
            do {
                _ = try await breaker.run { () async throws -> Int in throw Unavailable() }
                XCTFail("expected the operation's error")
            } catch is Unavailable {}
        }
        XCTAssertEqual(breaker.state, .open)

        do {
            _ = try await breaker.run { 1 }
            XCTFail("expected a rejection")
        } catch let error as CircuitBreakerError {
            XCTAssertEqual(error.code, .open)
            XCTAssertEqual(error.remainingOpenDuration, .seconds(30))
        }

        clock.advance(by: .seconds(30))
        let value = try await breaker.run { 42 }
        XCTAssertEqual(value, 42)
        XCTAssertEqual(breaker.state, .closed)
        XCTAssertEqual(breaker.metrics.notPermittedCalls, 1)
    }

    func testAutomaticHalfOpenOnTheClock() async throws {
        let clock = TestClock()
        let breaker = self.makeBreaker(clock: clock, halfOpen: .automatic)
        var events = breaker.events().makeAsyncIterator()
        for _ in 0..<2 {
            _ = try? await breaker.run { () async throws -> Int in throw Unavailable() }
        }
        await clock.waitForSleepers(count: 1)
        clock.advance(by: .seconds(30))
        var transitions: [CircuitBreaker.State] = []
        while transitions.count < 2, let event = await events.next() {
            if let state = event.toState { transitions.append(state) }
        }
        XCTAssertEqual(transitions, [.open, .halfOpen])
        XCTAssertEqual(breaker.state, .halfOpen)
        await breaker.shutdown()
    }

    func testCancellationIsNotAFailure() async throws {
        let breaker = self.makeBreaker(clock: TestClock(), halfOpen: .onNextCall)
        for _ in 0..<5 {
            do {
                _ = try await breaker.run { () async throws -> Int in throw CancellationError() }
            } catch is CancellationError {}
        }
        XCTAssertEqual(breaker.state, .closed)
        XCTAssertEqual(breaker.metrics.bufferedCalls, 0)
    }

    func testRegistrySharesBreakersByName() async {
        let registry = CircuitBreakerRegistry(clock: TestClock())
        XCTAssertTrue(registry.breaker(named: "a") === registry.breaker(named: "a"))
        XCTAssertFalse(registry.breaker(named: "a") === registry.breaker(named: "b"))
        await registry.shutdown()
    }
}
