import KeelCore
import KeelEventSourcing
import KeelTesting
import Testing

@testable import Keel

/// Hosts given stores the application opened (``StorageLocation/stores(events:state:name:)``):
/// the services' namespaces in them, durable publications of one host reaching the durable
/// subscriptions of another, and the stores left open when the hosts shut down.
@Suite("Shared stores", .timeLimit(.minutes(2)))
struct SharedStoresTests {
    private typealias Shipping = DurableSubscriptionTests.Shipping
    private typealias Mailer = DurableSubscriptionTests.Mailer
    private typealias Deliveries = DurableSubscriptionTests.Deliveries

    /// Stands in for ``DurableSubscriptionTests/Shipping`` in a host where it does not run: the
    /// same name and the same declared publications, and nothing else.
    private actor ShippingElsewhere: ServiceActor {
        static let name: ServiceName = "shipping"
        static let publishes: [any DomainEvent.Type] = [DurableSubscriptionTests.OrderShipped.self]
    }

    @Test("durable publications of one host reach the durable subscription of another host on the same stores")
    func publicationsCrossHosts() async throws {
        let events = InMemoryEventStore()
        let state = InMemoryStateStore()
        var configuration = TestHost.defaultConfiguration
        configuration.storage = .stores(events: events, state: state, name: "shared in-memory stores")
        #expect(configuration.storage.description == "shared in-memory stores")
        let shipping = Shipping()
        let deliveries = Deliveries()
        let mailer = Mailer(deliveries)
        try await TestHost.with(services: [shipping], configuration: configuration) { _ in
            try await TestHost.with(services: [ShippingElsewhere(), mailer], configuration: configuration) { _ in
                let subscription = try #require(await mailer.subscription)
                var last: UInt64 = 0
                for order in 1...5 {
                    last = try await shipping.ship(order).positions.upperBound - 1
                }
                try await subscription.waitUntilDelivered(through: last)
                #expect(deliveries.orders == [1, 2, 3, 4, 5])
            }
        }
        // The publications sit in the publisher's namespace of the shared store, and the stores
        // outlive both hosts.
        let streams = Set(try await events.readAll(from: 0, limit: 100).map(\.stream.name))
        #expect(streams.allSatisfy { $0.hasPrefix("shipping/") })
        try await events.append(ServiceStorageTests.event("after the hosts"), to: "still-open")
        #expect(try await events.streamVersion("still-open") == 0)
        #expect(state.namespaces().contains { $0.hasPrefix("mailer/durable-") })
        try await state.namespace("after-the-hosts").put([1], forKey: "k")
    }

    @Test("a service's storage on given stores is namespaced as on the host's own")
    func namespaced() async throws {
        let events = InMemoryEventStore()
        var configuration = TestHost.defaultConfiguration
        configuration.storage = .stores(events: events, state: InMemoryStateStore(), name: "given")
        let notes = ServiceStorageTests.Notes()
        try await TestHost.with(services: [notes], configuration: configuration) { _ in
            let storage = try await notes.storage()
            try await storage.events.append(ServiceStorageTests.event("one"), to: "s-1")
            try await storage.keyValues.put([7], forKey: "k")
            #expect(try await storage.keyValues.value(forKey: "k") == [7])
        }
        #expect(try await events.streamVersion("notes/s-1") == 0)
    }

    @Test("two locations are equal only when made by the same call")
    func identity() {
        let events = InMemoryEventStore()
        let state = InMemoryStateStore()
        let one = StorageLocation.stores(events: events, state: state, name: "a")
        let two = StorageLocation.stores(events: events, state: state, name: "a")
        #expect(one == one)
        #expect(one != two)
        #expect(Set([one, two, one]).count == 2)
    }
}
