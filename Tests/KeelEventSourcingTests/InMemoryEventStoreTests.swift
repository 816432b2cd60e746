import KeelCore
import KeelEventSourcing
import KeelTesting
import Synchronization
import Testing

@Suite("In-memory event store", .timeLimit(.minutes(2)))
struct InMemoryEventStoreTests {
    @Test("passes the event store conformance checks", arguments: EventStoreConformance.checks)
    func conformance(_ check: EventStoreConformance.Check) async throws {
        try await check.run(on: InMemoryEventStore())
    }

    static func event(_ index: Int) -> EventData {
        EventData(
            type: "test.counted",
            metadata: EventMetadata(id: EventID(high: 1, low: UInt64(index)), time: Int64(index)),
            payload: Array(String(index).utf8)
        )
    }

    @Test("8 subscribers and 4 appenders: every subscriber sees every event once, in position order")
    func subscribersUnderContention() async throws {
        let store = InMemoryEventStore()
        let appenders = 4
        let perAppender = 100
        let total = appenders * perAppender
        try await withThrowingTaskGroup(of: [UInt64].self) { group in
            for _ in 0..<8 {
                group.addTask {
                    var positions: [UInt64] = []
                    for try await event in store.subscribe(from: 0, pageSize: 16) {
                        positions.append(event.position)
                        if positions.count == total { break }
                    }
                    return positions
                }
            }
            for appender in 0..<appenders {
                group.addTask {
                    for index in 0..<perAppender {
                        try await store.append(
                            Self.event(appender * perAppender + index),
                            to: StreamID("a-\(appender)")
                        )
                    }
                    return []
                }
            }
            var subscribers = 0
            for try await positions in group where !positions.isEmpty {
                #expect(positions == Array(0..<UInt64(total)))
                subscribers += 1
            }
            #expect(subscribers == 8)
        }
        for appender in 0..<appenders {
            let versions = try await store.readStream(StreamID("a-\(appender)")).map(\.version)
            #expect(versions == Array(0..<UInt64(perAppender)))
        }
    }

    @Test("a subscription waiting on an empty store gets the first event appended")
    func waitsOnEmptyStore() async throws {
        let store = InMemoryEventStore()
        async let first: RecordedEvent? = {
            var iterator = store.subscribe(to: "late-1").makeAsyncIterator()
            return try await iterator.next()
        }()
        try await store.append(Self.event(1), to: "other-1")
        try await store.append(Self.event(2), to: "late-1")
        let event = try await first
        #expect(event?.stream == "late-1")
        #expect(event?.version == 0)
        #expect(event?.position == 1)
    }

    @Test("a deleted stream's subscription fails with streamDeleted")
    func subscriptionToDeletedStream() async throws {
        let store = InMemoryEventStore()
        try await store.append(Self.event(1), to: "gone-1")
        try await store.deleteStream("gone-1", expecting: .any)
        var iterator = store.subscribe(to: "gone-1").makeAsyncIterator()
        await #expect(throws: EventStoreError.self) { _ = try await iterator.next() }
    }

    @Test("the fixture initialiser appends in order")
    func fixtureInitialiser() async throws {
        let store = InMemoryEventStore(events: [("f-1", Self.event(0)), ("f-2", Self.event(1)), ("f-1", Self.event(2))])
        #expect(try await store.headPosition() == 3)
        #expect(try await store.readStream("f-1").map(\.payload) == [Array("0".utf8), Array("2".utf8)])
    }
}

@Suite("Event store values", .timeLimit(.minutes(2)))
struct EventStoreValueTests {
    @Test("expected versions against every current version")
    func expectedVersions() {
        let table: [(ExpectedVersion, UInt64?, Bool)] = [
            (.any, nil, true), (.any, 3, true),
            (.noStream, nil, true), (.noStream, 0, false),
            (.streamExists, nil, false), (.streamExists, 0, true),
            (.exactly(2), 2, true), (.exactly(2), 3, false), (.exactly(0), nil, false),
        ]
        for (expected, current, satisfied) in table {
            #expect(expected.isSatisfied(by: current) == satisfied, "\(expected) vs \(String(describing: current))")
        }
        #expect(ExpectedVersion.exactly(4).description == "exactly 4")
    }

    @Test("stream metadata bounds the first visible version")
    func firstVisibleVersion() {
        #expect(StreamMetadata().firstVisibleVersion(last: 9) == 0)
        #expect(StreamMetadata(maxCount: 3).firstVisibleVersion(last: 9) == 7)
        #expect(StreamMetadata(maxCount: 30).firstVisibleVersion(last: 9) == 0)
        #expect(StreamMetadata(truncateBefore: 4).firstVisibleVersion(last: 9) == 4)
        #expect(StreamMetadata(maxCount: 2, truncateBefore: 4).firstVisibleVersion(last: 9) == 8)
        #expect(StreamMetadata(maxCount: 8, truncateBefore: 4).firstVisibleVersion(last: 9) == 4)
        #expect(StreamMetadata(truncateBefore: 12).firstVisibleVersion(last: 9) == 12)
    }

    @Test("stream ids have a category")
    func categories() {
        #expect(StreamID("user-42").category == "user")
        #expect(StreamID("user-42-a").category == "user")
        #expect(StreamID("settings").category == "settings")
        #expect(StreamID("a") < StreamID("b"))
    }

    @Test("a version conflict says what was expected and what was found")
    func conflictError() {
        let error = EventStoreError.wrongExpectedVersion("user-1", expected: .exactly(3), actual: 5)
        #expect(error.code == .wrongExpectedVersion)
        #expect(error.actualVersion == 5)
        #expect(
            error.description
                == "event store: wrong expected version (stream user-1): expected exactly 3, found version 5"
        )
        let none = EventStoreError.wrongExpectedVersion("user-2", expected: .streamExists, actual: nil)
        #expect(none.message == "expected stream exists, found no stream")
    }

    @Test("metadata made inside a trace carries its ids")
    func metadataFromTrace() {
        let outside = EventMetadata.current(id: EventID(high: 0, low: 1), time: 5)
        #expect(outside.traceID == nil)
        #expect(outside.correlationID == nil)
        let context = TraceContext.makeRoot(using: RandomSource(seed: 9))
        let inside = TraceContext.$current.withValue(context) {
            EventMetadata.current(id: EventID(high: 0, low: 2), time: 6)
        }
        #expect(inside.traceID == context.traceID)
        #expect(inside.spanID == context.spanID)
        #expect(inside.correlationID == context.correlationID)
        #expect(inside.time == 6)
    }
}

/// A store that hides some streams from `readAll`, as a per-service view of a shared store does.
final class HidingStore: ForwardingEventStore {
    let base: any EventStore = InMemoryEventStore()
    let readAllCalls = Lock(0)

    func readAll(from position: UInt64, limit: Int) async throws(EventStoreError) -> [RecordedEvent] {
        self.readAllCalls.withLock { $0 += 1 }
        return try await self.base.readAll(from: position, limit: .max).filter { !$0.stream.name.hasPrefix("hidden-") }
            .prefix(limit).map { $0 }
    }

}

@Suite("Subscriptions over a filtered view", .timeLimit(.minutes(2)))
struct FilteredSubscriptionTests {
    @Test("hidden positions are skipped without spinning")
    func hiddenPositions() async throws {
        let store = HidingStore()
        for index in 0..<5 {
            try await store.append(InMemoryEventStoreTests.event(index), to: "hidden-1")
        }
        try await withThrowingTaskGroup(of: [UInt64].self) { group in
            group.addTask {
                var positions: [UInt64] = []
                for try await event in store.subscribe(from: 0) {
                    positions.append(event.position)
                    if positions.count == 2 { break }
                }
                return positions
            }
            group.addTask {
                // Let the subscriber catch up with nothing visible and park before more arrive.
                await store.waitForHead(beyond: 4)
                try await store.append(InMemoryEventStoreTests.event(5), to: "hidden-1")
                try await store.append(InMemoryEventStoreTests.event(6), to: "shown-1")
                try await store.append(InMemoryEventStoreTests.event(7), to: "hidden-1")
                try await store.append(InMemoryEventStoreTests.event(8), to: "shown-1")
                return []
            }
            for try await positions in group where !positions.isEmpty {
                #expect(positions == [6, 8])
            }
        }
        #expect(store.readAllCalls.withLock { $0 } < 50, "the subscription polled instead of waiting")
    }
}

@Suite("Namespaced event store views", .timeLimit(.minutes(2)))
struct NamespacedEventStoreTests {
    @Test("a namespace's view passes the conformance checks", arguments: EventStoreConformance.checks)
    func conformance(_ check: EventStoreConformance.Check) async throws {
        try await check.run(on: NamespacedEventStore(namespace: "orders", base: InMemoryEventStore()))
    }

    @Test("namespaces share one log and see only their own streams")
    func isolation() async throws {
        let shared = InMemoryEventStore()
        let orders = NamespacedEventStore(namespace: "orders", base: shared)
        let billing = NamespacedEventStore(namespace: "billing", base: shared)
        try await orders.append(InMemoryEventStoreTests.event(0), to: "order-1", expecting: .noStream)
        try await billing.append(InMemoryEventStoreTests.event(1), to: "order-1", expecting: .noStream)
        try await orders.append(InMemoryEventStoreTests.event(2), to: "order-1", expecting: .exactly(0))

        #expect(try await orders.readStream("order-1").map(\.payload) == [Array("0".utf8), Array("2".utf8)])
        #expect(try await billing.readStream("order-1").map(\.payload) == [Array("1".utf8)])
        #expect(try await orders.readAll(from: 0, limit: 10).map(\.position) == [0, 2])
        #expect(try await billing.readAll(from: 0, limit: 10).map(\.position) == [1])
        #expect(try await orders.readAll(from: 0, limit: 10).allSatisfy { $0.stream == "order-1" })
        #expect(try await shared.readStream("orders/order-1").count == 2)

        var iterator = billing.subscribe(from: 0).makeAsyncIterator()
        #expect(try await iterator.next()?.position == 1)
        try await orders.append(InMemoryEventStoreTests.event(3), to: "order-2")
        try await billing.append(InMemoryEventStoreTests.event(4), to: "invoice-1")
        let next = try await iterator.next()
        #expect(next?.position == 4)
        #expect(next?.stream == "invoice-1")

        let conflict = await #expect(throws: EventStoreError.self) {
            try await orders.append(InMemoryEventStoreTests.event(5), to: "order-1", expecting: .noStream)
        }
        #expect(conflict?.stream == "order-1")
        #expect(conflict?.actualVersion == 1)
    }
}
