import KeelCore
import Testing

@testable import KeelResilience

@Suite("Timeout schedule", .timeLimit(.minutes(2)))
struct TimeoutScheduleTests {
    @Test func startsATimerAndReplacesItOnlyForAnEarlierDeadline() throws {
        var schedule = TimeoutSchedule<String>()
        let a = schedule.add("a", deadline: .seconds(5))
        let b = schedule.add("b", deadline: .seconds(7))
        let c = schedule.add("c", deadline: .seconds(5))
        let d = schedule.add("d", deadline: .seconds(2))
        #expect(a?.action == .start(generation: 1, until: .seconds(5)))
        #expect(b?.action == TimeoutSchedule<String>.AddAction.none)
        #expect(c?.action == TimeoutSchedule<String>.AddAction.none)
        #expect(d?.action == .replace(generation: 2, until: .seconds(2)))
        #expect(schedule.pendingCount == 4)
        // The replaced task wakes anyway: it expires nothing due and is told to end.
        let replaced = schedule.fire(now: .seconds(1), generation: 1)
        #expect(replaced.expired.isEmpty)
        #expect(replaced.next == nil)
        let first = schedule.fire(now: .seconds(2), generation: 2)
        #expect(first.expired == ["d"])
        #expect(first.next == .seconds(5))
        let second = schedule.fire(now: .seconds(5), generation: 2)
        #expect(second.expired == ["a", "c"])  // equal deadlines in the order they came
        #expect(second.next == .seconds(7))
        let removed = schedule.remove(id: try #require(a).id)
        #expect(removed == nil)  // already expired
    }

    @Test func removedEntriesNeverExpireAndTheTimerEndsWhenNothingIsPending() throws {
        var schedule = TimeoutSchedule<Int>()
        let addedFirst = schedule.add(1, deadline: .seconds(1))
        let addedSecond = schedule.add(2, deadline: .seconds(2))
        let first = try #require(addedFirst)
        let second = try #require(addedSecond)
        let removedFirst = schedule.remove(id: first.id)
        let removedAgain = schedule.remove(id: first.id)
        #expect(removedFirst == 1)
        #expect(removedAgain == nil)
        // The timer sleeps until 1 s still; it wakes, skips the stale item and sleeps until 2 s.
        let woke = schedule.fire(now: .seconds(1), generation: 1)
        #expect(woke.expired.isEmpty)
        #expect(woke.next == .seconds(2))
        let removedSecond = schedule.remove(id: second.id)
        #expect(removedSecond == 2)
        #expect(schedule.storedCount == 0)
        let last = schedule.fire(now: .seconds(2), generation: 1)
        #expect(last.expired.isEmpty)
        #expect(last.next == nil)
        #expect(schedule.armedUntil == nil)
        // The next entry starts a new timer.
        let next = schedule.add(3, deadline: .seconds(9))
        #expect(next?.action == .start(generation: 2, until: .seconds(9)))
    }

    @Test func staleItemsAreCompactedAway() throws {
        var schedule = TimeoutSchedule<Int>()
        _ = schedule.add(0, deadline: .seconds(100_000))
        var largest = 0
        for index in 1...10_000 {
            let adding = schedule.add(index, deadline: .seconds(Int64(index)))
            let added = try #require(adding)
            schedule.remove(id: added.id)
            largest = max(largest, schedule.storedCount)
        }
        #expect(largest <= 66)
        #expect(schedule.pendingCount == 1)
        let fired = schedule.fire(now: .seconds(100_000), generation: schedule.generation)
        #expect(fired.expired == [0])
        #expect(fired.next == nil)
        #expect(schedule.storedCount == 0)
    }

    @Test func theHeapExpiresInDeadlineOrder() throws {
        var schedule = TimeoutSchedule<Int>()
        let random = RandomSource(seed: 5)
        var deadlines: [Int] = []
        for index in 0..<500 {
            let deadline = random.next(upperBound: 1_000)
            deadlines.append(deadline)
            _ = schedule.add(index, deadline: .milliseconds(deadline))
        }
        var order: [Int] = []
        for now in 0..<1_000 {
            order += schedule.fire(now: .milliseconds(now), generation: schedule.generation).expired
        }
        #expect(order.count == 500)
        #expect(order.map { deadlines[$0] } == deadlines.sorted())
        #expect(schedule.pendingCount == 0)
    }

    @Test func shutDownHandsBackThePendingEntriesAndRefusesNewOnes() throws {
        var schedule = TimeoutSchedule<String>()
        _ = schedule.add("late", deadline: .seconds(3))
        _ = schedule.add("early", deadline: .seconds(1))
        let orphans = schedule.shutDown()
        #expect(orphans == ["early", "late"])
        let after = schedule.add("after", deadline: .seconds(1))
        #expect(after == nil)
        let fired = schedule.fire(now: .seconds(5), generation: schedule.generation)
        #expect(fired.expired.isEmpty)
        #expect(fired.next == nil)
        #expect(schedule.armedUntil == nil)
    }
}
