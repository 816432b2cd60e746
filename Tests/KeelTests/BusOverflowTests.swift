import KeelCore
import Testing

@testable import Keel

/// Every overflow policy against a subscriber that is deliberately stuck.
///
/// Each test makes the subscriber take event 0 and block on a gate before anything else is
/// published, so the mailbox is empty and every later event meets a stuck subscriber: the counts
/// below are exact, not approximate.
@Suite("Bus overflow", .timeLimit(.minutes(2)))
struct BusOverflowTests {
    typealias Collector = BusFixtures.Collector
    typealias Gate = BusFixtures.Gate
    typealias Numbered = BusFixtures.Numbered

    static let capacity = 4
    static let total = 100

    /// Subscribes a handler that records each event after passing `gate`, publishes event 0 and
    /// returns once the handler is blocked on it.
    static func stuckSubscriber(
        on bus: EventBus,
        name: String = "slow",
        overflow: OverflowPolicy,
        gate: Gate,
        received: Collector<Int>
    ) async throws -> Subscription {
        let subscription = try bus.subscribe(
            to: Numbered.self,
            name: name,
            options: BusFixtures.options(capacity: Self.capacity, overflow: overflow)
        ) { event, _ in
            try await gate.wait()
            received.append(event.sequence)
        }
        try await bus.publish(Numbered(sequence: 0))
        await gate.waitForWaiters(count: 1)
        #expect(subscription.statistics.buffered == 0, "the handler did not take event 0 alone")
        return subscription
    }

    // MARK: Dropping

    @Test("dropNewest keeps the first events, drops and counts the rest, and stays at capacity")
    func dropNewest() async throws {
        let recorder = InMemoryRecorder()
        let subscription = try await BusFixtures.withBus(telemetry: recorder) { bus in
            let gate = Gate()
            let received = Collector<Int>()
            let subscription = try await Self.stuckSubscriber(
                on: bus,
                overflow: .dropNewest,
                gate: gate,
                received: received
            )

            var dropped = 0
            for sequence in 1..<Self.total {
                let receipt = try await bus.publish(Numbered(sequence: sequence))
                #expect(receipt.subscribers == 1)
                dropped += receipt.dropped
            }
            let expectedDrops = Self.total - 1 - Self.capacity
            #expect(dropped == expectedDrops, "the publishers learn what was dropped")
            let statistics = subscription.statistics
            #expect(statistics.dropped == expectedDrops)
            #expect(statistics.buffered == Self.capacity)
            #expect(statistics.peakBuffered == Self.capacity)
            #expect(
                recorder.counter("keel.bus.dropped", dimensions: [("subscription", "slow")]) == Int64(expectedDrops)
            )

            gate.open()
            #expect(await received.waitFor(count: Self.capacity + 1) == [0, 1, 2, 3, 4])
            return subscription
        }
        let statistics = subscription.statistics
        #expect(statistics.delivered == Self.capacity + 1)
        #expect(statistics.dropped == Self.total - 1 - Self.capacity)
        #expect(statistics.peakBuffered == Self.capacity)
        #expect(statistics.discarded == 0)
    }

    @Test("dropOldest keeps the last events, drops and counts the older ones, and stays at capacity")
    func dropOldest() async throws {
        let subscription = try await BusFixtures.withBus { bus in
            let gate = Gate()
            let received = Collector<Int>()
            let subscription = try await Self.stuckSubscriber(
                on: bus,
                overflow: .dropOldest,
                gate: gate,
                received: received
            )

            for sequence in 1..<Self.total {
                let receipt = try await bus.publish(Numbered(sequence: sequence))
                #expect(receipt.dropped == 0, "the new event was taken; an older one made room")
            }
            let statistics = subscription.statistics
            #expect(statistics.dropped == Self.total - 1 - Self.capacity)
            #expect(statistics.buffered == Self.capacity)
            #expect(statistics.peakBuffered == Self.capacity)

            gate.open()
            #expect(await received.waitFor(count: Self.capacity + 1) == [0, 96, 97, 98, 99])
            return subscription
        }
        let statistics = subscription.statistics
        #expect(statistics.delivered == Self.capacity + 1)
        #expect(statistics.peakBuffered == Self.capacity)
    }

    @Test(
        "a stuck subscriber's mailbox stays at capacity however much is published",
        arguments: [OverflowPolicy.dropNewest, .dropOldest]
    )
    func memoryStaysBounded(overflow: OverflowPolicy) async throws {
        let published = 5000
        try await BusFixtures.withBus { bus in
            let gate = Gate()
            let received = Collector<Int>()
            let subscription = try await Self.stuckSubscriber(
                on: bus,
                overflow: overflow,
                gate: gate,
                received: received
            )
            for sequence in 1..<published {
                try await bus.publish(Numbered(sequence: sequence))
            }
            let statistics = subscription.statistics
            #expect(statistics.peakBuffered == Self.capacity)
            #expect(statistics.buffered == Self.capacity)
            #expect(statistics.dropped == published - 1 - Self.capacity)
            gate.open()
            #expect(await received.waitFor(count: Self.capacity + 1).count == Self.capacity + 1)
        }
    }

    // MARK: Suspending

    @Test("suspendPublisher holds the publisher until there is room, and loses nothing")
    func suspendPublisher() async throws {
        let published = 20
        let subscription = try await BusFixtures.withBus { bus in
            let gate = Gate()
            let received = Collector<Int>()
            // The probe comes first in delivery order: once it has an event, that event's
            // publisher has moved on to the stuck subscription.
            let probe = Collector<Int>()
            try bus.subscribe(to: Numbered.self, name: "probe") { event, _ in probe.append(event.sequence) }
            let subscription = try await Self.stuckSubscriber(
                on: bus,
                overflow: .suspendPublisher,
                gate: gate,
                received: received
            )

            let finished = BusFixtures.Flag()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for sequence in 1...published {
                        let receipt = try await bus.publish(Numbered(sequence: sequence))
                        #expect(receipt.dropped == 0)
                    }
                    finished.set(true)
                }
                // Events 1...4 filled the mailbox; event 5 has met the full mailbox.
                #expect(await probe.waitFor(count: 6) == Array(0...5))
                #expect(subscription.statistics.buffered == Self.capacity)
                #expect(!finished.value, "the publisher ran past a full mailbox")
                #expect(received.count == 0)

                gate.open()
                try await group.waitForAll()
            }
            #expect(finished.value)
            #expect(await received.waitFor(count: published + 1) == Array(0...published))
            return subscription
        }
        let statistics = subscription.statistics
        #expect(statistics.dropped == 0)
        #expect(statistics.delivered == published + 1)
        #expect(statistics.peakBuffered <= Self.capacity)
        #expect(statistics.peakBuffered == Self.capacity)
    }

    @Test("a publisher cancelled while it waits for room fails with cancelled, and the event is not delivered")
    func cancelSuspendedPublisher() async throws {
        let subscription = try await BusFixtures.withBus { bus in
            let gate = Gate()
            let received = Collector<Int>()
            let probe = Collector<Int>()
            try bus.subscribe(to: Numbered.self, name: "probe") { event, _ in probe.append(event.sequence) }
            let subscription = try await Self.stuckSubscriber(
                on: bus,
                overflow: .suspendPublisher,
                gate: gate,
                received: received
            )
            for sequence in 1...Self.capacity {
                try await bus.publish(Numbered(sequence: sequence))
            }
            #expect(subscription.statistics.buffered == Self.capacity)

            await withTaskGroup(of: Result<PublishReceipt, EventBusError>.self) { group in
                group.addTask {
                    do throws(EventBusError) {
                        return .success(try await bus.publish(Numbered(sequence: 5)))
                    } catch {
                        return .failure(error)
                    }
                }
                #expect(await probe.waitFor(count: 6) == Array(0...5))
                group.cancelAll()
                guard case .failure(let error) = await group.next() else {
                    Issue.record("the cancelled publisher did not fail")
                    return
                }
                #expect(error.code == .cancelled)
                #expect(error.topic == Numbered.topic)
            }
            #expect(subscription.statistics.buffered == Self.capacity)

            gate.open()
            try await bus.publish(Numbered(sequence: 6))
            #expect(await received.waitFor(count: 6) == [0, 1, 2, 3, 4, 6])
            return subscription
        }
        let statistics = subscription.statistics
        #expect(statistics.delivered == 6)
        #expect(statistics.dropped == 0)
        #expect(statistics.peakBuffered == Self.capacity)
    }

    @Test("a publisher cancelled at one full mailbox still hands the event to later ones with room, without waiting")
    func cancelledPublisherContinuesWithoutWaiting() async throws {
        try await BusFixtures.withBus { bus in
            let gate = Gate()
            let first = Collector<Int>()
            let third = Collector<Int>()
            let roomy = Collector<Int>()
            // In delivery order: full, roomy, full.
            let full = try bus.subscribe(
                to: Numbered.self,
                name: "first",
                options: BusFixtures.options(capacity: Self.capacity)
            ) { event, _ in
                try await gate.wait()
                first.append(event.sequence)
            }
            try bus.subscribe(to: Numbered.self, name: "roomy") { event, _ in roomy.append(event.sequence) }
            let alsoFull = try bus.subscribe(
                to: Numbered.self,
                name: "third",
                options: BusFixtures.options(capacity: Self.capacity)
            ) { event, _ in
                try await gate.wait()
                third.append(event.sequence)
            }
            try await bus.publish(Numbered(sequence: 0))
            await gate.waitForWaiters(count: 2)
            for sequence in 1...Self.capacity {
                try await bus.publish(Numbered(sequence: sequence))
            }

            // Cancelled before it starts or while it waits at the first mailbox: either way it
            // gives up on the first, offers the event to the rest without waiting, then fails.
            let outcome = await withTaskGroup(of: Result<PublishReceipt, EventBusError>.self) { group in
                group.addTask {
                    do throws(EventBusError) {
                        return .success(try await bus.publish(Numbered(sequence: 5)))
                    } catch {
                        return .failure(error)
                    }
                }
                group.cancelAll()
                return await group.next()
            }
            guard case .failure(let error) = outcome else {
                Issue.record("the cancelled publisher did not fail: \(String(describing: outcome))")
                return
            }
            #expect(error.code == .cancelled)

            #expect(await roomy.waitFor(count: 6) == Array(0...5))
            #expect(full.statistics.buffered == Self.capacity)
            #expect(alsoFull.statistics.buffered == Self.capacity)
            gate.open()
            #expect(await first.waitFor(count: 5) == Array(0...4))
            #expect(await third.waitFor(count: 5) == Array(0...4))
        }
    }
}
