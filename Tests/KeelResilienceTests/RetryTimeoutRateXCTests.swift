import KeelCore
import KeelResilience
import KeelTestSupport
import KeelTesting
import Synchronization
import XCTest

final class RetryTimeoutRateXCTests: TimeLimitedTestCase {
    private struct Flaky: Error {}

    func testRetryFollowsItsScheduleOnTheTestClock() async throws {
        let clock = TestClock()
        let attempts = Lock<[Duration]>([])
        let policy = Retry(
            configuration: .init(
                maxAttempts: 3,
                backoff: .exponential(initial: .milliseconds(100), maximum: .seconds(1), jitter: false)
            ),
            clock: clock
        )
        async let result = policy.run { () async throws -> String in
            let count = attempts.withLock {
                $0.append(clock.now.offset)
                return $0.count
            }
            if count < 3 { throw Flaky() }
            return "ok"
        }
        await clock.waitForSleepers(count: 1)
        clock.advance(by: .milliseconds(100))
        await clock.waitForSleepers(count: 1)
        clock.advance(by: .milliseconds(200))
        let value = try await result
        XCTAssertEqual(value, "ok")
        XCTAssertEqual(attempts.withLock { $0 }, [.zero, .milliseconds(100), .milliseconds(300)])
    }

    func testTimeoutCancelsTheOperation() async throws {
        let clock = TestClock()
        let cancelled = Lock(false)
        let timeout = Timeout(name: "xc", duration: .seconds(1), clock: clock)
        async let result: Void = timeout.execute {
            do {
                try await clock.sleep(for: .seconds(5))
            } catch {
                cancelled.withLock { $0 = true }
                throw error
            }
        }
        await clock.waitForSleepers(count: 2)
        clock.advance(by: .seconds(1))
        do {
            try await result
            XCTFail("expected a timeout")
        } catch let error as TimeoutError {
            XCTAssertEqual(error.code, .timedOut)
            XCTAssertEqual(error.timeout, .seconds(1))
        }
        XCTAssertTrue(cancelled.withLock { $0 })
    }

    func testRateLimiterRejectsThenRefills() async throws {
        let clock = TestClock()
        let limiter = RateLimiter(
            name: "xc",
            configuration: .init(algorithm: .tokenBucket(capacity: 1, refillAmount: 1, refillInterval: .seconds(1))),
            clock: clock
        )
        try await limiter.acquire()
        do {
            try await limiter.acquire()
            XCTFail("expected a refusal")
        } catch let error as RateLimiterError {
            XCTAssertEqual(error.code, .rateLimited)
        }
        clock.advance(by: .seconds(1))
        let value = try await limiter.run { 5 }
        XCTAssertEqual(value, 5)
    }
}
