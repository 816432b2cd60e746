import Foundation
import KeelCore
import KeelEventSourcing
import KeelTesting
import Testing

@testable import Keel

/// A service gets exactly its capabilities: a bus that speaks only for it, a registry it can
/// only read, durable publications only of what it declares, and the host's one wall clock.
@Suite("Service capabilities", .timeLimit(.minutes(2)))
struct ServiceCapabilitiesTests {
    struct Ping: Event {
        static let topic = "test.ping"
        var number: Int
    }

    struct Refused: Error {}

    /// A service that keeps its environment, so that the test can use it as the service would.
    actor Keeper: ServiceActor {
        static let name: ServiceName = "keeper"
        private(set) var environment: ServiceEnvironment?

        func start(_ environment: ServiceEnvironment) async throws {
            self.environment = environment
        }
    }

    /// Another service, whose subscription fails every event.
    actor Neighbour: ServiceActor {
        static let name: ServiceName = "neighbour"

        func start(_ environment: ServiceEnvironment) async throws {
            try environment.bus.subscribe(to: Ping.self, options: SubscriptionOptions(redelivery: .none)) { _, _ in
                throw Refused()
            }
        }
    }

    // MARK: The bus and the registry a service sees

    /// The whole API of ``ServiceBus`` and ``ReadOnlyRegistry``, used. What they leave out of
    /// ``EventBus`` and ``ServiceRegistry`` does not compile through them: `shutdown()`,
    /// `cancelSubscriptions(ownedBy:)`, `publish(_:source:)`, `subscribe(…, owner:, …)`, the
    /// bus's every subscription and dead letter, `setHealth(_:for:)`, `choose(_:)`.
    @Test("a service's bus publishes as it, subscribes for it, and manages only its own dead letters")
    func serviceBusSpeaksOnlyForItsService() async throws {
        let keeper = Keeper()
        try await TestHost.with(keeper, Neighbour()) { test in
            let environment = try #require(await keeper.environment)
            let bus: ServiceBus = environment.bus
            #expect(bus.service == "keeper")

            let failures = HostFixtures.Values<Int>()
            let typed = try bus.subscribe(to: Ping.self, options: SubscriptionOptions(redelivery: .none)) {
                event,
                _ in
                // Fails the first time each event comes, succeeds when it is replayed.
                if !failures.all.contains(event.number) {
                    failures.append(event.number)
                    throw Refused()
                }
            }
            let patterned = try bus.subscribe(pattern: "test.#") { _, _ in }
            #expect(typed.owner == "keeper" && typed.name == "keeper:test.ping")
            #expect(patterned.owner == "keeper" && patterned.name == "keeper:test.#")
            // Its own subscriptions only: not the neighbour's, not the test's recorder.
            #expect(bus.subscriptions == [typed, patterned])
            #expect(test.bus.subscriptions.count == 4)

            let receipt = try await bus.publish(Ping(number: 1))
            #expect(receipt.subscribers == 4)
            await test.host.waitUntilIdle()
            let published = try #require(test.events.records.first { $0.envelope.id == receipt.id })
            #expect(published.envelope.source == "keeper")

            // Two dead letters on the bus, one of them the keeper's.
            #expect(test.bus.deadLetters.count == 2)
            #expect(bus.deadLetters.map(\.subscription) == [typed.id])
            #expect(await bus.replayDeadLetters() == 1)
            await test.host.waitUntilIdle()
            #expect(bus.deadLetters.isEmpty)
            #expect(test.bus.deadLetters.map(\.subscriptionName) == ["neighbour:test.ping"])
            #expect(bus.removeDeadLetters { _ in true }.isEmpty)
            #expect(test.bus.deadLetters.count == 1)

            // Through the environment's shortcuts too.
            let shortcut = try await environment.publish(Ping(number: 2))
            await test.host.waitUntilIdle()
            #expect(test.events.records.first { $0.envelope.id == shortcut.id }?.envelope.source == "keeper")
        }
    }

    @Test("a service's registry reads instances and health, and changes nothing")
    func readOnlyRegistry() async throws {
        let keeper = Keeper()
        try await TestHost.with(keeper, Neighbour()) { test in
            let registry: ReadOnlyRegistry = try #require(await keeper.environment).registry
            #expect(registry.services == ["keeper", "neighbour"])
            let neighbour = InstanceID(service: "neighbour", index: 0)
            #expect(registry.instances(of: "neighbour").map(\.id) == [neighbour])
            #expect(registry.health(of: neighbour) == .healthy)
            #expect(registry.health(of: InstanceID(service: "nobody", index: 0)) == nil)
            await registry.waitForHealth(of: neighbour) { $0.isServing }
            // The operator's registry is the one that changes health; the view sees it.
            test.host.registry.setHealth(.notReady("draining"), for: neighbour)
            #expect(registry.health(of: neighbour) == .notReady("draining"))
        }
    }

    // MARK: Declared publications

    /// The event other services may subscribe to.
    struct OrderShipped: DomainEvent, AggregateEvent {
        static let eventType = "order.shipped"
        var orderID: Int
    }

    /// A private event of another service that happens to have the same type name.
    struct CrateShipped: DomainEvent, AggregateEvent {
        static let eventType = "order.shipped"
        var orderID: Int
    }

    struct Parcel: Aggregate {
        static let category = "parcel"
        var shipped = false
        mutating func apply(_ event: OrderShipped) { self.shipped = true }
    }

    struct Crate: Aggregate {
        static let category = "crate"
        var shipped = false
        mutating func apply(_ event: CrateShipped) { self.shipped = true }
    }

    /// Declares `OrderShipped`: its parcels' events and its outbox cross its boundary.
    actor Shipping: ServiceActor {
        static let name: ServiceName = "shipping"
        static let publishes: [any DomainEvent.Type] = [OrderShipped.self]
        private(set) var environment: ServiceEnvironment?

        func start(_ environment: ServiceEnvironment) async throws {
            self.environment = environment
        }

        func ship(_ order: Int) async throws -> UInt64 {
            guard let environment = self.environment else { throw Refused() }
            let parcels = try await environment.makeRepository(
                Parcel.self,
                serializer: EventSerializer(registry: EventTypeRegistry([OrderShipped.self]))
            )
            let saved = try await parcels.execute(String(order), expecting: .new) { _ in [OrderShipped(orderID: order)]
            }
            return saved.positions.upperBound - 1
        }
    }

    /// Declares nothing: its crates' events are its own, whatever their type name.
    actor Warehouse: ServiceActor {
        static let name: ServiceName = "warehouse"
        private(set) var environment: ServiceEnvironment?

        func start(_ environment: ServiceEnvironment) async throws {
            self.environment = environment
        }

        func ship(_ order: Int) async throws -> UInt64 {
            guard let environment = self.environment else { throw Refused() }
            let crates = try await environment.makeRepository(
                Crate.self,
                serializer: EventSerializer(registry: EventTypeRegistry([CrateShipped.self]))
            )
            let saved = try await crates.execute(String(order), expecting: .new) { _ in [CrateShipped(orderID: order)] }
            return saved.positions.upperBound - 1
        }
    }

    /// Subscribes durably to `OrderShipped`.
    actor Mailer: ServiceActor {
        static let name: ServiceName = "mailer"
        let delivered = HostFixtures.Values<String>()
        private(set) var subscription: DurableSubscription?

        func start(_ environment: ServiceEnvironment) async throws {
            let delivered = self.delivered
            self.subscription = try await environment.subscribeDurably(to: OrderShipped.self, name: "mails") {
                event,
                recorded in
                delivered.append("\(event.orderID) from \(recorded.stream)")
            }
        }
    }

    @Test("a private aggregate event with a declared event's type name is not delivered; the declared one is")
    func onlyDeclaredEventsCrossTheBoundary() async throws {
        let shipping = Shipping()
        let warehouse = Warehouse()
        let mailer = Mailer()
        try await TestHost.with(shipping, warehouse, mailer) { _ in
            let privatePosition = try await warehouse.ship(1)
            let declaredPosition = try await shipping.ship(2)
            let subscription = try #require(await mailer.subscription)
            try await subscription.waitUntilDelivered(through: max(privatePosition, declaredPosition))
            #expect(mailer.delivered.all == ["2 from shipping/parcel-2"])
            #expect(try await subscription.publications().map(\.position) == [declaredPosition])
        }
    }

    /// Subscribes durably to a type nobody declares.
    actor Eavesdropper: ServiceActor {
        static let name: ServiceName = "eavesdropper"

        func start(_ environment: ServiceEnvironment) async throws {
            _ = try await environment.subscribeDurably(to: CrateShipped.self, name: "crates") { _, _ in }
        }
    }

    @Test("a durable subscription to a type no service declares fails the start with undeclaredPublication")
    func subscriptionToUndeclaredTypeIsRefused() async throws {
        let error = await #expect(throws: HostError.self) {
            try await TestHost.with(Warehouse(), Eavesdropper()) { _ in }
        }
        #expect(error?.code == .startFailed)
        let cause = try #require(error?.underlying as? HostError)
        #expect(cause.code == .undeclaredPublication)
        #expect(cause.services == ["eavesdropper"])
    }

    @Test("publishing durably a type the service does not declare throws undeclaredPublication")
    func undeclaredPublicationIsRefused() async throws {
        let keeper = Keeper()
        try await TestHost.with(keeper, Shipping()) { _ in
            let environment = try #require(await keeper.environment)
            let error = await #expect(throws: HostError.self) {
                try await environment.publishDurably(OrderShipped(orderID: 1))
            }
            #expect(error?.code == .undeclaredPublication)
            #expect(error?.services == ["keeper"])
        }
    }

    // MARK: One wall clock

    @Test("a host's fixed wall clock is the time of bus envelopes, durable publications and aggregate events")
    func oneWallClock() async throws {
        let nanoseconds: Int64 = 1_700_000_000_000_000_000
        var configuration = TestHost.defaultConfiguration
        configuration.wallClock = .fixed(nanosecondsSinceEpoch: nanoseconds)
        let shipping = Shipping()
        let mailer = Mailer()
        try await TestHost.with(shipping, mailer, configuration: configuration) { test in
            let environment = try #require(await shipping.environment)
            #expect(environment.wallClock.nanosecondsSinceEpoch() == nanoseconds)

            let receipt = try await environment.publish(Ping(number: 1))
            await test.host.waitUntilIdle()
            let envelope = try #require(test.events.records.first { $0.envelope.id == receipt.id }?.envelope)
            #expect(envelope.time == Date(timeIntervalSince1970: 1_700_000_000))

            let aggregatePosition = try await shipping.ship(1)
            let published = try await environment.publishDurably(OrderShipped(orderID: 2))
            let subscription = try #require(await mailer.subscription)
            try await subscription.waitUntilDelivered(through: published.positions.upperBound - 1)
            let log = try await test.host.storage.sharedStore().readAll(from: aggregatePosition, limit: 10)
            let shipped = log.filter { $0.type == OrderShipped.eventType }
            #expect(shipped.map(\.stream) == ["shipping/parcel-1", "shipping/$outbox"])
            #expect(shipped.map(\.metadata.time) == [nanoseconds, nanoseconds])
        }
    }

    @Test("a test clock's wall clock moves with it")
    func testClockWallClock() {
        let clock = TestClock()
        let wallClock = clock.wallClock(startingAt: 1_000)
        #expect(wallClock.nanosecondsSinceEpoch() == 1_000)
        clock.advance(by: .milliseconds(1500))
        #expect(wallClock.nanosecondsSinceEpoch() == 1_000 + 1_500_000_000)
        #expect(WallClock.fixed(nanosecondsSinceEpoch: 2_000_000_000).date() == Date(timeIntervalSince1970: 2))
    }
}
