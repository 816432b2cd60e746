import KeelResilience
import KeelTestSupport
import KeelTesting
import XCTest

final class BulkheadXCTests: TimeLimitedTestCase {
    func testRunReturnsTheOperationsValue() async throws {
        let bulkhead = Bulkhead(name: "xc", configuration: .init(maxConcurrent: 2))
        let value = try await bulkhead.run { 21 * 2 }
        XCTAssertEqual(value, 42)
        XCTAssertEqual(bulkhead.metrics.admitted, 1)
        XCTAssertEqual(bulkhead.metrics.used, 0)
    }

    func testRejectsWhenFullAndNotAllowedToWait() async throws {
        let bulkhead = Bulkhead(name: "xc-full", configuration: .init(maxConcurrent: 1, maxQueued: 0))
        try await bulkhead.run {
            do {
                try await bulkhead.run { XCTFail("must not run") }
                XCTFail("expected a rejection")
            } catch let error as BulkheadError {
                XCTAssertEqual(error.code, .queueFull)
                XCTAssertEqual(error.bulkhead, "xc-full")
            }
        }
    }

    func testWaiterTimesOutOnTheTestClock() async throws {
        let clock = TestClock()
        let bulkhead = Bulkhead(
            name: "xc-wait",
            configuration: .init(maxConcurrent: 1, maxQueued: 1, maxWait: .milliseconds(100)),
            clock: clock
        )
        try await bulkhead.run {
            async let waiter: Void = bulkhead.run {}
            await clock.waitForSleepers(count: 1)
            clock.advance(by: .milliseconds(100))
            do {
                try await waiter
                XCTFail("expected a timeout")
            } catch let error as BulkheadError {
                XCTAssertEqual(error.code, .waitTimedOut)
            }
        }
        XCTAssertEqual(bulkhead.metrics.timedOut, 1)
    }

    func testBoundedTaskGroupRunsEveryChild() async throws {
        let memory = MemoryBulkhead<String>(name: "xc-memory", configuration: .init(budgets: ["x": 10]))
        try await withBoundedTaskGroup(maxConcurrentChildren: 2) { group in
            for _ in 0..<20 {
                try await group.addTask {
                    try await memory.withLease(bytes: 5, category: "x") {}
                }
            }
        }
        XCTAssertEqual(memory.metrics(for: "x")?.admitted, 20)
        XCTAssertEqual(memory.metrics(for: "x")?.used, 0)
    }
}
