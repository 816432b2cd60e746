import KeelCore
import KeelResilience
import KeelTestSupport
import KeelTesting
import XCTest

private struct Unavailable: Error, Equatable {}

final class FallbackHedgingXCTests: TimeLimitedTestCase {
    func testFallbackAnswersAHandledError() async throws {
        let fallback = Fallback.onError(Unavailable.self) { _ in "cached" }
        let value = try await fallback.run { throw Unavailable() }
        XCTAssertEqual(value, "cached")
    }

    func testFallbackLetsCancellationThrough() async throws {
        let fallback = Fallback<String>(when: { _ in true }) { _ in "cached" }
        do {
            _ = try await fallback.run { throw CancellationError() }
            XCTFail("expected CancellationError")
        } catch is CancellationError {}
    }

    func testFallbacksOwnErrorPropagates() async throws {
        let fallback = Fallback<Int>(when: { $0 is Unavailable }) { _ in throw CancellationError() }
        do {
            _ = try await fallback.run { throw Unavailable() }
            XCTFail("expected the fallback's error")
        } catch is CancellationError {}
    }

    func testHedgeStartsAfterTheDelayAndCancelsTheLoser() async throws {
        let clock = TestClock()
        let probe = HedgingProbe()
        let hedging = Hedging(configuration: .init(maxAttempts: 2, delay: .milliseconds(20)), clock: clock)
        async let result = hedging.run { try await probe.attempt($0) }
        await probe.waitForStarted(count: 1)
        await clock.waitForSleepers(count: 1)
        XCTAssertEqual(probe.started, [1])
        clock.advance(by: .milliseconds(20))
        await probe.waitForStarted(count: 2)
        probe.succeed(2, value: 2)
        let value = try await result
        XCTAssertEqual(value, 2)
        XCTAssertEqual(probe.cancelled, [1])
    }

    func testHedgingThrowsWhenEveryAttemptFails() async throws {
        let hedging = Hedging(configuration: .init(maxAttempts: 3, delay: .seconds(1)), clock: TestClock())
        let probe = HedgingProbe()
        async let result = hedging.run { try await probe.attempt($0) }
        for attempt in 1...3 {
            await probe.waitForStarted(count: attempt)
            probe.fail(attempt, HedgingTestError(attempt: attempt))
        }
        do {
            _ = try await result
            XCTFail("expected an error")
        } catch let error as HedgingTestError {
            XCTAssertEqual(error.attempt, 3)
        }
    }
}
