import KeelCore
import KeelTesting
import Testing

@testable import Keel

/// Redelivery on the bus's clock, dead letters, and replay.
///
/// A handler that fails is retried after backoffs measured on a ``TestClock``: the tests wait for
/// the handler to go to sleep (`waitForSleepers`) and then move time. To know that an event has
/// been dead-lettered, each test publishes a marker event after it: handlers run one event at a
/// time, so once the marker is handled the event before it has reached the dead-letter queue.
@Suite("Bus dead letters", .timeLimit(.minutes(2)))
struct BusDeadLetterTests {
    typealias Collector = BusFixtures.Collector
    typealias Flag = BusFixtures.Flag
    typealias HandlerFailure = BusFixtures.HandlerFailure
    typealias Numbered = BusFixtures.Numbered

    /// Marker events come from this publisher and always succeed.
    static let marker = -1

    static let retryThreeTimes = RedeliveryPolicy(
        maxAttempts: 3,
        backoff: .exponential(initial: .seconds(1), maximum: .seconds(10), jitter: false)
    )

    /// Subscribes a handler that fails every non-marker event until `fixed` is set, recording
    /// the clock's time of each failed attempt and each event handled successfully.
    @discardableResult
    static func flakySubscriber(
        on bus: EventBus,
        name: String,
        policy: RedeliveryPolicy,
        clock: TestClock,
        fixed: Flag,
        attempts: Collector<Duration>,
        handled: Collector<Numbered>
    ) throws -> Subscription {
        try bus.subscribe(
            to: Numbered.self,
            name: name,
            options: SubscriptionOptions(redelivery: policy)
        ) { event, _ in
            if event.publisher != Self.marker && !fixed.value {
                attempts.append(clock.now.offset)
                throw HandlerFailure(sequence: event.sequence)
            }
            handled.append(event)
        }
    }

    @Test("the default redelivery waits 10 ms doubling up to 1 s, as a Backoff without jitter")
    func defaultBackoff() {
        let policy = RedeliveryPolicy()
        #expect(policy.maxAttempts == 3)
        #expect(policy.backoff == .exponential(initial: .milliseconds(10), maximum: .seconds(1), jitter: false))
        #expect(
            Array(policy.backoff.makeDelays(using: RandomSource(seed: 1)).prefix(9)) == [
                .milliseconds(10), .milliseconds(20), .milliseconds(40), .milliseconds(80), .milliseconds(160),
                .milliseconds(320), .milliseconds(640), .seconds(1), .seconds(1),
            ]
        )
        #expect(RedeliveryPolicy.none.maxAttempts == 1)
    }

    /// The clock's offsets at the failed attempts of one event that is redelivered under `policy`
    /// until it is dead-lettered; the clock moves from the end of one wait to the end of the next.
    static func attemptTimes(policy: RedeliveryPolicy, random: RandomSource) async throws -> [Duration] {
        let clock = TestClock()
        return try await BusFixtures.withBus(clock: clock, random: random) { bus in
            let attempts = Collector<Duration>()
            let handled = Collector<Numbered>()
            try Self.flakySubscriber(
                on: bus,
                name: "flaky",
                policy: policy,
                clock: clock,
                fixed: Flag(),
                attempts: attempts,
                handled: handled
            )
            try await bus.publish(Numbered(sequence: 1))
            for _ in 1..<policy.maxAttempts {
                await clock.waitForSleepers(count: 1)
                clock.advanceToNextSleeper()
            }
            // Published after the last wait, so that its ids are drawn after every jitter draw.
            try await bus.publish(Numbered(publisher: Self.marker, sequence: 2))
            await handled.waitFor(count: 1)
            #expect(bus.deadLetters.map(\.attempts) == [policy.maxAttempts])
            return attempts.values
        }
    }

    static let backoffs: [Backoff] = [
        .constant(.milliseconds(250)),
        .linear(initial: .milliseconds(100), increment: .milliseconds(50), maximum: .milliseconds(220)),
        .exponential(initial: .milliseconds(100), multiplier: 3, maximum: .seconds(2), jitter: false),
        RedeliveryPolicy().backoff,
    ]

    @Test("redelivery waits exactly the delays of its Backoff", arguments: BusDeadLetterTests.backoffs)
    func redeliveryFollowsTheBackoff(backoff: Backoff) async throws {
        let times = try await Self.attemptTimes(
            policy: RedeliveryPolicy(maxAttempts: 5, backoff: backoff),
            random: RandomSource(seed: 42)
        )
        var expected: [Duration] = [.zero]
        for delay in backoff.makeDelays(using: RandomSource(seed: 1)).prefix(4) {
            expected.append(expected.last! + delay)
        }
        #expect(times == expected)
    }

    @Test("a jittered redelivery backoff draws from the bus's random source")
    func redeliveryJitterComesFromTheBus() async throws {
        let policy = RedeliveryPolicy(maxAttempts: 5, backoff: .exponential(initial: .seconds(1), maximum: .seconds(8)))
        let first = try await Self.attemptTimes(policy: policy, random: RandomSource(seed: 7))
        let again = try await Self.attemptTimes(policy: policy, random: RandomSource(seed: 7))
        let other = try await Self.attemptTimes(policy: policy, random: RandomSource(seed: 8))
        #expect(first == again, "the same seed gives the same waits")
        #expect(first != other, "another seed gives other waits")
        // Full jitter: each wait is drawn below its cap (1, 2, 4, 8 s), not the cap itself.
        let waits = zip(first.dropFirst(), first).map { $0 - $1 }
        let caps: [Duration] = [.seconds(1), .seconds(2), .seconds(4), .seconds(8)]
        #expect(waits.count == caps.count)
        for (wait, cap) in zip(waits, caps) {
            #expect(wait > .zero && wait < cap, "wait \(wait) under cap \(cap)")
        }
    }

    @Test("a failing handler is retried on the clock, dead-lettered, fixed, replayed and delivered")
    func retryDeadLetterReplay() async throws {
        let clock = TestClock()
        let subscription = try await BusFixtures.withBus(clock: clock) { bus in
            let fixed = Flag()
            let attempts = Collector<Duration>()
            let handled = Collector<Numbered>()
            let subscription = try Self.flakySubscriber(
                on: bus,
                name: "flaky",
                policy: Self.retryThreeTimes,
                clock: clock,
                fixed: fixed,
                attempts: attempts,
                handled: handled
            )
            let receipt = try await bus.publish(Numbered(sequence: 7))
            try await bus.publish(Numbered(publisher: Self.marker, sequence: 1))

            // Attempt 1 failed at 0 s; the retry waits 1 s.
            await clock.waitForSleepers(count: 1)
            #expect(attempts.values == [.zero])
            clock.advance(by: .milliseconds(999))
            #expect(clock.sleeperCount == 1, "retried before the backoff elapsed")
            clock.advance(by: .milliseconds(1))

            // Attempt 2 failed at 1 s; the retry waits 2 s.
            await clock.waitForSleepers(count: 1)
            #expect(attempts.values == [.zero, .seconds(1)])
            #expect(handled.count == 0, "the next event overtook the one being retried")
            clock.advance(by: .seconds(2))

            // Attempt 3 failed at 3 s: the event is dead-lettered and the marker handled.
            #expect(await handled.waitFor(count: 1).map(\.sequence) == [1])
            #expect(attempts.values == [.zero, .seconds(1), .seconds(3)])
            #expect(clock.sleeperCount == 0)

            let letter = try #require(bus.deadLetters.first)
            #expect(bus.deadLetters.count == 1)
            #expect(letter.attempts == 3)
            #expect(letter.error as? HandlerFailure == HandlerFailure(sequence: 7))
            #expect(letter.event as? Numbered == Numbered(sequence: 7))
            #expect(letter.envelope.id == receipt.id)
            #expect(letter.subscription == subscription.id)
            #expect(letter.subscriptionName == "flaky")
            #expect(letter.description.contains("test.numbered → flaky after 3 attempts"))
            #expect(subscription.statistics.failedAttempts == 3)
            #expect(subscription.statistics.deadLettered == 1)

            // Fix the handler and replay: the same envelope is delivered and the queue is empty.
            fixed.set(true)
            #expect(await bus.replayDeadLetters() == 1)
            #expect(bus.deadLetters.isEmpty)
            let replayed = await handled.waitFor(count: 2)
            #expect(replayed.map(\.sequence) == [1, 7])
            #expect(attempts.count == 3, "the replay succeeded at once")
            return subscription
        }
        let statistics = subscription.statistics
        #expect(statistics.delivered == 2)
        #expect(statistics.failedAttempts == 3)
        #expect(statistics.deadLettered == 1)
    }

    @Test("with no redelivery a failure goes straight to the dead-letter queue")
    func noRedelivery() async throws {
        let clock = TestClock()
        try await BusFixtures.withBus(clock: clock) { bus in
            let attempts = Collector<Duration>()
            let handled = Collector<Numbered>()
            let subscription = try Self.flakySubscriber(
                on: bus,
                name: "once",
                policy: .none,
                clock: clock,
                fixed: Flag(),
                attempts: attempts,
                handled: handled
            )
            try await bus.publish(Numbered(sequence: 1))
            try await bus.publish(Numbered(publisher: Self.marker, sequence: 2))
            await handled.waitFor(count: 1)

            #expect(attempts.values == [.zero])
            #expect(clock.sleeperCount == 0, "no backoff with a single attempt")
            #expect(clock.now.offset == .zero)
            let letters = bus.deadLetters
            #expect(letters.count == 1)
            #expect(letters.first?.attempts == 1)
            #expect(letters.first?.error as? HandlerFailure == HandlerFailure(sequence: 1))
            #expect(subscription.statistics.failedAttempts == 1)
            #expect(subscription.statistics.deadLettered == 1)
        }
    }

    @Test("an event that fails again on replay returns to the queue")
    func replayFailsAgain() async throws {
        let clock = TestClock()
        try await BusFixtures.withBus(clock: clock) { bus in
            let handled = Collector<Numbered>()
            try Self.flakySubscriber(
                on: bus,
                name: "stubborn",
                policy: .none,
                clock: clock,
                fixed: Flag(),
                attempts: Collector(),
                handled: handled
            )
            try await bus.publish(Numbered(sequence: 1))
            try await bus.publish(Numbered(publisher: Self.marker, sequence: 1))
            await handled.waitFor(count: 1)
            let first = try #require(bus.deadLetters.first)

            #expect(await bus.replayDeadLetters() == 1)
            try await bus.publish(Numbered(publisher: Self.marker, sequence: 2))
            await handled.waitFor(count: 2)
            let again = try #require(bus.deadLetters.first)
            #expect(bus.deadLetters.count == 1)
            #expect(again.envelope.id == first.envelope.id)
            #expect(again.sequence > first.sequence)
        }
    }

    @Test("dead letters can be removed and replayed selectively")
    func removeAndReplaySelectively() async throws {
        let clock = TestClock()
        try await BusFixtures.withBus(clock: clock) { bus in
            let fixed = Flag()
            let handledA = Collector<Numbered>()
            let handledB = Collector<Numbered>()
            for (name, handled) in [("a", handledA), ("b", handledB)] {
                try Self.flakySubscriber(
                    on: bus,
                    name: name,
                    policy: .none,
                    clock: clock,
                    fixed: fixed,
                    attempts: Collector(),
                    handled: handled
                )
            }
            try await bus.publish(Numbered(sequence: 1))
            try await bus.publish(Numbered(sequence: 2))
            try await bus.publish(Numbered(publisher: Self.marker, sequence: 0))
            await handledA.waitFor(count: 1)
            await handledB.waitFor(count: 1)
            #expect(bus.deadLetters.count == 4)
            #expect(bus.deadLetters.map(\.sequence) == bus.deadLetters.map(\.sequence).sorted(), "oldest first")

            #expect(bus.removeDeadLetters { _ in false }.isEmpty)
            #expect(await bus.replayDeadLetters { _ in false } == 0)
            #expect(bus.deadLetters.count == 4)

            // Remove what failed at `a` for event 1.
            let removed = bus.removeDeadLetters { letter in
                letter.subscriptionName == "a" && (letter.event as? Numbered)?.sequence == 1
            }
            #expect(removed.count == 1)
            #expect(bus.deadLetters.count == 3)

            // Replay only `b`'s letters once the handler works.
            fixed.set(true)
            #expect(await bus.replayDeadLetters { $0.subscriptionName == "b" } == 2)
            #expect(await handledB.waitFor(count: 3).map(\.sequence) == [0, 1, 2])
            let left = bus.deadLetters
            #expect(left.count == 1)
            #expect(left.first?.subscriptionName == "a")
            #expect((left.first?.event as? Numbered)?.sequence == 2)
            #expect(handledA.count == 1)
        }
    }

    @Test("letters of a cancelled subscription stay in the queue on replay")
    func replayToEndedSubscription() async throws {
        let clock = TestClock()
        try await BusFixtures.withBus(clock: clock) { bus in
            let handled = Collector<Numbered>()
            let subscription = try Self.flakySubscriber(
                on: bus,
                name: "gone",
                policy: .none,
                clock: clock,
                fixed: Flag(),
                attempts: Collector(),
                handled: handled
            )
            try await bus.publish(Numbered(sequence: 1))
            try await bus.publish(Numbered(publisher: Self.marker, sequence: 0))
            await handled.waitFor(count: 1)
            await subscription.cancel()

            #expect(await bus.replayDeadLetters() == 0)
            #expect(bus.deadLetters.count == 1)
            #expect(bus.deadLetters.first?.subscription == subscription.id)
            #expect(bus.removeDeadLetters { _ in true }.count == 1)
            #expect(bus.deadLetters.isEmpty)
        }
    }

    @Test("the dead-letter queue is bounded and evicts the oldest letters")
    func boundedQueue() async throws {
        let clock = TestClock()
        var configuration = EventBus.Configuration()
        configuration.deadLetterCapacity = 2
        try await BusFixtures.withBus(configuration: configuration, clock: clock) { bus in
            let handled = Collector<Numbered>()
            try Self.flakySubscriber(
                on: bus,
                name: "full",
                policy: .none,
                clock: clock,
                fixed: Flag(),
                attempts: Collector(),
                handled: handled
            )
            for sequence in 1...3 {
                try await bus.publish(Numbered(sequence: sequence))
            }
            try await bus.publish(Numbered(publisher: Self.marker, sequence: 0))
            await handled.waitFor(count: 1)

            let letters = bus.deadLetters
            #expect(letters.map(\.sequence) == [1, 2])
            #expect(letters.compactMap { ($0.event as? Numbered)?.sequence } == [2, 3])
            #expect(bus.evictedDeadLetters == 1)
        }
    }

    @Test("cancelling a subscription during a backoff ends the retries without a dead letter")
    func cancelDuringBackoff() async throws {
        let clock = TestClock()
        try await BusFixtures.withBus(clock: clock) { bus in
            let attempts = Collector<Duration>()
            let subscription = try Self.flakySubscriber(
                on: bus,
                name: "cancelled",
                policy: Self.retryThreeTimes,
                clock: clock,
                fixed: Flag(),
                attempts: attempts,
                handled: Collector()
            )
            try await bus.publish(Numbered(sequence: 1))
            await clock.waitForSleepers(count: 1)

            await subscription.cancel()
            #expect(clock.sleeperCount == 0)
            #expect(attempts.values == [.zero])
            #expect(bus.deadLetters.isEmpty)
            let statistics = subscription.statistics
            #expect(statistics.failedAttempts == 1)
            #expect(statistics.deadLettered == 0)
            #expect(statistics.discarded == 1)
        }
    }

    @Test("a failing subscriber does not hold up another subscriber of the same events")
    func failingSubscriberDoesNotDelayOthers() async throws {
        let clock = TestClock()
        try await BusFixtures.withBus(clock: clock) { bus in
            try Self.flakySubscriber(
                on: bus,
                name: "failing",
                policy: Self.retryThreeTimes,
                clock: clock,
                fixed: Flag(),
                attempts: Collector(),
                handled: Collector()
            )
            let healthy = Collector<Int>()
            try bus.subscribe(to: Numbered.self, name: "healthy") { event, _ in healthy.append(event.sequence) }
            for sequence in 0..<10 {
                try await bus.publish(Numbered(sequence: sequence))
            }
            // The failing subscriber is asleep in its first backoff, time stands still, and the
            // healthy one gets everything.
            await clock.waitForSleepers(count: 1)
            #expect(await healthy.waitFor(count: 10) == Array(0..<10))
            #expect(bus.deadLetters.isEmpty)
        }
    }
}
