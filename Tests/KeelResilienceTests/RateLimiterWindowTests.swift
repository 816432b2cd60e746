import KeelCore
import KeelTesting
import Synchronization
import Testing

@testable import KeelResilience

/// The order in which waiters were granted, and when.
private final class Grants: Sendable {
    private let log = Lock<[(String, Duration)]>([])
    let clock: TestClock

    init(clock: TestClock) {
        self.clock = clock
    }

    func granted(_ name: String) {
        let now = self.clock.now.offset
        self.log.withLock { $0.append((name, now)) }
    }

    var names: [String] { self.log.withLock { $0.map(\.0) } }
    /// When each waiter was granted, by name (waiters granted together finish in any order).
    var byName: [String: Duration] { self.log.withLock { Dictionary(uniqueKeysWithValues: $0) } }
}

/// Starts `acquire` in a task that runs synchronously up to its first suspension, so that the
/// waiter is queued (or refused) when this returns: arrival order is the order of the calls.
@available(macOS 26.0, *)
private func enqueue(
    _ limiter: RateLimiter,
    _ name: String,
    permits: Int = 1,
    grants: Grants
) -> Task<Void, any Error> {
    Task.immediate {
        try await limiter.acquire(permits: permits)
        grants.granted(name)
    }
}

/// Expects `acquire` to be refused at once with `code`.
private func expectRefusal(
    _ limiter: RateLimiter,
    permits: Int = 1,
    code: RateLimiterError.Code,
    retryAfter: Duration? = nil,
    sourceLocation: SourceLocation = #_sourceLocation
) async {
    do {
        try await limiter.acquire(permits: permits)
        Issue.record("expected a refusal with \(code)", sourceLocation: sourceLocation)
    } catch let error as RateLimiterError {
        #expect(error.code == code, sourceLocation: sourceLocation)
        #expect(error.limiter == limiter.name, sourceLocation: sourceLocation)
        #expect(error.retryAfter == retryAfter, sourceLocation: sourceLocation)
    } catch {
        Issue.record("unexpected \(error)", sourceLocation: sourceLocation)
    }
}

extension TestClock {
    /// Moves the clock to `milliseconds` after its start.
    fileprivate func advance(toMilliseconds milliseconds: Int64) {
        self.advance(to: Instant(offset: .milliseconds(milliseconds)))
    }
}

@Suite("RateLimiter: bucketed sliding window and queue bound", .timeLimit(.minutes(2)))
struct RateLimiterWindowTests {
    @Test func admitsExactlyPerBucketAsTheClockMoves() async throws {
        let clock = TestClock()
        let limiter = RateLimiter(
            name: "buckets",
            configuration: .init(algorithm: .slidingWindowCounter(limit: 4, window: .seconds(1), buckets: 4)),
            clock: clock
        )
        #expect(limiter.availablePermits == 4)
        try await limiter.acquire(permits: 2)  // bucket 0: [0, 250 ms)
        clock.advance(toMilliseconds: 100)
        try await limiter.acquire()  // bucket 0
        clock.advance(toMilliseconds: 260)
        try await limiter.acquire()  // bucket 1
        #expect(limiter.availablePermits == 0)
        await expectRefusal(limiter, code: .rateLimited)
        // A log would give the first two back at 1 s; bucket 0 counts until 1 s after its end.
        clock.advance(toMilliseconds: 1000)
        #expect(limiter.availablePermits == 0)
        await expectRefusal(limiter, code: .rateLimited)
        clock.advance(toMilliseconds: 1249)
        #expect(limiter.availablePermits == 0)
        clock.advance(toMilliseconds: 1250)
        #expect(limiter.availablePermits == 3)
        try await limiter.acquire(permits: 3)  // bucket 5
        await expectRefusal(limiter, code: .rateLimited)
        clock.advance(toMilliseconds: 1499)
        #expect(limiter.availablePermits == 0)
        clock.advance(toMilliseconds: 1500)  // bucket 1 leaves
        #expect(limiter.availablePermits == 1)
        try await limiter.acquire()  // bucket 6
        clock.advance(toMilliseconds: 2499)
        #expect(limiter.availablePermits == 0)
        clock.advance(toMilliseconds: 2500)  // bucket 5 leaves
        #expect(limiter.availablePermits == 3)
        clock.advance(toMilliseconds: 2750)  // bucket 6 leaves
        #expect(limiter.availablePermits == 4)
    }

    @Test func oldBucketsAgeOutAndASteadyStreamGetsTheLimitPerWindowAndABucket() async throws {
        let clock = TestClock()
        let limiter = RateLimiter(
            configuration: .init(algorithm: .slidingWindowCounter(limit: 4, window: .seconds(1), buckets: 4)),
            clock: clock
        )
        // One request at the start of every bucket of 250 ms. A grant counts in its bucket and the
        // four after it, so every fifth request finds four grants in the window and is refused:
        // 4 per 1.25 s, where a log would grant 4 per second.
        var refused: [Int] = []
        for bucket in 0..<20 {
            clock.advance(toMilliseconds: Int64(250 * bucket))
            do {
                try await limiter.acquire()
            } catch let error as RateLimiterError where error.code == .rateLimited {
                refused.append(bucket)
            }
        }
        #expect(refused == [4, 9, 14, 19])
        // Grants in buckets 15 to 18 leave one by one at the end of a bucket.
        for (millisecondsLater, available) in [(0, 0), (250, 1), (500, 2), (750, 3), (1000, 4)] {
            clock.advance(toMilliseconds: 4750 + Int64(millisecondsLater))
            #expect(limiter.availablePermits == available, "at +\(millisecondsLater) ms")
        }
        // After a long idle every bucket is empty, however far the ring went round.
        try await limiter.acquire(permits: 4)
        clock.advance(by: .seconds(3600))
        #expect(limiter.availablePermits == 4)
        try await limiter.acquire(permits: 4)
        #expect(limiter.availablePermits == 0)
    }

    @available(macOS 26.0, *)
    @Test func waitersAreWokenInArrivalOrderWhenPermitsAgeOut() async throws {
        let clock = TestClock()
        let limiter = RateLimiter(
            configuration: .init(
                algorithm: .slidingWindowCounter(limit: 3, window: .milliseconds(300), buckets: 3),
                maxWait: nil
            ),
            clock: clock
        )
        try await limiter.acquire(permits: 3)  // bucket 0 of 100 ms: leaves at 400 ms
        let grants = Grants(clock: clock)
        let big = enqueue(limiter, "big", permits: 2, grants: grants)
        let small1 = enqueue(limiter, "small1", grants: grants)
        let small2 = enqueue(limiter, "small2", grants: grants)
        #expect(limiter.queuedCount == 3)
        await clock.waitForSleepers(count: 1)  // only the head sleeps
        #expect(clock.sleeperCount == 1)
        clock.advance(toMilliseconds: 399)
        #expect(limiter.queuedCount == 3)
        // Bucket 0 leaves: "big" and "small1" take the three permits (bucket 4); "small2" waits for
        // bucket 4 to leave, at 800 ms.
        clock.advance(toMilliseconds: 400)
        try await big.value
        try await small1.value
        await clock.waitForSleepers(count: 1)
        #expect(limiter.queuedCount == 1)
        clock.advance(toMilliseconds: 799)
        #expect(limiter.queuedCount == 1)
        clock.advance(toMilliseconds: 800)
        try await small2.value
        #expect(
            grants.byName == [
                "big": .milliseconds(400), "small1": .milliseconds(400), "small2": .milliseconds(800),
            ]
        )
        #expect(limiter.queuedCount == 0)
    }

    @available(macOS 26.0, *)
    @Test func aSmallWaiterDoesNotOvertakeALargeOneWhenSomePermitsAgeOut() async throws {
        let clock = TestClock()
        let limiter = RateLimiter(
            configuration: .init(
                algorithm: .slidingWindowCounter(limit: 3, window: .milliseconds(300), buckets: 3),
                maxWait: nil
            ),
            clock: clock
        )
        try await limiter.acquire(permits: 2)  // bucket 0: leaves at 400 ms
        clock.advance(toMilliseconds: 150)
        try await limiter.acquire()  // bucket 1: leaves at 500 ms
        let grants = Grants(clock: clock)
        let big = enqueue(limiter, "big", permits: 3, grants: grants)
        let small = enqueue(limiter, "small", grants: grants)
        await clock.waitForSleepers(count: 1)
        clock.advance(toMilliseconds: 400)
        // Two permits are free, enough for "small", but it stays behind "big".
        #expect(limiter.availablePermits == 2)
        #expect(limiter.queuedCount == 2)
        clock.advance(toMilliseconds: 500)
        try await big.value  // bucket 5: leaves at 900 ms
        await clock.waitForSleepers(count: 1)
        clock.advance(toMilliseconds: 899)
        #expect(limiter.queuedCount == 1)
        clock.advance(toMilliseconds: 900)
        try await small.value
        #expect(grants.names == ["big", "small"])
        #expect(grants.byName == ["big": .milliseconds(500), "small": .milliseconds(900)])
    }

    @available(macOS 26.0, *)
    @Test func aWaiterWhosePermitsAgeOutTooLateIsRefusedAtOnce() async throws {
        let clock = TestClock()
        let limiter = RateLimiter(
            configuration: .init(
                algorithm: .slidingWindowCounter(limit: 2, window: .seconds(1), buckets: 10),
                maxWait: .seconds(1)
            ),
            clock: clock
        )
        try await limiter.acquire(permits: 2)  // bucket 0 of 100 ms: leaves at 1.1 s
        await expectRefusal(limiter, code: .rateLimited, retryAfter: .milliseconds(1100))
        clock.advance(toMilliseconds: 50)
        await expectRefusal(limiter, code: .rateLimited, retryAfter: .milliseconds(1050))
        clock.advance(toMilliseconds: 100)
        let grants = Grants(clock: clock)
        let first = enqueue(limiter, "first", grants: grants)  // due at 1.1 s: exactly maxWait
        let second = enqueue(limiter, "second", grants: grants)  // also fits at 1.1 s
        #expect(limiter.queuedCount == 2)
        // A third fits only when bucket 11 (the two above) leaves, at 2.2 s.
        await expectRefusal(limiter, code: .rateLimited, retryAfter: .milliseconds(2100))
        await expectRefusal(limiter, permits: 3, code: .exceedsCapacity)
        #expect(limiter.queuedCount == 2)
        await clock.waitForSleepers(count: 1)
        clock.advance(toMilliseconds: 1099)
        #expect(limiter.queuedCount == 2)
        clock.advance(toMilliseconds: 1100)
        try await first.value
        try await second.value
        #expect(grants.byName == ["first": .milliseconds(1100), "second": .milliseconds(1100)])
    }

    @available(macOS 26.0, *)
    @Test(arguments: [
        RateLimiter.Algorithm.slidingWindowCounter(limit: 1, window: .milliseconds(100), buckets: 2),
        RateLimiter.Algorithm.tokenBucket(capacity: 1, refillAmount: 1, refillInterval: .milliseconds(100)),
        RateLimiter.Algorithm.slidingWindow(limit: 1, window: .milliseconds(100)),
    ])
    func aFullQueueRefusesTheNextWaiterAtOnce(algorithm: RateLimiter.Algorithm) async throws {
        let clock = TestClock()
        let recorder = InMemoryRecorder()
        let limiter = RateLimiter(
            name: "bounded",
            configuration: .init(algorithm: algorithm, maxWait: nil, maxQueued: 2),
            clock: clock,
            telemetry: recorder
        )
        try await limiter.acquire()
        let grants = Grants(clock: clock)
        let first = enqueue(limiter, "first", grants: grants)
        let second = enqueue(limiter, "second", grants: grants)
        #expect(limiter.queuedCount == 2)
        await expectRefusal(limiter, code: .queueFull)
        #expect(limiter.queuedCount == 2)
        await clock.waitForSleepers(count: 1)
        #expect(clock.advanceToNextSleeper())
        try await first.value
        // "first" left the queue when it was granted: one place is free again.
        #expect(limiter.queuedCount == 1)
        let third = enqueue(limiter, "third", grants: grants)
        await expectRefusal(limiter, code: .queueFull)
        await clock.waitForSleepers(count: 1)
        #expect(clock.advanceToNextSleeper())
        try await second.value
        await clock.waitForSleepers(count: 1)
        #expect(clock.advanceToNextSleeper())
        try await third.value
        #expect(grants.names == ["first", "second", "third"])
        #expect(limiter.queuedCount == 0)
        let rejected = recorder.counter(
            "keel.ratelimiter.rejected",
            dimensions: [("limiter", "bounded"), ("reason", "queue_full")]
        )
        #expect(rejected == 2)
    }

    @Test func aQueueOfZeroNeverWaits() async throws {
        let clock = TestClock()
        let limiter = RateLimiter(
            configuration: .init(
                algorithm: .slidingWindowCounter(limit: 2, window: .seconds(1), buckets: 4),
                maxWait: nil,
                maxQueued: 0
            ),
            clock: clock
        )
        try await limiter.acquire(permits: 2)
        await expectRefusal(limiter, code: .queueFull)
        #expect(limiter.queuedCount == 0)
        #expect(clock.sleeperCount == 0)
        clock.advance(toMilliseconds: 1250)
        try await limiter.acquire()
    }

    @available(macOS 26.0, *)
    @Test(arguments: [
        (
            RateLimiter.Algorithm.slidingWindowCounter(limit: 1, window: .milliseconds(100), buckets: 2),
            [Duration.milliseconds(150), .milliseconds(300)]
        ),
        (
            RateLimiter.Algorithm.tokenBucket(capacity: 1, refillAmount: 1, refillInterval: .milliseconds(100)),
            [Duration.milliseconds(100), .milliseconds(200)]
        ),
    ])
    func aCancelledWaiterFreesItsPlaceInTheQueue(algorithm: RateLimiter.Algorithm, expected: [Duration]) async throws {
        let clock = TestClock()
        let limiter = RateLimiter(
            configuration: .init(algorithm: algorithm, maxWait: nil, maxQueued: 2),
            clock: clock
        )
        try await limiter.acquire()
        let grants = Grants(clock: clock)
        let head = enqueue(limiter, "head", grants: grants)
        let parked = enqueue(limiter, "parked", grants: grants)
        await clock.waitForSleepers(count: 1)
        await expectRefusal(limiter, code: .queueFull)
        // A parked waiter leaves: its place goes to a newcomer, who queues behind the head.
        parked.cancel()
        await #expect(throws: CancellationError.self) { try await parked.value }
        #expect(limiter.queuedCount == 1)
        let late = enqueue(limiter, "late", grants: grants)
        await expectRefusal(limiter, code: .queueFull)
        // The sleeping head leaves: "late" becomes the head and takes its turn.
        head.cancel()
        await #expect(throws: CancellationError.self) { try await head.value }
        #expect(limiter.queuedCount == 1)
        let last = enqueue(limiter, "last", grants: grants)
        #expect(limiter.queuedCount == 2)
        await expectRefusal(limiter, code: .queueFull)
        await clock.waitForSleepers(count: 1)
        #expect(clock.advanceToNextSleeper())
        try await late.value
        await clock.waitForSleepers(count: 1)
        #expect(clock.advanceToNextSleeper())
        try await last.value
        #expect(grants.names == ["late", "last"])
        #expect(grants.byName == ["late": expected[0], "last": expected[1]])
        #expect(limiter.queuedCount == 0)
    }

    @available(macOS 26.0, *)
    @Test func manyWaitersWithCancellationsAreServedInOrderWithinTheQueueBound() async throws {
        let clock = TestClock()
        let limiter = RateLimiter(
            configuration: .init(
                algorithm: .slidingWindowCounter(limit: 10, window: .seconds(1), buckets: 10),
                maxWait: nil,
                maxQueued: 150
            ),
            clock: clock
        )
        try await limiter.acquire(permits: 10)  // bucket 0 of 100 ms: leaves at 1.1 s
        let grants = Grants(clock: clock)
        var tasks: [Task<Void, any Error>] = []
        for index in 0..<150 {
            tasks.append(enqueue(limiter, "\(index)", grants: grants))
        }
        for _ in 0..<5 {
            await expectRefusal(limiter, code: .queueFull)
        }
        for (index, task) in tasks.enumerated() where index % 2 == 0 {
            task.cancel()
        }
        for (index, task) in tasks.enumerated() where index % 2 == 0 {
            await #expect(throws: CancellationError.self) { try await task.value }
        }
        #expect(limiter.queuedCount == 75)
        // Ten are granted whenever the ten before them leave the window, every 1.1 s.
        let survivors = (0..<150).filter { $0 % 2 == 1 }
        for round in stride(from: 0, to: survivors.count, by: 10) {
            await clock.waitForSleepers(count: 1)
            #expect(clock.advanceToNextSleeper())
            for index in survivors[round..<min(round + 10, survivors.count)] {
                try await tasks[index].value
            }
        }
        let expected = Dictionary(
            uniqueKeysWithValues: survivors.enumerated().map {
                ("\($1)", Duration.milliseconds(1100 * Int64($0 / 10 + 1)))
            }
        )
        #expect(grants.byName == expected)
        #expect(limiter.queuedCount == 0)
        clock.advance(by: .seconds(2))
        #expect(limiter.availablePermits == 10)
    }

    @Test func describesTheAlgorithm() {
        let algorithm = RateLimiter.Algorithm.slidingWindowCounter(limit: 100, window: .seconds(1), buckets: 10)
        #expect(algorithm.description == "slidingWindowCounter(100 per 1.0 seconds, 10 buckets)")
        #expect(algorithm != .slidingWindow(limit: 100, window: .seconds(1)))
        #expect(RateLimiter.Configuration().maxQueued == nil)
        #expect(RateLimiterError.Code.queueFull.description == "queue full")
    }
}
