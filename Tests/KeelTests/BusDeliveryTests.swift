import KeelCore
import Testing

@testable import Keel

@Suite("Bus delivery", .timeLimit(.minutes(2)))
struct BusDeliveryTests {
    typealias Collector = BusFixtures.Collector
    typealias Gate = BusFixtures.Gate
    typealias Numbered = BusFixtures.Numbered
    typealias OrderCreated = BusFixtures.OrderCreated
    typealias OrderShipped = BusFixtures.OrderShipped
    typealias PaymentFailed = BusFixtures.PaymentFailed
    typealias Routed = BusFixtures.Routed

    /// What a handler saw: the envelope it was given and the trace context bound around it.
    struct Seen: Sendable {
        var envelope: EventEnvelope
        var context: TraceContext?
    }

    // MARK: Routing

    @Test("a subscription by type receives events of that type only")
    func subscribeByType() async throws {
        try await BusFixtures.withBus { bus in
            let created = Collector<Int>()
            let subscription = try bus.subscribe(to: OrderCreated.self) { event, _ in created.append(event.orderID) }
            #expect(subscription.name == "order.created")

            #expect(try await bus.publish(OrderShipped(orderID: 1)).subscribers == 0)
            // Same topic, other type: a type subscription goes by type.
            #expect(try await bus.publish(Routed(route: "order.created")).subscribers == 0)
            let receipt = try await bus.publish(OrderCreated(orderID: 2))
            #expect(receipt.subscribers == 1)
            #expect(receipt.dropped == 0)
            #expect(try await bus.publish(OrderCreated(orderID: 3)).subscribers == 1)

            #expect(await created.waitFor(count: 2) == [2, 3])
        }
    }

    @Test("a subscription by type receives values of that type whatever their topic")
    func subscribeByTypeIgnoresPerValueTopic() async throws {
        try await BusFixtures.withBus { bus in
            let routes = Collector<String>()
            try bus.subscribe(to: Routed.self) { event, envelope in
                #expect(envelope.topic == event.route)
                routes.append(event.route)
            }
            for route in ["a", "b.c", "order.created"] {
                try await bus.publish(Routed(route: route))
            }
            #expect(await routes.waitFor(count: 3) == ["a", "b.c", "order.created"])
        }
    }

    @Test("a subscription by pattern receives every type whose topic matches")
    func subscribeByPattern() async throws {
        try await BusFixtures.withBus { bus in
            let orders = Collector<String>()
            let everything = Collector<String>()
            let subscription = try bus.subscribe(pattern: "order.*") { event, envelope in
                #expect(event.topic == envelope.topic)
                orders.append(envelope.topic)
            }
            #expect(subscription.name == "order.*")
            try bus.subscribe(pattern: "#", name: "audit") { _, envelope in everything.append(envelope.topic) }

            #expect(try await bus.publish(OrderCreated(orderID: 1)).subscribers == 2)
            #expect(try await bus.publish(PaymentFailed(orderID: 1)).subscribers == 1)
            #expect(try await bus.publish(Routed(route: "order.item.added")).subscribers == 1)
            #expect(try await bus.publish(Routed(route: "order.cancelled")).subscribers == 2)
            #expect(try await bus.publish(OrderShipped(orderID: 1)).subscribers == 2)

            #expect(await orders.waitFor(count: 3) == ["order.created", "order.cancelled", "order.shipped"])
            #expect(
                await everything.waitFor(count: 5) == [
                    "order.created", "payment.failed", "order.item.added", "order.cancelled", "order.shipped",
                ]
            )
        }
    }

    @Test("a pattern handler receives the published value itself")
    func patternHandlerGetsTheValue() async throws {
        try await BusFixtures.withBus { bus in
            let received = Collector<OrderCreated?>()
            try bus.subscribe(pattern: "order.#") { event, _ in received.append(event as? OrderCreated) }
            try await bus.publish(OrderCreated(orderID: 7))
            #expect(await received.waitFor(count: 1) == [OrderCreated(orderID: 7)])
        }
    }

    @Test("a subscription made after a publish receives the next publish of that type")
    func subscriptionAfterPublishSeesLaterEvents() async throws {
        try await BusFixtures.withBus { bus in
            #expect(try await bus.publish(OrderCreated(orderID: 1)).subscribers == 0)
            let first = Collector<Int>()
            try bus.subscribe(to: OrderCreated.self) { event, _ in first.append(event.orderID) }
            #expect(try await bus.publish(OrderCreated(orderID: 2)).subscribers == 1)
            let second = Collector<Int>()
            try bus.subscribe(pattern: "order.created") { event, _ in
                second.append((event as? OrderCreated)?.orderID ?? -1)
            }
            #expect(try await bus.publish(OrderCreated(orderID: 3)).subscribers == 2)
            #expect(await first.waitFor(count: 2) == [2, 3])
            #expect(await second.waitFor(count: 1) == [3])
        }
    }

    @Test("subscriptions are listed in subscription order with increasing ids")
    func listsSubscriptions() async throws {
        try await BusFixtures.withBus { bus in
            let a = try bus.subscribe(to: OrderCreated.self, name: "a", owner: "order") { _, _ in }
            let b = try bus.subscribe(pattern: "#", name: "b") { _, _ in }
            #expect(bus.subscriptions == [a, b])
            #expect(a.id.rawValue < b.id.rawValue)
            #expect(a.owner == "order")
            #expect(b.owner == nil)
            #expect(a.description == "a (\(a.id))")
            #expect(!a.isCancelled)
        }
    }

    // MARK: Envelopes and trace context

    @Test("the envelope carries source, topic, type, time and the publisher's trace context")
    func envelopeFromBoundContext() async throws {
        try await BusFixtures.withBus { bus in
            let seen = Collector<Seen>()
            try bus.subscribe(to: OrderCreated.self) { _, envelope in
                seen.append(Seen(envelope: envelope, context: TraceContext.current))
            }
            let publisher = TraceContext(
                traceID: TraceID(high: 0xA, low: 0xB),
                spanID: SpanID(rawValue: 0xC),
                parentSpanID: SpanID(rawValue: 0xD),
                correlationID: "order-42",
                causationID: "request-7"
            )
            let receipt = try await TraceContext.$current.withValue(publisher) {
                try await bus.publish(OrderCreated(orderID: 42), source: "order")
            }

            let handled = try #require(await seen.waitFor(count: 1).first)
            let envelope = handled.envelope
            #expect(envelope.id == receipt.id)
            #expect(envelope.source == "order")
            #expect(envelope.topic == "order.created")
            #expect(envelope.eventType == "OrderCreated")
            #expect(envelope.time == BusFixtures.publicationTime)
            #expect(envelope.correlationID == "order-42")
            #expect(envelope.causationID == "request-7")
            #expect(envelope.traceID == publisher.traceID)
            #expect(envelope.spanID == publisher.spanID, "without telemetry the publisher's span is its own")

            let context = try #require(handled.context, "no trace context was bound around the handler")
            #expect(context.traceID == envelope.traceID)
            #expect(context.parentSpanID == envelope.spanID)
            #expect(context.spanID != envelope.spanID)
            #expect(context.correlationID == envelope.correlationID)
            #expect(context.causationID == envelope.id.description)
        }
    }

    @Test("an event published outside any trace starts a new one")
    func envelopeWithoutContext() async throws {
        try await BusFixtures.withBus { bus in
            let seen = Collector<Seen>()
            try bus.subscribe(pattern: "#") { _, envelope in
                seen.append(Seen(envelope: envelope, context: TraceContext.current))
            }
            let first = try await bus.publish(OrderCreated(orderID: 1))
            let second = try await bus.publish(OrderCreated(orderID: 2))
            #expect(first.id != second.id)

            let handled = await seen.waitFor(count: 2)
            let envelope = handled[0].envelope
            #expect(envelope.source == nil)
            #expect(envelope.causationID == nil)
            #expect(envelope.correlationID == envelope.traceID.description)
            #expect(handled[1].envelope.traceID != envelope.traceID, "each outside publish is its own trace")
            #expect(handled[0].context?.traceID == envelope.traceID)
            #expect(handled[0].context?.parentSpanID == envelope.spanID)
            #expect(handled[0].context?.causationID == envelope.id.description)
        }
    }

    @Test("an event published from a handler is caused by the event being handled")
    func causationChain() async throws {
        try await BusFixtures.withBus { bus in
            let created = Collector<EventEnvelope>()
            let shipped = Collector<Seen>()
            try bus.subscribe(to: OrderCreated.self, name: "shipping") { event, envelope in
                created.append(envelope)
                try await bus.publish(OrderShipped(orderID: event.orderID), source: "shipping")
            }
            try bus.subscribe(to: OrderShipped.self) { _, envelope in
                shipped.append(Seen(envelope: envelope, context: TraceContext.current))
            }
            let root = TraceContext(
                traceID: TraceID(high: 1, low: 1),
                spanID: SpanID(rawValue: 1),
                correlationID: "order-9"
            )
            try await TraceContext.$current.withValue(root) {
                try await bus.publish(OrderCreated(orderID: 9), source: "order")
            }

            let cause = try #require(await created.waitFor(count: 1).first)
            let effect = try #require(await shipped.waitFor(count: 1).first)
            #expect(effect.envelope.source == "shipping")
            #expect(effect.envelope.causationID == cause.id.description)
            #expect(effect.envelope.traceID == root.traceID)
            #expect(effect.envelope.correlationID == "order-9")
            #expect(effect.envelope.spanID != cause.spanID, "published from the handler's own span")
            #expect(effect.context?.causationID == effect.envelope.id.description)
        }
    }

    @Test("with telemetry, the envelope names a producer span and the handler runs in a consumer span")
    func spans() async throws {
        let recorder = InMemoryRecorder()
        let root = TraceContext(traceID: TraceID(high: 2, low: 3), spanID: SpanID(rawValue: 4), correlationID: "c")
        let envelope = try await BusFixtures.withBus(telemetry: recorder) { bus in
            let seen = Collector<EventEnvelope>()
            try bus.subscribe(to: OrderCreated.self, name: "billing") { _, envelope in seen.append(envelope) }
            try await TraceContext.$current.withValue(root) {
                try await bus.publish(OrderCreated(orderID: 1))
            }
            return try #require(await seen.waitFor(count: 1).first)
        }
        let spans = recorder.spans(inTrace: root.traceID)
        let producer = try #require(spans.first { $0.kind == .producer })
        #expect(producer.name == "publish order.created")
        #expect(producer.context.spanID == envelope.spanID)
        #expect(producer.context.parentSpanID == root.spanID)
        #expect(producer.attributes["event.id"] == .string(envelope.id.description))
        let consumer = try #require(spans.first { $0.kind == .consumer })
        #expect(consumer.name == "handle billing")
        #expect(consumer.context.parentSpanID == envelope.spanID)
        #expect(consumer.end != nil)
        #expect(recorder.counterTotal("keel.bus.published") == 1)
    }

    // MARK: Ordering

    @Test("one publisher's events reach a subscriber in publication order", arguments: [1024, 16, 1])
    func orderPerPublisher(capacity: Int) async throws {
        try await BusFixtures.withBus { bus in
            let received = Collector<Int>()
            try bus.subscribe(to: Numbered.self, options: BusFixtures.options(capacity: capacity)) { event, _ in
                received.append(event.sequence)
            }
            for sequence in 0..<1000 {
                try await bus.publish(Numbered(sequence: sequence))
            }
            #expect(await received.waitFor(count: 1000) == Array(0..<1000))
        }
    }

    @Test("concurrent publishers each keep their own order at every subscriber")
    func orderPerPublisherUnderConcurrency() async throws {
        let publishers = 4
        let perPublisher = 250
        try await BusFixtures.withBus { bus in
            let subscribers = (0..<3).map { _ in Collector<Numbered>() }
            for (index, collector) in subscribers.enumerated() {
                try bus.subscribe(
                    to: Numbered.self,
                    name: "subscriber-\(index)",
                    options: BusFixtures.options(capacity: 8, batchSize: index + 1)
                ) { event, _ in collector.append(event) }
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for publisher in 0..<publishers {
                    group.addTask {
                        for sequence in 0..<perPublisher {
                            try await bus.publish(Numbered(publisher: publisher, sequence: sequence))
                        }
                    }
                }
                try await group.waitForAll()
            }
            for collector in subscribers {
                let received = await collector.waitFor(count: publishers * perPublisher)
                #expect(received.count == publishers * perPublisher)
                for publisher in 0..<publishers {
                    let sequences = received.filter { $0.publisher == publisher }.map(\.sequence)
                    #expect(sequences == Array(0..<perPublisher), "publisher \(publisher) out of order")
                }
            }
        }
    }

    // MARK: Isolation between subscribers

    /// A slow subscriber's settings: room for every event, or a small mailbox that drops.
    struct SlowSetup: Sendable, CustomTestStringConvertible {
        var capacity: Int
        var overflow: OverflowPolicy
        var testDescription: String { "\(self.overflow), capacity \(self.capacity)" }
    }

    @Test(
        "a blocked subscriber delays neither the publisher nor a fast subscriber",
        arguments: [
            SlowSetup(capacity: 256, overflow: .suspendPublisher),
            SlowSetup(capacity: 4, overflow: .dropNewest),
            SlowSetup(capacity: 4, overflow: .dropOldest),
        ]
    )
    func slowSubscriberDoesNotDelayFastOne(setup: SlowSetup) async throws {
        let total = 200
        let slowSubscription = try await BusFixtures.withBus { bus in
            let gate = Gate()
            let slow = Collector<Int>()
            let fast = Collector<Int>()
            let slowSubscription = try bus.subscribe(
                to: Numbered.self,
                name: "slow",
                options: BusFixtures.options(capacity: setup.capacity, overflow: setup.overflow, batchSize: 1)
            ) { event, _ in
                try await gate.wait()
                slow.append(event.sequence)
            }
            try bus.subscribe(to: Numbered.self, name: "fast") { event, _ in fast.append(event.sequence) }

            // Every publish returns although the slow handler is stuck.
            for sequence in 0..<total {
                try await bus.publish(Numbered(sequence: sequence))
            }
            #expect(await fast.waitFor(count: total) == Array(0..<total))
            await gate.waitForWaiters(count: 1)
            #expect(slow.count == 0, "the slow subscriber got past its gate")
            #expect(slowSubscription.statistics.buffered <= setup.capacity)

            gate.open()
            let expected = total - slowSubscription.statistics.dropped
            let received = await slow.waitFor(count: expected)
            #expect(received.count == expected)
            #expect(received == received.sorted(), "the slow subscriber saw events out of order")
            return slowSubscription
        }
        let statistics = slowSubscription.statistics
        #expect(statistics.delivered + statistics.dropped == total)
        #expect(statistics.peakBuffered <= setup.capacity)
        if setup.overflow == .suspendPublisher {
            #expect(statistics.dropped == 0)
        }
    }

    // MARK: Ending subscriptions

    @Test("cancelling a subscription ends delivery to it")
    func cancelEndsDelivery() async throws {
        try await BusFixtures.withBus { bus in
            let received = Collector<Int>()
            let subscription = try bus.subscribe(to: OrderCreated.self) { event, _ in received.append(event.orderID) }
            try await bus.publish(OrderCreated(orderID: 1))
            #expect(await received.waitFor(count: 1) == [1])

            await subscription.cancel()
            #expect(subscription.isCancelled)
            #expect(bus.subscriptions.isEmpty)
            #expect(try await bus.publish(OrderCreated(orderID: 2)).subscribers == 0)
            await subscription.cancel()  // a second cancel is harmless

            // A later subscription still works, and the cancelled one still gets nothing.
            let later = Collector<Int>()
            try bus.subscribe(to: OrderCreated.self) { event, _ in later.append(event.orderID) }
            try await bus.publish(OrderCreated(orderID: 3))
            #expect(await later.waitFor(count: 1) == [3])
            #expect(received.values == [1])
            #expect(subscription.statistics.delivered == 1)
        }
    }

    @Test("cancelling a subscription cancels its running handler and discards what is buffered")
    func cancelInterruptsHandler() async throws {
        try await BusFixtures.withBus { bus in
            let gate = Gate()
            let subscription = try bus.subscribe(
                to: Numbered.self,
                options: BusFixtures.options(capacity: 8, batchSize: 1)
            ) { _, _ in try await gate.wait() }
            for sequence in 0..<3 {
                try await bus.publish(Numbered(sequence: sequence))
            }
            await gate.waitForWaiters(count: 1)

            await subscription.cancel()  // returns only once the handler has returned
            #expect(gate.waiting == 0)
            let statistics = subscription.statistics
            #expect(statistics.delivered == 0)
            #expect(statistics.discarded == 3, "one interrupted, two still buffered")
            #expect(statistics.buffered == 0)
            #expect(statistics.deadLettered == 0, "cancellation is not a handler failure")
            #expect(bus.deadLetters.isEmpty)
        }
    }

    @Test("a handler may cancel its own subscription")
    func cancelFromOwnHandler() async throws {
        try await BusFixtures.withBus { bus in
            let own = BusFixtures.Box<Subscription>()
            let received = Collector<Int>()
            let subscription = try bus.subscribe(
                to: Numbered.self,
                options: BusFixtures.options(capacity: 8, batchSize: 1)
            ) { event, _ in
                received.append(event.sequence)
                await own.value?.cancel()  // a one-shot subscription
            }
            own.set(subscription)
            try await bus.publish(Numbered(sequence: 0))
            #expect(await received.waitFor(count: 1) == [0])

            await subscription.cancel()  // returns once the handler task has ended
            #expect(subscription.isCancelled)
            #expect(try await bus.publish(Numbered(sequence: 1)).subscribers == 0)
            #expect(received.values == [0])
        }
    }

    @Test("cancelling from several tasks at once returns in each, after the handler has returned")
    func concurrentCancel() async throws {
        try await BusFixtures.withBus { bus in
            let gate = Gate()
            let subscription = try bus.subscribe(to: Numbered.self) { _, _ in try await gate.wait() }
            try await bus.publish(Numbered(sequence: 0))
            await gate.waitForWaiters(count: 1)
            await withTaskGroup(of: Int.self) { group in
                for _ in 0..<4 {
                    group.addTask {
                        await subscription.cancel()
                        return gate.waiting
                    }
                }
                for await waiting in group {
                    #expect(waiting == 0, "a cancel returned while the handler was still running")
                }
            }
            #expect(subscription.isCancelled)
            #expect(subscription.statistics.discarded == 1)
        }
    }

    @Test("cancelling a subscription releases the publishers waiting for room in it")
    func cancelReleasesWaitingPublishers() async throws {
        try await BusFixtures.withBus { bus in
            let gate = Gate()
            let probe = Collector<Int>()
            try bus.subscribe(to: Numbered.self, name: "probe") { event, _ in probe.append(event.sequence) }
            let subscription = try bus.subscribe(
                to: Numbered.self,
                options: BusFixtures.options(capacity: 1, batchSize: 1)
            ) { _, _ in try await gate.wait() }
            try await bus.publish(Numbered(sequence: 0))
            await gate.waitForWaiters(count: 1)
            try await bus.publish(Numbered(sequence: 1))

            try await withThrowingTaskGroup(of: PublishReceipt.self) { group in
                group.addTask { try await bus.publish(Numbered(sequence: 2)) }
                #expect(await probe.waitFor(count: 3) == [0, 1, 2])
                await subscription.cancel()
                let receipt = try await group.next()
                #expect(receipt?.subscribers == 2)
            }
            #expect(subscription.statistics.discarded == 2, "the interrupted event and the buffered one")
            #expect(try await bus.publish(Numbered(sequence: 3)).subscribers == 1)
        }
    }

    @Test("cancelling a service's subscriptions ends only those")
    func cancelByOwner() async throws {
        try await BusFixtures.withBus { bus in
            let owned = try bus.subscribe(to: OrderCreated.self, owner: "billing") { _, _ in }
            let other = try bus.subscribe(to: OrderCreated.self, owner: "shipping") { _, _ in }
            let anonymous = try bus.subscribe(pattern: "#") { _, _ in }

            await bus.cancelSubscriptions(ownedBy: "billing")
            #expect(owned.isCancelled)
            #expect(!other.isCancelled)
            #expect(bus.subscriptions == [other, anonymous])
            #expect(try await bus.publish(OrderCreated(orderID: 1)).subscribers == 2)
        }
    }

    // MARK: Shutdown

    @Test("after shutdown the bus refuses publications and subscriptions")
    func shutdownRefusesWork() async throws {
        let bus = EventBus(random: RandomSource(seed: 1))
        let subscription = try bus.subscribe(to: OrderCreated.self) { _, _ in }
        await bus.shutdown()
        #expect(subscription.isCancelled)
        #expect(bus.subscriptions.isEmpty)

        let publishError = await #expect(throws: EventBusError.self) {
            try await bus.publish(OrderCreated(orderID: 1))
        }
        #expect(publishError?.code == .shuttingDown)
        #expect(publishError?.topic == "order.created")

        let subscribeError = #expect(throws: EventBusError.self) {
            try bus.subscribe(pattern: "order.#") { _, _ in }
        }
        #expect(subscribeError?.code == .shuttingDown)

        await bus.shutdown()  // a second shutdown is harmless
        #expect(bus.tracker.inFlight == 0)
    }

    @Test("shutdown ends blocked handlers, discards buffered events and releases waiting publishers")
    func shutdownWhileBusy() async throws {
        let bus = EventBus(random: RandomSource(seed: 1))
        let gate = Gate()
        // The probe comes first in delivery order: once it has an event, the publisher of that
        // event has moved on to the gated subscription.
        let probe = Collector<Int>()
        try bus.subscribe(to: Numbered.self, name: "probe") { event, _ in probe.append(event.sequence) }
        let subscription = try bus.subscribe(
            to: Numbered.self,
            options: BusFixtures.options(capacity: 2, batchSize: 1)
        ) { _, _ in try await gate.wait() }
        try await bus.publish(Numbered(sequence: 0))
        await gate.waitForWaiters(count: 1)
        try await bus.publish(Numbered(sequence: 1))
        try await bus.publish(Numbered(sequence: 2))
        #expect(subscription.statistics.buffered == 2)

        try await withThrowingTaskGroup(of: PublishReceipt.self) { group in
            // This publisher finds the mailbox full and waits for room.
            group.addTask { try await bus.publish(Numbered(sequence: 3)) }
            #expect(await probe.waitFor(count: 4) == [0, 1, 2, 3])
            await bus.shutdown()
            // The waiting publisher was let go: the subscription it waited for is gone.
            let receipt = try await group.next()
            #expect(receipt?.subscribers == 2)
            #expect(receipt?.dropped == 0)
        }
        let statistics = subscription.statistics
        #expect(statistics.delivered == 0)
        #expect(statistics.discarded == 3, "the interrupted event and the two buffered ones")
        #expect(bus.tracker.inFlight == 0)
    }
}

@Suite("Bus under contention", .timeLimit(.minutes(2)))
struct BusContentionTests {
    typealias Collector = BusFixtures.Collector
    typealias Numbered = BusFixtures.Numbered

    @Test("8 publishers × 500 events reach 4 subscribers exactly once, in order per publisher, with nothing dropped")
    func manyPublishersManySubscribers() async throws {
        let publishers = 8
        let perPublisher = 500
        let total = publishers * perPublisher
        let subscriptions = try await BusFixtures.withBus { bus in
            let collectors = (0..<4).map { _ in Collector<Numbered>() }
            var subscriptions: [Subscription] = []
            for (index, collector) in collectors.enumerated() {
                // Small mailboxes, so that publishers keep suspending and resuming.
                subscriptions.append(
                    try bus.subscribe(
                        to: Numbered.self,
                        name: "subscriber-\(index)",
                        options: BusFixtures.options(capacity: 4 << index, batchSize: 1 + index * 7)
                    ) { event, _ in collector.append(event) }
                )
            }
            let receipts = try await withThrowingTaskGroup(of: [PublishReceipt].self) { group in
                for publisher in 0..<publishers {
                    group.addTask {
                        var receipts: [PublishReceipt] = []
                        for sequence in 0..<perPublisher {
                            receipts.append(try await bus.publish(Numbered(publisher: publisher, sequence: sequence)))
                        }
                        return receipts
                    }
                }
                return try await group.reduce(into: []) { $0 += $1 }
            }
            #expect(receipts.count == total)
            #expect(receipts.allSatisfy { $0.subscribers == 4 && $0.dropped == 0 })
            #expect(Set(receipts.map(\.id)).count == total, "event ids are unique")

            for collector in collectors {
                let received = await collector.waitFor(count: total)
                #expect(received.count == total)
                #expect(Set(received).count == total, "an event was delivered twice")
                for publisher in 0..<publishers {
                    let sequences = received.filter { $0.publisher == publisher }.map(\.sequence)
                    #expect(sequences == Array(0..<perPublisher))
                }
            }
            return subscriptions
        }
        for subscription in subscriptions {
            let statistics = subscription.statistics
            #expect(statistics.delivered == total)
            #expect(statistics.dropped == 0)
            #expect(statistics.discarded == 0)
            #expect(statistics.peakBuffered <= subscription.subscriber.options.bufferCapacity)
        }
    }

    @Test(
        "under contention with a dropping policy every event is delivered, dropped or discarded, and drops are reported",
        arguments: [OverflowPolicy.dropNewest, .dropOldest]
    )
    func accountingUnderDrops(overflow: OverflowPolicy) async throws {
        let publishers = 8
        let perPublisher = 500
        let total = publishers * perPublisher
        let subscribers = 2
        // The handlers record what they receive; the expectations below come from those records
        // and from the publishers' receipts, and the bus's statistics are checked against them.
        let handled = (0..<subscribers).map { _ in Collector<Numbered>() }
        let sentinels = Collector<Int>()
        let all = Collector<Int>()
        let sentinel = Numbered(publisher: -1, sequence: 0)
        let subscriptions = try await BusFixtures.withBus { bus in
            var subscriptions: [Subscription] = []
            for index in 0..<subscribers {
                subscriptions.append(
                    try bus.subscribe(
                        to: Numbered.self,
                        name: "lossy-\(index)",
                        options: BusFixtures.options(capacity: 8, overflow: overflow)
                    ) { [received = handled[index]] event, _ in
                        if event == sentinel {
                            sentinels.append(index)
                        } else {
                            received.append(event)
                            all.append(index)
                        }
                    }
                )
            }
            let reportedDrops = try await withThrowingTaskGroup(of: Int.self) { group in
                for publisher in 0..<publishers {
                    group.addTask {
                        var dropped = 0
                        for sequence in 0..<perPublisher {
                            dropped += try await bus.publish(Numbered(publisher: publisher, sequence: sequence)).dropped
                        }
                        return dropped
                    }
                }
                return try await group.reduce(0, +)
            }
            switch overflow {
            case .dropNewest:
                // A publisher learns of every new event a full mailbox refused, so the handlers
                // receive exactly the rest; the wait ends only when they have.
                _ = await all.waitFor(count: subscribers * total - reportedDrops)
            default:
                // Dropping the oldest never refuses the new event, so receipts report nothing,
                // and the last event published cannot be dropped: once each handler has the
                // sentinel, its mailbox is empty and everything it will ever get is handled.
                #expect(reportedDrops == 0)
                let receipt = try await bus.publish(sentinel)
                #expect(receipt.dropped == 0)
                _ = await sentinels.waitFor(count: subscribers)
            }
            return subscriptions
        }
        // The bus is shut down: every count is final.
        for (index, subscription) in subscriptions.enumerated() {
            let received = handled[index].values
            #expect(Set(received).count == received.count, "an event was delivered twice")
            for publisher in 0..<publishers {
                let sequences = received.filter { $0.publisher == publisher }.map(\.sequence)
                #expect(sequences == sequences.sorted(), "publisher \(publisher)'s order was not kept")
            }
            let statistics = subscription.statistics
            let sentinelDeliveries = overflow == .dropNewest ? 0 : 1
            #expect(statistics.delivered == received.count + sentinelDeliveries)
            #expect(statistics.dropped == total - received.count)
            #expect(statistics.discarded == 0)
            #expect(statistics.peakBuffered <= 8)
            #expect(statistics.buffered == 0)
        }
    }

    @Test("subscribing and cancelling while others publish loses nothing for the steady subscribers")
    func churnWhilePublishing() async throws {
        let perPublisher = 300
        try await BusFixtures.withBus { bus in
            let steady = Collector<Numbered>()
            try bus.subscribe(to: Numbered.self, name: "steady", options: BusFixtures.options(capacity: 16)) {
                event,
                _ in
                steady.append(event)
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for publisher in 0..<4 {
                    group.addTask {
                        for sequence in 0..<perPublisher {
                            try await bus.publish(Numbered(publisher: publisher, sequence: sequence))
                        }
                    }
                }
                group.addTask {
                    for round in 0..<50 {
                        let transient = try bus.subscribe(
                            pattern: round.isMultiple(of: 2) ? "test.#" : "#",
                            options: BusFixtures.options(capacity: 2, overflow: .dropOldest)
                        ) { _, _ in }
                        await transient.cancel()
                    }
                }
                try await group.waitForAll()
            }
            let received = await steady.waitFor(count: 4 * perPublisher)
            for publisher in 0..<4 {
                #expect(received.filter { $0.publisher == publisher }.map(\.sequence) == Array(0..<perPublisher))
            }
            #expect(bus.subscriptions.count == 1)
        }
    }
}
