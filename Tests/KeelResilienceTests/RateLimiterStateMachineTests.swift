import Testing

@testable import KeelResilience

@Suite("RateLimiter state machine", .timeLimit(.minutes(2)))
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

@Suite("RateLimiter state machine: bucketed window and queue bound", .timeLimit(.minutes(2)))
struct RateLimiterWindowCounterStateMachineTests {
    private func counter(limit: Int = 3, window: Duration = .seconds(1), buckets: Int = 4) -> RateLimiterStateMachine {
        RateLimiterStateMachine(
            algorithm: .slidingWindowCounter(RateLimiterWindowCounter(limit: limit, window: window, buckets: buckets))
        )
    }

    @Test func permitsLeaveAWindowAfterTheEndOfTheirBucket() {
        var machine = self.counter()  // 3 per second, buckets of 250 ms
        #expect(machine.acquire(permits: 1, now: .zero, maxWait: .zero) == .granted)  // bucket 0
        #expect(machine.acquire(permits: 1, now: .milliseconds(100), maxWait: .zero) == .granted)  // bucket 0
        #expect(machine.acquire(permits: 1, now: .milliseconds(300), maxWait: .zero) == .granted)  // bucket 1
        #expect(machine.acquire(permits: 1, now: .milliseconds(300), maxWait: .zero) == .rejected(wait: nil))
        #expect(machine.algorithm.readyTime(permits: 1, now: .milliseconds(300)) == .milliseconds(1250))
        #expect(machine.algorithm.readyTime(permits: 2, now: .milliseconds(300)) == .milliseconds(1250))
        #expect(machine.algorithm.readyTime(permits: 3, now: .milliseconds(300)) == .milliseconds(1500))
        // A log would free the first permit at 1 s; bucket 0 is counted until 1 s after its end.
        #expect(machine.available(now: .milliseconds(999)) == 0)
        #expect(machine.available(now: .milliseconds(1000)) == 0)
        #expect(machine.available(now: .milliseconds(1249)) == 0)
        #expect(machine.available(now: .milliseconds(1250)) == 2)
        #expect(machine.available(now: .milliseconds(1499)) == 2)
        #expect(machine.available(now: .milliseconds(1500)) == 3)
        #expect(machine.algorithm.readyTime(permits: 3, now: .milliseconds(1500)) == .milliseconds(1500))
        #expect(machine.acquire(permits: 2, now: .milliseconds(1250), maxWait: .zero) == .granted)  // bucket 5
        #expect(machine.available(now: .milliseconds(1250)) == 0)
        #expect(machine.available(now: .milliseconds(1500)) == 1)  // bucket 1 left
        #expect(machine.available(now: .milliseconds(2499)) == 1)
        #expect(machine.available(now: .milliseconds(2500)) == 3)  // bucket 5 left
    }

    @Test func dueTimesOfQueuedWaitersFollowTheBuckets() {
        var machine = self.counter()  // 3 per second, buckets of 250 ms
        _ = machine.acquire(permits: 2, now: .zero, maxWait: .zero)  // bucket 0, leaves at 1250 ms
        _ = machine.acquire(permits: 1, now: .milliseconds(300), maxWait: .zero)  // bucket 1, leaves at 1500 ms
        #expect(
            machine.acquire(permits: 1, now: .milliseconds(300), maxWait: nil)
                == .enqueued(id: 0, .sleep(until: .milliseconds(1250)))
        )
        // After waiter 0 takes one at 1250 ms (bucket 5), two more fit when bucket 1 leaves, at 1500 ms.
        #expect(machine.acquire(permits: 2, now: .milliseconds(300), maxWait: nil) == .enqueued(id: 1, nil))
        // After waiter 1 takes two at 1500 ms (bucket 6), one more fits when bucket 5 leaves, at 2500 ms.
        #expect(
            machine.acquire(permits: 1, now: .milliseconds(300), maxWait: .milliseconds(1100))
                == .rejected(wait: .milliseconds(2200))
        )
        #expect(machine.queued == 2)
        #expect(machine.headWoke(id: 0, now: .milliseconds(1249)).0 == .sleep(until: .milliseconds(1250)))
        let (first, resumptions) = machine.headWoke(id: 0, now: .milliseconds(1250))
        #expect(first == .granted(at: .milliseconds(1250)))
        #expect(resumptions.isEmpty)  // waiter 1 has not parked: it is told when it does
        #expect(machine.headWoke(id: 1, now: .milliseconds(1250)).0 == .sleep(until: .milliseconds(1500)))
        #expect(machine.headWoke(id: 1, now: .milliseconds(1500)).0 == .granted(at: .milliseconds(1500)))
        #expect(machine.queued == 0)
        #expect(machine.available(now: .milliseconds(2499)) == 0)
        #expect(machine.available(now: .milliseconds(2500)) == 1)
        #expect(machine.available(now: .milliseconds(2750)) == 3)
    }

    @Test func bucketBoundariesAreExactWhenTheWindowDoesNotDivideEvenly() {
        // One second in 3 buckets: 333_333_333_333_333_333 attoseconds each, the last one lost.
        let width = Duration(attoseconds: 333_333_333_333_333_333)
        var machine = self.counter(limit: 5, window: .seconds(1), buckets: 3)
        #expect(machine.acquire(permits: 1, now: .zero, maxWait: .zero) == .granted)  // bucket 0
        #expect(machine.acquire(permits: 1, now: width, maxWait: .zero) == .granted)  // bucket 1
        #expect(
            machine.acquire(permits: 1, now: width * 2 - Duration(attoseconds: 1), maxWait: .zero) == .granted
        )  // bucket 1
        #expect(machine.available(now: width * 4 - Duration(attoseconds: 1)) == 2)
        #expect(machine.available(now: width * 4) == 3)  // bucket 0 left
        #expect(machine.available(now: width * 5 - Duration(attoseconds: 1)) == 3)
        #expect(machine.available(now: width * 5) == 5)  // bucket 1 left
        #expect(machine.algorithm.readyTime(permits: 5, now: width * 2) == width * 5)
        #expect(machine.algorithm.readyTime(permits: 3, now: width * 2) == width * 4)
        #expect(machine.algorithm.readyTime(permits: 2, now: width * 2) == width * 2)
    }

    @Test func aLongIdleEmptiesEveryBucketAndTheRingWrapsAround() {
        var machine = self.counter(limit: 5, window: .seconds(1), buckets: 4)  // buckets of 250 ms
        // Two and a half windows of one grant per bucket: a grant counts in its bucket and the four
        // after it, so five buckets, and the ring of five slots wraps around twice.
        for step in 0..<10 {
            let now = Duration.milliseconds(250 * step)
            #expect(machine.acquire(permits: 1, now: now, maxWait: .zero) == .granted, "step \(step)")
            #expect(machine.available(now: now) == 5 - min(step + 1, 5), "step \(step)")
            #expect(machine.available(now: now + .milliseconds(250)) == 5 - min(step + 1, 4), "step \(step)")
        }
        #expect(machine.acquire(permits: 1, now: .milliseconds(2499), maxWait: .zero) == .rejected(wait: nil))
        #expect(machine.available(now: .milliseconds(2499)) == 0)  // buckets 5 to 9
        #expect(machine.available(now: .milliseconds(2500)) == 1)  // bucket 5 left
        #expect(machine.available(now: .milliseconds(3249)) == 3)
        #expect(machine.available(now: .milliseconds(3250)) == 4)
        #expect(machine.available(now: .milliseconds(3500)) == 5)
        #expect(machine.acquire(permits: 5, now: .seconds(3600), maxWait: .zero) == .granted)
        #expect(machine.available(now: .seconds(3600)) == 0)
        #expect(machine.available(now: .milliseconds(3_601_249)) == 0)
        #expect(machine.available(now: .milliseconds(3_601_250)) == 5)
    }

    @Test func aClockReadLateCountsInTheNewestBucketAndARefundFindsIt() {
        var machine = self.counter(limit: 2, window: .seconds(1), buckets: 2)  // buckets of 500 ms
        #expect(machine.acquire(permits: 1, now: .milliseconds(600), maxWait: .zero) == .granted)  // bucket 1
        // Read at 400 ms, before the grant above took the lock: counted in bucket 1, not 0.
        #expect(machine.acquire(permits: 1, now: .milliseconds(400), maxWait: .zero) == .granted)
        #expect(machine.available(now: .milliseconds(400)) == 0)
        #expect(machine.available(now: .milliseconds(1500)) == 0)  // bucket 0 would have left
        #expect(machine.available(now: .milliseconds(2000)) == 2)
        machine.refund(permits: 1, takenAt: .milliseconds(400))
        #expect(machine.available(now: .milliseconds(1500)) == 1)
        machine.refund(permits: 1, takenAt: .milliseconds(600))
        #expect(machine.available(now: .milliseconds(600)) == 2)
    }

    @Test func aRefundGivesBackThePermitsOfItsBucket() {
        var machine = self.counter(limit: 3, window: .seconds(1), buckets: 4)  // buckets of 250 ms
        _ = machine.acquire(permits: 1, now: .zero, maxWait: .zero)  // bucket 0
        _ = machine.acquire(permits: 2, now: .milliseconds(300), maxWait: .zero)  // bucket 1
        machine.refund(permits: 2, takenAt: .milliseconds(300))
        #expect(machine.available(now: .milliseconds(300)) == 2)
        #expect(machine.algorithm.readyTime(permits: 3, now: .milliseconds(300)) == .milliseconds(1250))
    }

    @Test func aFullQueueRefusesTheNextWaiterAndALeavingWaiterFreesItsPlace() {
        var machine = RateLimiterStateMachine(
            algorithm: .tokenBucket(capacity: 2, cost: .milliseconds(100), tat: .zero)
        )
        #expect(machine.acquire(permits: 2, now: .zero, maxWait: nil, maxQueued: 0) == .granted)
        #expect(machine.acquire(permits: 1, now: .zero, maxWait: nil, maxQueued: 0) == .queueFull)
        #expect(
            machine.acquire(permits: 1, now: .zero, maxWait: nil, maxQueued: 2)
                == .enqueued(id: 0, .sleep(until: .milliseconds(100)))
        )
        #expect(machine.acquire(permits: 1, now: .zero, maxWait: nil, maxQueued: 2) == .enqueued(id: 1, nil))
        #expect(machine.acquire(permits: 1, now: .zero, maxWait: nil, maxQueued: 2) == .queueFull)
        // Without waiting nobody queues, so the refusal is about the rate, not the queue.
        #expect(machine.acquire(permits: 1, now: .zero, maxWait: .zero, maxQueued: 2) == .rejected(wait: nil))
        // The permits are free by now, but two wait ahead: a newcomer would have to wait too.
        #expect(machine.available(now: .milliseconds(200)) == 2)
        #expect(machine.acquire(permits: 1, now: .milliseconds(200), maxWait: nil, maxQueued: 2) == .queueFull)
        #expect(machine.queued == 2)
        #expect(machine.cancel(id: 1, now: .milliseconds(10)).isEmpty)
        #expect(
            machine.acquire(permits: 1, now: .milliseconds(10), maxWait: nil, maxQueued: 2) == .enqueued(id: 2, nil)
        )
        #expect(machine.acquire(permits: 1, now: .milliseconds(10), maxWait: nil, maxQueued: 2) == .queueFull)
        let (granted, _) = machine.headWoke(id: 0, now: .milliseconds(100))
        #expect(granted == .granted(at: .milliseconds(100)))
        #expect(machine.queued == 1)
        #expect(
            machine.acquire(permits: 1, now: .milliseconds(100), maxWait: nil, maxQueued: 2) == .enqueued(id: 3, nil)
        )
        #expect(machine.acquire(permits: 1, now: .milliseconds(100), maxWait: nil) == .enqueued(id: 4, nil))
        #expect(machine.queued == 3)
    }

    /// The ring against a plain list of (bucket, permits): random grants over many windows,
    /// including long idles, with the due time of every refusal checked to the attosecond.
    @Test(arguments: [
        (3, Duration.seconds(1), 4, UInt64(1)),
        (10, Duration.milliseconds(300), 3, UInt64(2)),
        (7, Duration.seconds(1), 1, UInt64(3)),
        (50, Duration.seconds(2), 16, UInt64(4)),
        (5, Duration.seconds(1), 3, UInt64(5)),
    ])
    func theRingAgreesWithAListOfBuckets(limit: Int, window: Duration, buckets: Int, seed: UInt64) {
        var machine = self.counter(limit: limit, window: window, buckets: buckets)
        var model = BucketModel(limit: limit, window: window, buckets: buckets)
        var random = SplitMix64(seed: seed)
        var grants: [(time: Duration, permits: Int)] = []
        var now = Duration.zero
        for step in 0..<2_000 {
            switch random.next() % 20 {
            case 0: now += window * 3  // idle past every bucket
            case 1, 2: now += model.width  // exactly one bucket on
            default: now += window * (Double(random.next() % 1_000) / 4_000)  // up to a quarter window
            }
            let permits = Int(random.next() % UInt64(limit)) + 1
            let available = machine.available(now: now)
            let ready = machine.algorithm.readyTime(permits: permits, now: now)
            let expected = (available: limit - model.used(now: now), ready: model.readyTime(permits: permits, now: now))
            guard available == expected.available && ready == expected.ready else {
                // Stop at the first difference: every later step would differ too.
                Issue.record(
                    "step \(step), \(permits) permits at \(now): available \(available), ready at \(ready); expected \(expected)"
                )
                return
            }
            if ready > now {
                #expect(machine.acquire(permits: permits, now: now, maxWait: .zero) == .rejected(wait: nil))
                let justBefore = ready - Duration(attoseconds: 1)
                #expect(machine.algorithm.readyTime(permits: permits, now: justBefore) > justBefore)
                if random.next() % 2 == 0 { continue }
                now = ready  // wait for them, as a head waiter would
            }
            #expect(machine.acquire(permits: permits, now: now, maxWait: .zero) == .granted, "step \(step)")
            model.take(permits: permits, at: now)
            grants.append((now, permits))
        }
        // The limit holds over every span of `window` that ends at a grant.
        for (index, grant) in grants.enumerated() {
            let inWindow = grants[...index].reversed().prefix { $0.time > grant.time - window }
            #expect(inWindow.reduce(0) { $0 + $1.permits } <= limit)
        }
        #expect(grants.count > 500)
    }
}

/// A bucketed window kept as a plain list of grants per bucket, to check the ring against.
private struct BucketModel {
    let limit: Int
    let buckets: Int
    let width: Duration
    var grants: [(bucket: Int128, permits: Int)] = []

    init(limit: Int, window: Duration, buckets: Int) {
        self.limit = limit
        self.buckets = buckets
        self.width = Duration(attoseconds: window.attoseconds / Int128(buckets))
    }

    func bucket(_ time: Duration) -> Int128 {
        time.attoseconds / self.width.attoseconds
    }

    /// Grants in bucket `k` count while the time is in buckets `k` to `k + buckets`.
    func live(now: Duration) -> [(bucket: Int128, permits: Int)] {
        self.grants.filter { self.bucket(now) <= $0.bucket + Int128(self.buckets) }
    }

    func used(now: Duration) -> Int {
        self.live(now: now).reduce(0) { $0 + $1.permits }
    }

    func readyTime(permits: Int, now: Duration) -> Duration {
        var excess = self.used(now: now) + permits - self.limit
        if excess <= 0 { return now }
        for grant in self.live(now: now) {
            excess -= grant.permits
            if excess <= 0 {
                return Duration(attoseconds: (grant.bucket + Int128(self.buckets) + 1) * self.width.attoseconds)
            }
        }
        Issue.record("the model cannot fit \(permits) permits")
        return now
    }

    mutating func take(permits: Int, at now: Duration) {
        self.grants.append((self.bucket(now), permits))
    }
}

/// A small seeded generator, so that a failing run can be repeated.
private struct SplitMix64: RandomNumberGenerator {
    var state: UInt64

    init(seed: UInt64) {
        self.state = seed
    }

    mutating func next() -> UInt64 {
        self.state &+= 0x9E37_79B9_7F4A_7C15
        var z = self.state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
