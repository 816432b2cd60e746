import KeelTestSupport
import KeelTesting
import XCTest

/// The same handshake in XCTest, as users of XCTest write it.
final class TestClockXCTests: TimeLimitedTestCase {
    func testSleeperWakesAtItsDeadline() async throws {
        let clock = TestClock()
        try await withThrowingTaskGroup(of: Duration.self) { group in
            group.addTask {
                try await clock.sleep(for: .seconds(30))
                return clock.now.offset
            }
            await clock.waitForSleepers(count: 1)
            clock.advance(by: .seconds(29))
            XCTAssertEqual(clock.sleeperCount, 1)
            clock.advance(by: .seconds(1))
            XCTAssertEqual(clock.sleeperCount, 0)
            let wokeAt = try await group.next()
            XCTAssertEqual(wokeAt, .seconds(30))
        }
    }

    func testSleepersWakeInDeadlineOrderStepByStep() async throws {
        let clock = TestClock()
        try await withThrowingTaskGroup(of: String.self) { group in
            for (name, seconds) in [("slow", 3), ("fast", 1), ("middle", 2)] {
                group.addTask {
                    try await clock.sleep(for: .seconds(seconds))
                    return name
                }
            }
            await clock.waitForSleepers(count: 3)
            var order: [String] = []
            while clock.advanceToNextSleeper() {
                if let name = try await group.next() {
                    order.append(name)
                }
            }
            XCTAssertEqual(order, ["fast", "middle", "slow"])
            XCTAssertEqual(clock.now.offset, .seconds(3))
        }
    }

    func testCancellingASleeperThrowsCancellationError() async {
        let clock = TestClock()
        await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await clock.sleep(for: .seconds(1))
            }
            await clock.waitForSleepers(count: 1)
            group.cancelAll()
            do {
                try await group.next()
                XCTFail("the sleeper was not cancelled")
            } catch {
                XCTAssertTrue(error is CancellationError, "unexpected error \(error)")
            }
        }
        XCTAssertEqual(clock.sleeperCount, 0)
        XCTAssertEqual(clock.now.offset, .zero)
    }

    func testCancelledTaskCannotStartSleeping() async {
        let clock = TestClock()
        await withThrowingTaskGroup(of: Void.self) { group in
            group.cancelAll()
            group.addTask {
                try await clock.sleep(for: .seconds(1))
            }
            do {
                try await group.next()
                XCTFail("the sleeper was not cancelled")
            } catch {
                XCTAssertTrue(error is CancellationError, "unexpected error \(error)")
            }
        }
        XCTAssertEqual(clock.sleeperCount, 0)
    }

    func testWaitForSleepersWithManySleepers() async throws {
        let clock = TestClock()
        try await withThrowingTaskGroup(of: Int.self) { group in
            for index in 0..<50 {
                group.addTask {
                    try await clock.sleep(for: .seconds(1))
                    return index
                }
            }
            await clock.waitForSleepers(count: 50)
            XCTAssertEqual(clock.sleeperCount, 50)
            clock.advance(by: .seconds(1))
            var woken: Set<Int> = []
            while let index = try await group.next() {
                woken.insert(index)
            }
            XCTAssertEqual(woken, Set(0..<50))
        }
    }

    func testDueSleepReturnsImmediately() async throws {
        let clock = TestClock()
        try await clock.sleep(for: .zero)
        try await clock.sleep(for: .seconds(-1))
        XCTAssertEqual(clock.sleeperCount, 0)
    }
}
