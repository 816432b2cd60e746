import KeelTesting
import Testing

/// The clock's state machine, driven synchronously with plain strings standing in for the
/// continuations of sleepers and waiters.
@Suite("TestClock.StateMachine", .timeLimit(.minutes(2)))
struct TestClockStateMachineTests {
    typealias Machine = TestClock.StateMachine<String, String>

    private static func at(_ seconds: Int) -> TestClock.Instant {
        TestClock.Instant(offset: .seconds(seconds))
    }

    private func expectSuspended(
        _ action: Machine.SleepAction,
        resumingWaiters expected: [String] = [],
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        guard case .suspend(let waiters) = action else {
            Issue.record("expected the sleeper to suspend, got \(action)", sourceLocation: sourceLocation)
            return
        }
        #expect(waiters == expected, sourceLocation: sourceLocation)
    }

    @Test("a sleeper is stored until an advance reaches its deadline")
    func sleepAndAdvance() {
        var machine = Machine(now: Self.at(0))
        let id = machine.makeSleeperID()
        #expect(machine.sleeperCount == 0, "an arriving sleeper is not asleep yet")
        self.expectSuspended(machine.sleep(id: id, until: Self.at(5), sleeper: "a"))
        #expect(machine.sleeperCount == 1)
        #expect(machine.nextDeadline == Self.at(5))

        #expect(machine.advance(to: Self.at(4)) == [])
        #expect(machine.now == Self.at(4))
        #expect(machine.advance(to: Self.at(5)) == ["a"])
        #expect(machine.sleeperCount == 0)
        #expect(machine.nextDeadline == nil)
    }

    @Test("woken sleepers come back by deadline, then by registration order rather than id order")
    func wakeOrder() {
        var machine = Machine(now: Self.at(0))
        let first = machine.makeSleeperID()
        let second = machine.makeSleeperID()
        let third = machine.makeSleeperID()
        let fourth = machine.makeSleeperID()
        // Registered out of id order: second, first, fourth, third.
        self.expectSuspended(machine.sleep(id: second, until: Self.at(2), sleeper: "second@2"))
        self.expectSuspended(machine.sleep(id: first, until: Self.at(2), sleeper: "first@2"))
        self.expectSuspended(machine.sleep(id: fourth, until: Self.at(3), sleeper: "fourth@3"))
        self.expectSuspended(machine.sleep(id: third, until: Self.at(1), sleeper: "third@1"))
        #expect(machine.nextDeadline == Self.at(1))

        #expect(machine.advance(to: Self.at(10)) == ["third@1", "second@2", "first@2", "fourth@3"])
    }

    @Test("a sleeper whose deadline has passed by the time it arrives is resumed at once")
    func sleepAfterDeadline() {
        var machine = Machine(now: Self.at(0))
        let id = machine.makeSleeperID()
        _ = machine.advance(to: Self.at(3))
        guard case .resume = machine.sleep(id: id, until: Self.at(3), sleeper: "late") else {
            Issue.record("a due sleeper was not resumed")
            return
        }
        #expect(machine.sleeperCount == 0)
    }

    @Test("a cancellation that arrives before the sleeper is honoured when it arrives")
    func cancelWhileArriving() {
        var machine = Machine(now: Self.at(0))
        let id = machine.makeSleeperID()
        #expect(machine.cancelSleeper(id: id) == nil)
        guard case .resumeWithCancellation = machine.sleep(id: id, until: Self.at(5), sleeper: "a") else {
            Issue.record("an early cancellation was lost")
            return
        }
        #expect(machine.sleeperCount == 0)
        #expect(machine.advance(to: Self.at(5)) == [])
        #expect(machine.description.contains("arriving sleepers: 0"))
    }

    @Test("cancelling a sleeper removes it; cancelling it again or after it woke does nothing")
    func cancelAsleepAndLate() {
        var machine = Machine(now: Self.at(0))
        let cancelled = machine.makeSleeperID()
        let woken = machine.makeSleeperID()
        self.expectSuspended(machine.sleep(id: cancelled, until: Self.at(1), sleeper: "cancelled"))
        self.expectSuspended(machine.sleep(id: woken, until: Self.at(1), sleeper: "woken"))

        #expect(machine.cancelSleeper(id: cancelled) == "cancelled")
        #expect(machine.sleeperCount == 1)
        #expect(machine.cancelSleeper(id: cancelled) == nil)
        #expect(machine.advance(to: Self.at(1)) == ["woken"])
        #expect(machine.cancelSleeper(id: woken) == nil)
        #expect(machine.description.contains("arriving sleepers: 0"), "a late cancellation left state behind")
    }

    @Test("a waiter is resumed by the sleeper that brings the count to its target")
    func waiterResumedAtCount() {
        var machine = Machine(now: Self.at(0))
        let two = machine.makeWaiterID()
        let three = machine.makeWaiterID()
        guard case .suspend = machine.wait(id: two, forSleepers: 2, waiter: "two"),
            case .suspend = machine.wait(id: three, forSleepers: 3, waiter: "three")
        else {
            Issue.record("a waiter did not suspend with no sleepers")
            return
        }
        #expect(machine.waiterCount == 2)

        let sleepers = (0..<3).map { _ in machine.makeSleeperID() }
        self.expectSuspended(machine.sleep(id: sleepers[0], until: Self.at(1), sleeper: "s0"))
        self.expectSuspended(machine.sleep(id: sleepers[1], until: Self.at(1), sleeper: "s1"), resumingWaiters: ["two"])
        self.expectSuspended(
            machine.sleep(id: sleepers[2], until: Self.at(1), sleeper: "s2"),
            resumingWaiters: ["three"]
        )
        #expect(machine.waiterCount == 0)
    }

    @Test("a waiter whose count is already reached is resumed at once")
    func waiterAlreadySatisfied() {
        var machine = Machine(now: Self.at(0))
        let sleeper = machine.makeSleeperID()
        self.expectSuspended(machine.sleep(id: sleeper, until: Self.at(1), sleeper: "s"))
        let waiter = machine.makeWaiterID()
        guard case .resume = machine.wait(id: waiter, forSleepers: 1, waiter: "w") else {
            Issue.record("a satisfied waiter suspended")
            return
        }
        #expect(machine.waiterCount == 0)
    }

    @Test("waiters cancelled before or while waiting are resumed exactly once")
    func waiterCancellation() {
        var machine = Machine(now: Self.at(0))
        let early = machine.makeWaiterID()
        #expect(machine.cancelWaiter(id: early) == nil)
        guard case .resume = machine.wait(id: early, forSleepers: 1, waiter: "early") else {
            Issue.record("an early cancellation of a waiter was lost")
            return
        }

        let parked = machine.makeWaiterID()
        guard case .suspend = machine.wait(id: parked, forSleepers: 1, waiter: "parked") else {
            Issue.record("the waiter did not suspend")
            return
        }
        #expect(machine.cancelWaiter(id: parked) == "parked")
        #expect(machine.cancelWaiter(id: parked) == nil)
        #expect(machine.waiterCount == 0)

        let sleeper = machine.makeSleeperID()
        self.expectSuspended(machine.sleep(id: sleeper, until: Self.at(1), sleeper: "s"), resumingWaiters: [])
    }

    @Test("a sleeper that wakes before the target count is reached does not count")
    func wokenSleepersDoNotCount() {
        var machine = Machine(now: Self.at(0))
        let waiter = machine.makeWaiterID()
        guard case .suspend = machine.wait(id: waiter, forSleepers: 2, waiter: "w") else {
            Issue.record("the waiter did not suspend")
            return
        }
        let first = machine.makeSleeperID()
        self.expectSuspended(machine.sleep(id: first, until: Self.at(1), sleeper: "first"))
        #expect(machine.advance(to: Self.at(1)) == ["first"])
        let second = machine.makeSleeperID()
        self.expectSuspended(machine.sleep(id: second, until: Self.at(2), sleeper: "second"))
        #expect(machine.waiterCount == 1)
        let third = machine.makeSleeperID()
        self.expectSuspended(machine.sleep(id: third, until: Self.at(2), sleeper: "third"), resumingWaiters: ["w"])
    }
}
