import KeelCore
import KeelTesting
import Testing

@Suite("Deadline", .timeLimit(.minutes(2)))
struct DeadlineTests {
    @Test("remaining and hasPassed follow the clock the deadline was made on")
    func remainingOnTestClock() {
        let clock = TestClock()
        let deadline = Deadline.after(.seconds(5), on: clock)
        #expect(deadline.instant(on: clock) == TestClock.Instant(offset: .seconds(5)))
        #expect(deadline.remaining(on: clock) == .seconds(5))
        #expect(!deadline.hasPassed(on: clock))

        clock.advance(by: .seconds(2))
        #expect(deadline.remaining(on: clock) == .seconds(3))
        #expect(!deadline.hasPassed(on: clock))

        clock.advance(by: .milliseconds(2999))
        #expect(deadline.remaining(on: clock) == .milliseconds(1))
        #expect(!deadline.hasPassed(on: clock))

        clock.advance(by: .milliseconds(1))
        #expect(deadline.remaining(on: clock) == .zero)
        #expect(deadline.hasPassed(on: clock), "a deadline has passed at its own instant")

        clock.advance(by: .seconds(1))
        #expect(deadline.remaining(on: clock) == .seconds(-1))
        #expect(deadline.hasPassed(on: clock))
    }

    @Test("a deadline made from an instant is read on any clock of the same kind")
    func sameKindOfClock() {
        let deadline = Deadline(TestClock.Instant(offset: .seconds(5)))
        let other = TestClock(now: .init(offset: .seconds(8)))
        #expect(deadline.remaining(on: other) == .seconds(-3))
        #expect(deadline.hasPassed(on: other))
    }

    @Test("a deadline reads as absent on a clock of another kind")
    func otherKindOfClock() {
        let testClock = TestClock()
        let continuous = ContinuousClock()
        let onTestClock = Deadline.after(.seconds(5), on: testClock)
        #expect(onTestClock.instant(on: continuous) == nil)
        #expect(onTestClock.remaining(on: continuous) == nil)
        #expect(!onTestClock.hasPassed(on: continuous))
        // Even a deadline long gone on its own clock never reads as passed on another kind.
        testClock.advance(by: .seconds(10))
        #expect(onTestClock.hasPassed(on: testClock))
        #expect(!onTestClock.hasPassed(on: continuous))

        let onContinuous = Deadline.after(.seconds(-1), on: continuous)
        #expect(onContinuous.instant(on: testClock) == nil)
        #expect(onContinuous.remaining(on: testClock) == nil)
        #expect(!onContinuous.hasPassed(on: testClock))
        #expect(onContinuous.hasPassed(on: continuous))
        #expect(onContinuous.remaining(on: SuspendingClock()) == nil)
    }

    @Test("earliest picks the earlier of two deadlines on the same kind of clock")
    func earliestSameKind() {
        let clock = TestClock()
        let soon = Deadline.after(.seconds(3), on: clock)
        let later = Deadline.after(.seconds(5), on: clock)
        #expect(soon.earliest(later).instant(on: clock)?.offset == .seconds(3))
        #expect(later.earliest(soon).instant(on: clock)?.offset == .seconds(3))
        #expect(later.earliest(later).instant(on: clock)?.offset == .seconds(5))
        #expect(later.earliest(nil).instant(on: clock)?.offset == .seconds(5))
    }

    @Test("earliest keeps the receiver when the other deadline is on another kind of clock")
    func earliestMixedKinds() {
        let testClock = TestClock()
        let continuous = ContinuousClock()
        let onTestClock = Deadline.after(.seconds(5), on: testClock)
        let onContinuous = Deadline.after(.seconds(-100), on: continuous)
        #expect(onTestClock.earliest(onContinuous).instant(on: testClock) != nil)
        #expect(onContinuous.earliest(onTestClock).instant(on: continuous) != nil)
    }

    @Test("the description shows the underlying instant")
    func description() {
        let deadline = Deadline(TestClock.Instant(offset: .seconds(2)))
        #expect(deadline.description == "Deadline(TestClock.Instant(2.0 seconds))")
    }
}
