import KeelCore
import KeelTesting
import Synchronization
import Testing

@testable import KeelResilience

/// What an operation under a timeout saw.
private final class Observed: Sendable {
    private let state = Lock<(cancelled: Bool, deadline: Duration?)>((false, nil))

    func sawCancellation() { self.state.withLock { $0.cancelled = true } }
    func saw(deadline: Duration?) { self.state.withLock { $0.deadline = deadline } }
    var cancelled: Bool { self.state.withLock { $0.cancelled } }
    var deadline: Duration? { self.state.withLock { $0.deadline } }
}

/// An operation that sleeps on `clock` for `duration`, recording what it sees.
private func slowOperation(
    clock: TestClock,
    duration: Duration,
    observed: Observed
) -> @Sendable () async throws -> String {
    {
        observed.saw(deadline: TraceContext.current?.deadline?.remaining(on: clock))
        do {
            try await clock.sleep(for: duration)
        } catch {
            observed.sawCancellation()
            throw error
        }
        return "done"
    }
}

@Suite("Timeout", .timeLimit(.minutes(2)))
struct TimeoutTests {
    @Test func firesAndTheOperationObservesCancellation() async throws {
        let clock = TestClock()
        let observed = Observed()
        let timeout = Timeout(name: "gateway", duration: .seconds(1), clock: clock, random: RandomSource(seed: 1))
        async let result = timeout.execute(slowOperation(clock: clock, duration: .seconds(10), observed: observed))
        await clock.waitForSleepers(count: 2)  // the operation and the shared timer
        clock.advance(by: .milliseconds(999))
        #expect(clock.sleeperCount == 2)
        clock.advance(by: .milliseconds(1))
        do {
            _ = try await result
            Issue.record("expected a timeout")
        } catch let error as TimeoutError {
            #expect(error.code == .timedOut)
            #expect(error.timeout == .seconds(1))
            #expect(error.name == "gateway")
        }
        // The operation had been cancelled and had returned before the error was thrown.
        #expect(observed.cancelled)
        #expect(clock.sleeperCount == 0)
        #expect(observed.deadline == .seconds(1))
    }

    @Test func anOperationThatFinishesFirstWinsAndItsDeadlineIsRemoved() async throws {
        let clock = TestClock()
        let observed = Observed()
        let timeout = Timeout(duration: .seconds(5), clock: clock)
        async let result = timeout.execute(slowOperation(clock: clock, duration: .seconds(1), observed: observed))
        await clock.waitForSleepers(count: 2)
        clock.advance(by: .seconds(1))
        #expect(try await result == "done")
        #expect(!observed.cancelled)
        #expect(timeout.pendingCount == 0)
        // The shared timer is not woken to stop: it sleeps until 5 s, or until it is shut down.
        #expect(clock.sleeperCount == 1)
        await timeout.shutdown()
        #expect(clock.sleeperCount == 0)
    }

    @Test func theOperationsErrorPassesThrough() async throws {
        struct Boom: Error {}
        let timeout = Timeout(duration: .seconds(5), clock: TestClock())
        await #expect(throws: Boom.self) {
            try await timeout.execute { () async throws -> Int in throw Boom() }
        }
    }

    @Test func anEarlierTraceDeadlineWinsAndIsInherited() async throws {
        let clock = TestClock()
        let observed = Observed()
        let timeout = Timeout(duration: .seconds(1), clock: clock)
        var context = TraceContext.makeRoot(using: RandomSource(seed: 2))
        context.deadline = .after(.milliseconds(300), on: clock)
        let bound = context
        async let result = TraceContext.$current.withValue(bound) {
            try await timeout.execute(slowOperation(clock: clock, duration: .seconds(10), observed: observed))
        }
        await clock.waitForSleepers(count: 2)
        #expect(observed.deadline == .milliseconds(300))
        clock.advance(by: .milliseconds(300))
        do {
            _ = try await result
            Issue.record("expected a timeout")
        } catch let error as TimeoutError {
            #expect(error.code == .deadlineExceeded)
            #expect(error.timeout == .milliseconds(300))
        }
        #expect(observed.cancelled)
    }

    @Test func aShorterTimeoutTightensTheInheritedDeadlineAndKeepsTheTrace() async throws {
        let clock = TestClock()
        let timeout = Timeout(duration: .milliseconds(200), clock: clock)
        var context = TraceContext.makeRoot(using: RandomSource(seed: 4))
        context.deadline = .after(.seconds(5), on: clock)
        let bound = context
        let seen = try await TraceContext.$current.withValue(bound) {
            try await timeout.execute { () async throws -> TraceContext? in TraceContext.current }
        }
        #expect(seen?.traceID == bound.traceID)
        #expect(seen?.spanID == bound.spanID)
        #expect(seen?.deadline?.remaining(on: clock) == .milliseconds(200))
        // The caller's own context is untouched.
        #expect(bound.deadline?.remaining(on: clock) == .seconds(5))
    }

    @Test func aPassedDeadlineFailsWithoutRunningTheOperation() async throws {
        let clock = TestClock()
        let timeout = Timeout(duration: .seconds(1), clock: clock)
        var context = TraceContext.makeRoot(using: RandomSource(seed: 5))
        context.deadline = .after(.milliseconds(10), on: clock)
        clock.advance(by: .milliseconds(20))
        let bound = context
        let ran = Observed()
        do {
            try await TraceContext.$current.withValue(bound) {
                try await timeout.execute { ran.sawCancellation() }
            }
            Issue.record("expected a timeout")
        } catch let error as TimeoutError {
            #expect(error.code == .deadlineExceeded)
            #expect(error.timeout == .zero)
        }
        #expect(!ran.cancelled)
    }

    @Test func theCallersCancellationIsCancellationErrorNotATimeout() async throws {
        let clock = TestClock()
        let observed = Observed()
        let timeout = Timeout(duration: .seconds(1), clock: clock)
        let operation = slowOperation(clock: clock, duration: .seconds(10), observed: observed)
        let task = Task { try await timeout.execute(operation) }
        await clock.waitForSleepers(count: 2)
        task.cancel()
        await #expect(throws: CancellationError.self) { try await task.value }
        #expect(observed.cancelled)
        #expect(timeout.pendingCount == 0)
        await timeout.shutdown()  // the shared timer, asleep until 1 s
        #expect(clock.sleeperCount == 0)
    }

    @Test func manyConcurrentTimeoutsAllFireAndCancelTheirWork() async throws {
        let clock = TestClock()
        let timeout = Timeout(duration: .seconds(1), clock: clock)
        let observers = (0..<50).map { _ in Observed() }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for observed in observers {
                let operation = slowOperation(clock: clock, duration: .seconds(2), observed: observed)
                group.addTask {
                    await #expect(throws: TimeoutError.self) { try await timeout.execute(operation) }
                }
            }
            await clock.waitForSleepers(count: 51)  // the 50 operations and the one shared timer
            clock.advance(by: .seconds(1))
            try await group.waitForAll()
        }
        #expect(observers.allSatisfy { $0.cancelled })
        #expect(clock.sleeperCount == 0)
    }
}
