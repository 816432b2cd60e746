import Testing

@testable import KeelResilience

@Suite("RateLimiter state machine", .timeLimit(.minutes(1)))
struct RateLimiterStateMachineTests {
    private func bucket(capacity: Int = 2) -> RateLimiterStateMachine {
        RateLimiterStateMachine(algorithm: .tokenBucket(capacity: capacity, cost: .milliseconds(100), tat: .zero))
    }

    @Test func grantsAtOnceWhileTokensLastThenQueuesTheHead() {
        var machine = self.bucket()
        #expect(machine.acquire(permits: 2, now: .zero, maxWait: nil) == .granted)
        #expect(machine.acquire(permits: 1, now: .zero, maxWait: .zero) == .rejected(wait: nil))
        #expect(
            machine.acquire(permits: 1, now: .zero, maxWait: nil) == .enqueued(id: 0, .sleep(until: .milliseconds(100)))
        )
        #expect(machine.acquire(permits: 1, now: .zero, maxWait: nil) == .enqueued(id: 1, nil))
        #expect(
            machine.acquire(permits: 1, now: .zero, maxWait: .milliseconds(250)) == .rejected(wait: .milliseconds(300))
        )
        #expect(machine.acquire(permits: 3, now: .zero, maxWait: nil) == .exceedsCapacity)
        #expect(machine.queued == 2)
    }

    @Test func theHeadIsGrantedWhenItWakesAndTheNextIsPromotedEarly() {
        var machine = self.bucket()
        _ = machine.acquire(permits: 2, now: .zero, maxWait: nil)
        _ = machine.acquire(permits: 1, now: .zero, maxWait: nil)  // head, 0
        _ = machine.acquire(permits: 1, now: .zero, maxWait: nil)  // 1, not parked yet
        let (early, none) = machine.headWoke(id: 0, now: .milliseconds(50))
        #expect(early == .sleep(until: .milliseconds(100)))
        #expect(none.isEmpty)
        let (instruction, resumptions) = machine.headWoke(id: 0, now: .milliseconds(100))
        #expect(instruction == .granted(at: .milliseconds(100)))
        #expect(resumptions.isEmpty)  // waiter 1 had not parked: its instruction waits for it
        #expect(machine.queued == 1)
        #expect(machine.headWoke(id: 0, now: .milliseconds(100)).0 == nil)  // no longer the head
    }

    @Test func cancellingTheHeadPromotesTheNextAndTakesNothing() {
        var machine = self.bucket(capacity: 1)
        _ = machine.acquire(permits: 1, now: .zero, maxWait: nil)
        _ = machine.acquire(permits: 1, now: .zero, maxWait: nil)  // head 0, due 100 ms
        _ = machine.acquire(permits: 1, now: .zero, maxWait: nil)  // 1, due 200 ms
        #expect(machine.cancel(id: 0, now: .milliseconds(10)).isEmpty)  // 1 not parked: told later
        #expect(machine.queued == 1)
        let (instruction, _) = machine.headWoke(id: 1, now: .milliseconds(100))
        #expect(instruction == .granted(at: .milliseconds(100)))  // the cancelled head's token
        #expect(machine.cancel(id: 1, now: .milliseconds(100)).isEmpty)  // already granted: no-op
    }

    @Test func aRefundGivesThePermitsBack() {
        var window = RateLimiterStateMachine(algorithm: .slidingWindow(limit: 2, window: .seconds(1), log: []))
        #expect(window.acquire(permits: 2, now: .zero, maxWait: .zero) == .granted)
        #expect(window.available(now: .zero) == 0)
        window.refund(permits: 2, takenAt: .zero)
        #expect(window.available(now: .zero) == 2)
        var bucket = self.bucket()
        _ = bucket.acquire(permits: 2, now: .zero, maxWait: .zero)
        bucket.refund(permits: 1, takenAt: .zero)
        #expect(bucket.available(now: .zero) == 1)
    }
}
