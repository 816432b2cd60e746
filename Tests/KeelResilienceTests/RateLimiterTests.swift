import KeelCore
import KeelTesting
import Synchronization
import Testing

@testable import KeelResilience

/// The order in which waiters were granted, and when.
private final class Grants: Sendable {
    private let log = Lock<[(String, Duration)]>([])
    /// Who waits for how many grants to be recorded.
    private let waiters = Lock<[(count: Int, continuation: CheckedContinuation<Void, Never>)]>([])
    let clock: TestClock

    init(clock: TestClock) {
        self.clock = clock
    }

    func granted(_ name: String) {
        let now = self.clock.now.offset
        let count = self.log.withLock { log in
            log.append((name, now))
            return log.count
        }
        let ready = self.waiters.withLock { waiters in
            let ready = waiters.filter { $0.count <= count }
            waiters.removeAll { $0.count <= count }
            return ready
        }
        for waiter in ready { waiter.continuation.resume() }
    }

    /// Suspends until `count` grants are recorded: a waiter the limiter granted records the clock's
    /// time when its task runs, so a test must let it run before it moves the clock on.
    func waitUntil(count: Int) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = self.waiters.withLock { waiters -> Bool in
                // Checked under the waiters' lock, which `granted` takes after appending.
                if self.log.withLock({ $0.count }) >= count { return true }
                waiters.append((count, continuation))
                return false
            }
            if now { continuation.resume() }
        }
    }

    var names: [String] { self.log.withLock { $0.map(\.0) } }
    /// When each waiter was granted, by name (waiters granted together finish in any order).
    var byName: [String: Duration] { self.log.withLock { Dictionary(uniqueKeysWithValues: $0) } }
    var times: [Duration] { self.log.withLock { $0.map(\.1) } }
}

/// Starts `acquire` in a task that runs synchronously up to its first suspension, so that the
/// waiter is queued when this returns (arrival order is the order of the calls).
@available(macOS 26.0, *)
private func enqueue(
    _ limiter: RateLimiter,
    _ name: String,
    permits: Int,
    grants: Grants
) -> Task<Void, any Error> {
    Task.immediate {
        try await limiter.acquire(permits: permits)
        grants.granted(name)
    }
}

@Suite("RateLimiter", .timeLimit(.minutes(2)))
struct RateLimiterTests {
    @Test func tokenBucketRefillsOverTestClockTime() async throws {
        let clock = TestClock()
        let limiter = RateLimiter(
            name: "bucket",
            configuration: .init(
                algorithm: .tokenBucket(capacity: 3, refillAmount: 1, refillInterval: .milliseconds(100))
            ),
            clock: clock
        )
        #expect(limiter.availablePermits == 3)
        for _ in 0..<3 { try await limiter.acquire() }
        #expect(limiter.availablePermits == 0)
        do {
            try await limiter.acquire()
            Issue.record("expected a refusal")
        } catch let error as RateLimiterError {
            #expect(error.code == .rateLimited)
            #expect(error.limiter == "bucket")
        }
        clock.advance(by: .milliseconds(99))
        #expect(limiter.availablePermits == 0)
        clock.advance(by: .milliseconds(1))
        #expect(limiter.availablePermits == 1)
        try await limiter.acquire()
        clock.advance(by: .seconds(10))
        #expect(limiter.availablePermits == 3)  // capped at the capacity
        try await limiter.acquire(permits: 3)
        #expect(limiter.availablePermits == 0)
    }

    @Test func slidingWindowCountsGrantsOverTheLastWindow() async throws {
        let clock = TestClock()
        let limiter = RateLimiter(
            configuration: .init(algorithm: .slidingWindow(limit: 3, window: .seconds(1))),
            clock: clock
        )
        try await limiter.acquire(permits: 2)  // at 0
        clock.advance(by: .milliseconds(400))
        try await limiter.acquire()  // at 400 ms
        await #expect(throws: RateLimiterError.self) { try await limiter.acquire() }
        clock.advance(by: .milliseconds(599))
        #expect(limiter.availablePermits == 0)
        clock.advance(by: .milliseconds(1))  // 1 s: the two from 0 expire
        #expect(limiter.availablePermits == 2)
        try await limiter.acquire(permits: 2)
        clock.advance(by: .milliseconds(400))  // 1.4 s: the one from 400 ms expires
        #expect(limiter.availablePermits == 1)
    }

    @Test func waitsUpToMaxWaitThenIsGranted() async throws {
        let clock = TestClock()
        let limiter = RateLimiter(
            configuration: .init(
                algorithm: .tokenBucket(capacity: 1, refillAmount: 1, refillInterval: .milliseconds(100)),
                maxWait: .seconds(1)
            ),
            clock: clock
        )
        try await limiter.acquire()
        async let second: Void = limiter.acquire()
        await clock.waitForSleepers(count: 1)
        clock.advance(by: .milliseconds(99))
        #expect(limiter.queuedCount == 1)
        clock.advance(by: .milliseconds(1))
        try await second
        #expect(limiter.queuedCount == 0)
        #expect(clock.now.offset == .milliseconds(100))
    }

    @available(macOS 26.0, *)
    @Test func rejectsAtOnceWhenThePermitsWouldComeTooLate() async throws {
        let clock = TestClock()
        let limiter = RateLimiter(
            configuration: .init(
                algorithm: .tokenBucket(capacity: 2, refillAmount: 1, refillInterval: .seconds(1)),
                maxWait: .milliseconds(1500)
            ),
            clock: clock
        )
        try await limiter.acquire(permits: 2)
        let grants = Grants(clock: clock)
        let first = enqueue(limiter, "first", permits: 1, grants: grants)  // due at 1 s
        do {
            try await limiter.acquire()  // due at 2 s, after everyone ahead: too late
            Issue.record("expected a refusal")
        } catch let error as RateLimiterError {
            #expect(error.code == .rateLimited)
            #expect(error.retryAfter == .seconds(2))
        }
        await #expect(throws: RateLimiterError.self) { try await limiter.acquire(permits: 3) }
        await clock.waitForSleepers(count: 1)
        clock.advance(by: .seconds(1))
        try await first.value
        #expect(grants.times == [.seconds(1)])
    }

    @Test func askingForMoreThanTheCapacityIsRefused() async throws {
        let limiter = RateLimiter(
            configuration: .init(algorithm: .slidingWindow(limit: 5, window: .seconds(1)), maxWait: nil),
            clock: TestClock()
        )
        do {
            try await limiter.acquire(permits: 6)
            Issue.record("expected a refusal")
        } catch let error as RateLimiterError {
            #expect(error.code == .exceedsCapacity)
        }
    }

    @available(macOS 26.0, *)
    @Test(arguments: [
        (
            RateLimiter.Algorithm.tokenBucket(capacity: 2, refillAmount: 1, refillInterval: .milliseconds(100)),
            [Duration.milliseconds(200), .milliseconds(300), .milliseconds(400)]
        ),
        (
            RateLimiter.Algorithm.slidingWindow(limit: 2, window: .milliseconds(200)),
            [Duration.milliseconds(200), .milliseconds(400), .milliseconds(400)]
        ),
    ])
    func waitersAreServedFirstComeFirstServed(algorithm: RateLimiter.Algorithm, expected: [Duration]) async throws {
        let clock = TestClock()
        let limiter = RateLimiter(configuration: .init(algorithm: algorithm, maxWait: nil), clock: clock)
        try await limiter.acquire(permits: 2)
        let grants = Grants(clock: clock)
        let big = enqueue(limiter, "big", permits: 2, grants: grants)
        let small1 = enqueue(limiter, "small1", permits: 1, grants: grants)
        let small2 = enqueue(limiter, "small2", permits: 1, grants: grants)
        #expect(limiter.queuedCount == 3)
        await clock.waitForSleepers(count: 1)  // only the head sleeps
        #expect(clock.sleeperCount == 1)
        clock.advance(by: .milliseconds(100))
        // A token bucket now holds one permit, but the small waiters do not overtake the big one.
        #expect(limiter.queuedCount == 3)
        await clock.waitForSleepers(count: 1)
        clock.advance(by: .milliseconds(100))
        try await big.value
        for _ in 0..<2 {
            await clock.waitForSleepers(count: 1)
            // Every waiter granted at this instant records it before the clock moves on.
            await grants.waitUntil(count: 3 - limiter.queuedCount)
            clock.advance(by: .milliseconds(100))
        }
        try await small1.value
        try await small2.value
        #expect(grants.byName == ["big": expected[0], "small1": expected[1], "small2": expected[2]])
    }

    @available(macOS 26.0, *)
    @Test func aCancelledWaiterLeavesTheQueueAndLosesNothing() async throws {
        let clock = TestClock()
        let limiter = RateLimiter(
            configuration: .init(
                algorithm: .tokenBucket(capacity: 1, refillAmount: 1, refillInterval: .seconds(1)),
                maxWait: nil
            ),
            clock: clock
        )
        try await limiter.acquire()
        let grants = Grants(clock: clock)
        let head = enqueue(limiter, "head", permits: 1, grants: grants)
        let parked = enqueue(limiter, "parked", permits: 1, grants: grants)
        let last = enqueue(limiter, "last", permits: 1, grants: grants)
        await clock.waitForSleepers(count: 1)
        parked.cancel()
        await #expect(throws: CancellationError.self) { try await parked.value }
        #expect(limiter.queuedCount == 2)
        head.cancel()
        await #expect(throws: CancellationError.self) { try await head.value }
        // "last" is now first in line and gets the permit the others would have had, at 1 s.
        await clock.waitForSleepers(count: 1)
        clock.advance(by: .seconds(1))
        try await last.value
        #expect(grants.names == ["last"])
        #expect(grants.times == [.seconds(1)])
        #expect(limiter.queuedCount == 0)
        clock.advance(by: .seconds(1))
        #expect(limiter.availablePermits == 1)
    }

    @Test func manyConcurrentCallersGetExactlyTheCapacity() async throws {
        let clock = TestClock()
        let limiter = RateLimiter(
            configuration: .init(algorithm: .tokenBucket(capacity: 100, refillAmount: 1, refillInterval: .seconds(1))),
            clock: clock
        )
        let counter = RetryCounter()
        await withDiscardingTaskGroup { group in
            for _ in 0..<1_000 {
                group.addTask {
                    if (try? await limiter.run { true }) == true { _ = counter.increment() }
                }
            }
        }
        #expect(counter.current == 100)
        #expect(limiter.availablePermits == 0)
    }

    @available(macOS 26.0, *)
    @Test func manyConcurrentWaitersWithCancellationsReturnEveryPermit() async throws {
        let clock = TestClock()
        let limiter = RateLimiter(
            configuration: .init(
                algorithm: .slidingWindow(limit: 10, window: .seconds(1)),
                maxWait: nil
            ),
            clock: clock
        )
        try await limiter.acquire(permits: 10)
        let grants = Grants(clock: clock)
        var tasks: [Task<Void, any Error>] = []
        for index in 0..<200 {
            tasks.append(enqueue(limiter, "\(index)", permits: 1, grants: grants))
        }
        // Cancel every other waiter; the rest are served ten per second, in order.
        for (index, task) in tasks.enumerated() where index % 2 == 0 {
            task.cancel()
        }
        for (index, task) in tasks.enumerated() where index % 2 == 0 {
            await #expect(throws: CancellationError.self) { try await task.value }
        }
        #expect(limiter.queuedCount == 100)
        for second in 1...10 {
            await clock.waitForSleepers(count: 1)
            clock.advance(by: .seconds(1))
            // A waiter records its grant when its task runs again, which may be after the next
            // advance: let this second's ten record theirs first.
            await grants.waitUntil(count: second * 10)
        }
        for (index, task) in tasks.enumerated() where index % 2 == 1 {
            try await task.value
        }
        // The k-th surviving waiter is served in second k / 10 + 1: strictly in arrival order.
        let survivors = (0..<200).filter { $0 % 2 == 1 }
        let expected = Dictionary(
            uniqueKeysWithValues: survivors.enumerated().map { ("\($1)", Duration.seconds($0 / 10 + 1)) }
        )
        #expect(grants.byName == expected)
        #expect(limiter.queuedCount == 0)
        clock.advance(by: .seconds(1))
        #expect(limiter.availablePermits == 10)
    }

    @Test func runAndExecuteTakeOnePermit() async throws {
        let clock = TestClock()
        let limiter = RateLimiter(
            configuration: .init(algorithm: .tokenBucket(capacity: 2, refillAmount: 1, refillInterval: .seconds(1))),
            clock: clock
        )
        #expect(try await limiter.run { 1 } == 1)
        let strategy: any ResilienceStrategy = limiter
        #expect(try await strategy.execute { 2 } == 2)
        await #expect(throws: RateLimiterError.self) { try await limiter.run { 3 } }
    }
}
