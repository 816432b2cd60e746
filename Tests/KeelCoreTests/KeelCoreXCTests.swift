import KeelCore
import KeelTestSupport
import KeelTesting
import XCTest

/// KeelCore driven from XCTest, as users of XCTest write it.
final class KeelCoreXCTests: TimeLimitedTestCase {
    func testWithSpanBindsContextAcrossChildTasks() async throws {
        let recorder = InMemoryRecorder(clock: TestClock())
        let random = RandomSource(seed: 1)
        let (outer, seen) = await recorder.withSpan("fan out", random: random) { span in
            let seen = await withTaskGroup(of: TraceContext?.self) { group in
                for _ in 0..<10 {
                    group.addTask { TraceContext.current }
                }
                return await group.reduce(into: [TraceContext?]()) { $0.append($1) }
            }
            return (span.context, seen)
        }
        XCTAssertEqual(seen.count, 10)
        for context in seen {
            XCTAssertEqual(context, outer)
        }
        XCTAssertNil(TraceContext.current)
    }

    func testConcurrentCountersAreExact() async {
        let recorder = InMemoryRecorder(clock: TestClock())
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<100 {
                group.addTask {
                    let counter = recorder.makeCounter(label: "events")
                    for _ in 0..<100 {
                        counter.increment(by: 1)
                    }
                }
            }
        }
        XCTAssertEqual(recorder.counter("events"), 10_000)
    }

    func testDeadlineCountsDownWhileASleeperWaits() async throws {
        let clock = TestClock()
        let deadline = Deadline.after(.seconds(5), on: clock)
        try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask {
                try await clock.sleep(for: .seconds(5))
                return deadline.hasPassed(on: clock)
            }
            await clock.waitForSleepers(count: 1)
            clock.advance(by: .seconds(4))
            XCTAssertEqual(deadline.remaining(on: clock), .seconds(1))
            XCTAssertFalse(deadline.hasPassed(on: clock))
            clock.advance(by: .seconds(1))
            let passedWhenWoken = try await group.next()
            XCTAssertEqual(passedWhenWoken, true)
        }
        XCTAssertNil(deadline.remaining(on: ContinuousClock()))
    }

    func testWithSpanRecordsErrorsAndCancellation() async throws {
        struct Broken: Error {}
        let recorder = InMemoryRecorder(clock: TestClock())
        let random = RandomSource(seed: 2)
        do {
            try await recorder.withSpan("fails", random: random) { _ in throw Broken() }
            XCTFail("withSpan swallowed the error")
        } catch {
            XCTAssertTrue(error is Broken)
        }
        do {
            try await recorder.withSpan("cancelled", random: random) { _ in throw CancellationError() }
            XCTFail("withSpan swallowed the cancellation")
        } catch {
            XCTAssertTrue(error is CancellationError)
        }
        let spans = recorder.spans
        XCTAssertEqual(spans.map(\.name), ["fails", "cancelled"])
        XCTAssertEqual(spans[0].errors, ["Broken()"])
        XCTAssertEqual(spans[1].errors, [])
        XCTAssertEqual(spans[1].attributes["cancelled"], .bool(true))
    }

    func testRandomSourceIsRepeatable() {
        let first = RandomSource(seed: 31)
        let second = RandomSource(seed: 31)
        XCTAssertEqual(
            (0..<32).map { _ in first.next(upperBound: 100) },
            (0..<32).map { _ in second.next(upperBound: 100) }
        )
        XCTAssertNotEqual(RandomSource(seed: 1).next(), RandomSource(seed: 2).next())
    }
}
