import KeelTesting
import Testing

@Suite("TestClock", .timeLimit(.minutes(2)))
struct TestClockTests {
    // MARK: Time

    @Test("starts at zero and moves only when advanced")
    func startsAtZeroAndAdvances() {
        let clock = TestClock()
        #expect(clock.now == TestClock.Instant(offset: .zero))
        #expect(clock.minimumResolution == .zero)

        clock.advance(by: .seconds(2))
        #expect(clock.now.offset == .seconds(2))
        clock.advance(by: .zero)
        #expect(clock.now.offset == .seconds(2))
        clock.advance(to: TestClock.Instant(offset: .milliseconds(5500)))
        #expect(clock.now.offset == .milliseconds(5500))
        clock.advance(to: clock.now)
        #expect(clock.now.offset == .milliseconds(5500))
    }

    @Test("starts at the given instant")
    func startsAtGivenInstant() {
        let clock = TestClock(now: .init(offset: .seconds(100)))
        #expect(clock.now.offset == .seconds(100))
        clock.advance(by: .seconds(1))
        #expect(clock.now.offset == .seconds(101))
    }

    @Test("instants order, measure and describe themselves by offset")
    func instantArithmetic() {
        let start = TestClock.Instant()
        let later = start.advanced(by: .milliseconds(1500))
        #expect(later.offset == .milliseconds(1500))
        #expect(start.duration(to: later) == .milliseconds(1500))
        #expect(later.duration(to: start) == .milliseconds(-1500))
        #expect(later.advanced(by: .milliseconds(-1500)) == start)
        #expect(start < later)
        #expect(!(later < start))
        #expect(Set([start, later, start.advanced(by: .zero)]).count == 2)
        #expect(later.description == "TestClock.Instant(1.5 seconds)")
    }

    // MARK: Sleeping

    @Test("a sleeper wakes exactly when the clock reaches its deadline")
    func sleepResumesOnlyAtDeadline() async throws {
        let clock = TestClock()
        try await withThrowingTaskGroup(of: TestClock.Instant.self) { group in
            group.addTask {
                try await clock.sleep(for: .seconds(5))
                return clock.now
            }
            await clock.waitForSleepers(count: 1)
            #expect(clock.sleeperCount == 1)

            clock.advance(by: .milliseconds(4999))
            #expect(clock.sleeperCount == 1, "woke before its deadline")

            clock.advance(by: .milliseconds(1))
            #expect(clock.sleeperCount == 0)
            let wokeAt = try await group.next()
            #expect(wokeAt == TestClock.Instant(offset: .seconds(5)))
        }
    }

    @Test("sleepers wake one deadline at a time, in deadline order")
    func sleepersWakeInDeadlineOrder() async throws {
        let clock = TestClock()
        try await withThrowingTaskGroup(of: Int.self) { group in
            for seconds in [3, 1, 2] {
                group.addTask {
                    try await clock.sleep(until: .init(offset: .seconds(seconds)), tolerance: nil)
                    return seconds
                }
            }
            await clock.waitForSleepers(count: 3)

            var woken: [Int] = []
            for second in 1...3 {
                clock.advance(to: .init(offset: .seconds(second)))
                #expect(clock.sleeperCount == 3 - second)
                woken.append(try #require(try await group.next()))
            }
            #expect(woken == [1, 2, 3])
        }
    }

    @Test("one advance wakes every sleeper it passes and no other")
    func oneAdvanceWakesEveryDueSleeper() async throws {
        let clock = TestClock()
        try await withThrowingTaskGroup(of: Int.self) { group in
            for seconds in 1...5 {
                group.addTask {
                    try await clock.sleep(for: .seconds(seconds))
                    return seconds
                }
            }
            await clock.waitForSleepers(count: 5)

            clock.advance(by: .seconds(3))
            #expect(clock.sleeperCount == 2)
            var woken: Set<Int> = []
            for _ in 0..<3 {
                woken.insert(try #require(try await group.next()))
            }
            #expect(woken == [1, 2, 3])

            clock.advance(by: .seconds(2))
            for _ in 0..<2 {
                woken.insert(try #require(try await group.next()))
            }
            #expect(woken == [1, 2, 3, 4, 5])
            #expect(clock.sleeperCount == 0)
        }
    }

    @Test("advanceToNextSleeper steps from deadline to deadline")
    func advanceToNextSleeper() async throws {
        let clock = TestClock()
        #expect(!clock.advanceToNextSleeper(), "moved with nobody asleep")
        #expect(clock.now.offset == .zero)

        try await withThrowingTaskGroup(of: Int.self) { group in
            for seconds in [7, 2] {
                group.addTask {
                    try await clock.sleep(for: .seconds(seconds))
                    return seconds
                }
            }
            await clock.waitForSleepers(count: 2)

            #expect(clock.advanceToNextSleeper())
            #expect(clock.now.offset == .seconds(2))
            let first = try await group.next()
            #expect(first == 2)

            #expect(clock.advanceToNextSleeper())
            #expect(clock.now.offset == .seconds(7))
            let second = try await group.next()
            #expect(second == 7)
        }
        #expect(!clock.advanceToNextSleeper())
        #expect(clock.now.offset == .seconds(7))
    }

    @Test(
        "a sleep that is already due returns without suspending",
        arguments: [Duration.zero, .nanoseconds(-1), .seconds(-3)]
    )
    func dueSleepReturnsImmediately(duration: Duration) async throws {
        let clock = TestClock(now: .init(offset: .seconds(10)))
        try await clock.sleep(for: duration)
        try await clock.sleep(until: clock.now.advanced(by: duration), tolerance: .seconds(1))
        #expect(clock.sleeperCount == 0)
        #expect(clock.now.offset == .seconds(10))
    }

    @Test("a sleeper that is the clock's generic Clock<Duration> works the same")
    func sleepsThroughGenericClock() async throws {
        func nap(on clock: some Clock<Duration>) async throws -> Duration {
            let start = clock.now
            try await clock.sleep(for: .milliseconds(250))
            return start.duration(to: clock.now)
        }
        let clock = TestClock()
        try await withThrowingTaskGroup(of: Duration.self) { group in
            group.addTask { try await nap(on: clock) }
            await clock.waitForSleepers(count: 1)
            clock.advance(by: .seconds(1))
            let measured = try await group.next()
            #expect(measured == .seconds(1))
        }
    }

    // MARK: Cancellation

    @Test("a task cancelled before it sleeps throws CancellationError and never counts as a sleeper")
    func cancellationBeforeSleep() async throws {
        let clock = TestClock()
        await withThrowingTaskGroup(of: Void.self) { group in
            group.cancelAll()
            group.addTask {
                try await clock.sleep(for: .seconds(1))
            }
            let result = await group.nextResult()
            #expect(throws: CancellationError.self) { try result?.get() }
        }
        #expect(clock.sleeperCount == 0)
        #expect(clock.now.offset == .zero)
    }

    @Test("a cancelled task's due sleep still throws CancellationError")
    func cancellationBeforeDueSleep() async throws {
        let clock = TestClock()
        await withThrowingTaskGroup(of: Void.self) { group in
            group.cancelAll()
            group.addTask {
                try await clock.sleep(for: .zero)
            }
            let result = await group.nextResult()
            #expect(throws: CancellationError.self) { try result?.get() }
        }
    }

    @Test("cancelling a sleeping task wakes it with CancellationError without moving the clock")
    func cancellationDuringSleep() async throws {
        let clock = TestClock()
        await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await clock.sleep(for: .seconds(60))
            }
            await clock.waitForSleepers(count: 1)
            group.cancelAll()
            let result = await group.nextResult()
            #expect(throws: CancellationError.self) { try result?.get() }
        }
        #expect(clock.sleeperCount == 0)
        #expect(clock.now.offset == .zero)
    }

    @Test("cancelling one sleeper leaves the others asleep")
    func cancellationOfOneSleeper() async throws {
        let clock = TestClock()
        try await withThrowingTaskGroup(of: String.self) { group in
            group.addTask {
                try await clock.sleep(for: .seconds(10))
                return "survivor"
            }
            group.addTask {
                // A nested group so that only this sleeper is cancelled.
                await withThrowingTaskGroup(of: Void.self) { inner in
                    inner.addTask { try await clock.sleep(for: .seconds(1)) }
                    await clock.waitForSleepers(count: 2)
                    inner.cancelAll()
                    let result = await inner.nextResult()
                    return result.map { (try? $0.get()) == nil ? "cancelled" : "woke" } ?? "missing"
                }
            }
            let cancelled = try await group.next()
            #expect(cancelled == "cancelled")
            #expect(clock.sleeperCount == 1)

            clock.advance(by: .seconds(10))
            let survivor = try await group.next()
            #expect(survivor == "survivor")
        }
    }

    // MARK: waitForSleepers

    @Test("waitForSleepers is the handshake for many concurrent sleepers")
    func waitForManySleepers() async throws {
        let clock = TestClock()
        try await withThrowingTaskGroup(of: Int.self) { group in
            for milliseconds in 1...50 {
                group.addTask {
                    try await clock.sleep(for: .milliseconds(milliseconds))
                    return milliseconds
                }
            }
            await clock.waitForSleepers(count: 50)
            #expect(clock.sleeperCount == 50)

            clock.advance(by: .milliseconds(25))
            #expect(clock.sleeperCount == 25)
            var woken: Set<Int> = []
            for _ in 0..<25 {
                woken.insert(try #require(try await group.next()))
            }
            #expect(woken == Set(1...25))

            clock.advance(by: .milliseconds(25))
            while let milliseconds = try await group.next() {
                woken.insert(milliseconds)
            }
            #expect(woken == Set(1...50))
            #expect(clock.sleeperCount == 0)
        }
    }

    @Test("waiters suspended before the sleepers arrive are resumed when their count is reached")
    func waitersResumedBySleepers() async throws {
        let clock = TestClock()
        enum Event: Hashable {
            case waiterSaw(count: Int, sleepers: Int)
            case sleeperWoke
        }
        try await withThrowingTaskGroup(of: Event.self) { group in
            for count in [1, 3] {
                group.addTask {
                    await clock.waitForSleepers(count: count)
                    return .waiterSaw(count: count, sleepers: clock.sleeperCount)
                }
            }
            var events: [Event] = []
            for _ in 0..<3 {
                group.addTask {
                    try await clock.sleep(for: .seconds(1))
                    return .sleeperWoke
                }
            }
            // Nothing advances the clock until both waiters are done, so each sees every sleeper
            // that has arrived by then: at least its count.
            for _ in 0..<2 {
                events.append(try #require(try await group.next()))
            }
            #expect(clock.sleeperCount == 3)
            clock.advance(by: .seconds(1))
            while let event = try await group.next() {
                events.append(event)
            }
            #expect(events.filter { $0 == .sleeperWoke }.count == 3)
            for case .waiterSaw(let count, let sleepers) in events {
                #expect(sleepers >= count)
            }
        }
    }

    @Test("waitForSleepers returns at once when enough sleepers are asleep or the count is not positive")
    func waitForSleepersReturnsAtOnce() async throws {
        let clock = TestClock()
        await clock.waitForSleepers(count: 0)
        await clock.waitForSleepers(count: -1)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await clock.sleep(for: .seconds(1)) }
            group.addTask { try await clock.sleep(for: .seconds(1)) }
            await clock.waitForSleepers(count: 2)
            await clock.waitForSleepers(count: 1)
            await clock.waitForSleepers(count: 2)
            clock.advance(by: .seconds(1))
            try await group.waitForAll()
        }
    }

    @Test("a cancelled waiter returns without the count being reached")
    func cancelledWaiterReturns() async {
        let clock = TestClock()
        await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                await clock.waitForSleepers(count: 1)
                return Task.isCancelled
            }
            group.cancelAll()
            #expect(await group.next() == true)
        }
        #expect(clock.sleeperCount == 0)
    }

    @Test("a waiter cancelled before it waits returns at once")
    func waiterCancelledBeforeWaiting() async {
        let clock = TestClock()
        await withTaskGroup(of: Int.self) { group in
            group.cancelAll()
            group.addTask {
                await clock.waitForSleepers(count: 5)
                return clock.sleeperCount
            }
            #expect(await group.next() == 0)
        }
    }
}
