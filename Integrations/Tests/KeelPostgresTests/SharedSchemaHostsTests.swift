import Foundation
import Keel
import KeelCore
import KeelEventSourcing
import KeelPostgres
import KeelTesting
import PostgresNIO
import ShopServices
import Synchronization
import Testing

/// Two hosts on one PostgreSQL schema, each with its own stores (their own pools and listeners,
/// as two processes have): durable publications of one reach a durable subscription of the
/// other, in order, woken by `NOTIFY`, from the subscription's checkpoint after a restart.
@Suite("Hosts sharing a PostgreSQL schema", .enabled(if: PostgresTestEnvironment.isEnabled), .timeLimit(.minutes(2)))
struct SharedSchemaHostsTests {
    struct Shipped: DomainEvent, Equatable {
        static let eventType = "order.shipped"
        var order: Int
    }

    struct NotStarted: Error {}

    /// Publishes ``Shipped`` durably.
    actor Shipping: ServiceActor {
        static let name: ServiceName = "shipping"
        static let publishes: [any DomainEvent.Type] = [Shipped.self]
        private var environment: ServiceEnvironment?

        func start(_ environment: ServiceEnvironment) async throws {
            self.environment = environment
        }

        func ship(_ order: Int) async throws -> UInt64 {
            guard let environment = self.environment else { throw NotStarted() }
            return try await environment.publishDurably(Shipped(order: order)).positions.upperBound - 1
        }
    }

    /// Stands in for ``Shipping`` in the host where it does not run: its name and its publications.
    actor ShippingElsewhere: ServiceActor {
        static let name: ServiceName = "shipping"
        static let publishes: [any DomainEvent.Type] = [Shipped.self]
    }

    /// What a subscriber received: each order with its position.
    final class Received: Sendable {
        let deliveries = Mutex<[(order: Int, position: UInt64)]>([])
        var orders: [Int] { self.deliveries.withLock { $0.map(\.order) } }
        var positions: [UInt64] { self.deliveries.withLock { $0.map(\.position) } }
    }

    /// Subscribes durably to ``Shipped``.
    actor Mailer: ServiceActor {
        static let name: ServiceName = "mailer"
        let received: Received
        private(set) var subscription: DurableSubscription?

        init(_ received: Received) {
            self.received = received
        }

        func start(_ environment: ServiceEnvironment) async throws {
            let received = self.received
            self.subscription = try await environment.subscribeDurably(to: Shipped.self, name: "mails") {
                event,
                recorded in
                received.deliveries.withLock { $0.append((event.order, recorded.position)) }
            }
        }
    }

    /// One "process": its own event store and state store on `schema`, and a host over them.
    struct Node {
        let events: PostgresEventStore
        let state: PostgresStateStore
        let stateClient: PostgresClient
        let stateTask: Task<Void, Never>
        let host: ServiceHost

        static func start(schema: String, services: [any ServiceActor]) async throws -> Node {
            try await self.start(schema: schema) { host in
                for service in services { try await host.register(service) }
            }
        }

        static func start(schema: String, register: (ServiceHost) async throws -> Void) async throws -> Node {
            let events = try await PostgresEventStore.open(
                configuration: PostgresTestEnvironment.configuration(schema: schema)
            )
            let stateClient = PostgresClient(configuration: try PostgresTestEnvironment.clientConfiguration())
            let stateTask = Task { await stateClient.run() }
            let state = try await PostgresStateStore.open(client: stateClient, schema: schema)
            var configuration = ServiceHost.Configuration()
            configuration.storage = .stores(events: events, state: state, name: "postgres \(schema)")
            let host = ServiceHost(configuration: configuration)
            try await register(host)
            try await host.start()
            return Node(events: events, state: state, stateClient: stateClient, stateTask: stateTask, host: host)
        }

        func stop() async {
            await self.host.shutdown()
            await self.state.close()
            await self.events.close()
            self.stateTask.cancel()
            await self.stateTask.value
        }
    }

    @Test(
        "publications of one host reach the other's durable subscription in order, and after its restart, from its checkpoint"
    )
    func publicationsCrossProcesses() async throws {
        let schema = PostgresTestEnvironment.freshSchema("hosts")
        let shipping = Shipping()
        let publisher = try await Node.start(schema: schema, services: [shipping])
        let received = Received()
        let mailer = Mailer(received)
        var subscriber = try await Node.start(schema: schema, services: [ShippingElsewhere(), mailer])
        do {
            // 40 publications from 8 concurrent tasks: their positions interleave with the group commits.
            let last = try await withThrowingTaskGroup(of: UInt64.self) { group in
                for task in 0..<8 {
                    group.addTask {
                        var last: UInt64 = 0
                        for order in 0..<5 { last = max(last, try await shipping.ship(task * 5 + order)) }
                        return last
                    }
                }
                return try await group.reduce(0) { max($0, $1) }
            }
            let subscription = try #require(await mailer.subscription)
            try await subscription.waitUntilDelivered(through: last)
            #expect(Set(received.orders) == Set(0..<40))
            #expect(received.orders.count == 40)
            #expect(received.positions == received.positions.sorted())

            // The subscriber's process stops; the publisher goes on; a new subscriber process takes
            // up from the checkpoint.
            await subscriber.stop()
            var lastWhileDown: UInt64 = 0
            for order in 40..<50 { lastWhileDown = try await shipping.ship(order) }
            let again = Received()
            let restarted = Mailer(again)
            subscriber = try await Node.start(schema: schema, services: [ShippingElsewhere(), restarted])
            let resumed = try #require(await restarted.subscription)
            try await resumed.waitUntilDelivered(through: lastWhileDown)
            #expect(again.orders == Array(40..<50))
            // Live again: one more, woken by NOTIFY from the other process's store.
            let live = try await shipping.ship(50)
            try await resumed.waitUntilDelivered(through: live)
            #expect(again.orders.last == 50)
        } catch {
            await subscriber.stop()
            await publisher.stop()
            try? await PostgresTestEnvironment.dropSchema(schema)
            throw error
        }
        await subscriber.stop()
        await publisher.stop()
        try await PostgresTestEnvironment.dropSchema(schema)
    }

    @Test(
        "the shop's six services, unchanged, on PostgreSQL: an aggregate, its projection's read model and an order, across a restart"
    )
    func shopOnPostgres() async throws {
        let schema = PostgresTestEnvironment.freshSchema("shop")
        let register = { (host: ServiceHost) async throws in
            try await ShopAssembly.register(
                on: host,
                gateway: PaymentGateway(clock: host.clock, random: RandomSource(seed: 1)),
                payments: PaymentResilience(
                    clock: host.clock,
                    random: RandomSource(seed: 2),
                    telemetry: NoOpTelemetry()
                ),
                narrator: .silent
            )
        }
        let (name, email) = ("Edsger Dijkstra", "edsger@example.org")
        var node = try await Node.start(schema: schema, register: register)
        let receipt: CommandReceipt
        do {
            let client = node.host.client
            receipt = try await client.send(
                RegisterCustomer(aggregateID: "42", name: name, email: email)
            )
            let listed = try await client.send(
                CustomersByDomain(domain: "example.org", minimumPosition: receipt.position)
            )
            #expect(listed.map { [$0.id, $0.name, $0.email] } == [["42", name, email]])
            let order = try await client.send(PlaceOrder(userID: 42, lines: [OrderLine(sku: "mouse", quantity: 1)]))
            #expect(order.userID == 42)
        } catch {
            await node.stop()
            throw error
        }
        await node.stop()
        // A new "process": new stores on the same schema. The customer's events and the directory's
        // read model are where the first one left them.
        node = try await Node.start(schema: schema, register: register)
        do {
            let client = node.host.client
            let user = try await client.send(GetUser(id: 42))
            #expect(user.email == email)
            let listed = try await client.send(
                CustomersByDomain(domain: "example.org", minimumPosition: receipt.position)
            )
            #expect(listed.map { [$0.id, $0.name, $0.email] } == [["42", name, email]])
            let streams = Set(try await node.events.readAll(from: 0, limit: 1_000).map(\.stream.name))
            #expect(streams.contains("user/customer-42"))
            #expect(node.state.namespaces().contains("user/customer-directory"))
        } catch {
            await node.stop()
            throw error
        }
        await node.stop()
        try await PostgresTestEnvironment.dropSchema(schema)
    }
}
