import KeelCore
import KeelEventSourcing
import KeelTesting
import Testing

@testable import Keel

// The example of the article "CQRS with Keel" (DocC/Keel.docc/CQRSWithKeel.md), as the article
// shows it: change one and change the other.

// MARK: The order service: the command side, and its own read model

/// An order was placed: the order aggregate's one event.
struct OrderPlaced: DomainEvent, AggregateEvent {
    static let eventType = "order.placed"
    var customerID: String
    var totalCents: Int
}

enum OrderError: Error {
    case nothingToPay
}

/// An order, event-sourced in the order service's storage.
struct Order: Aggregate {
    static let category = "order"
    var customerID: String?
    var totalCents = 0

    mutating func apply(_ event: OrderPlaced) {
        self.customerID = event.customerID
        self.totalCents = event.totalCents
    }

    func place(for customerID: String, totalCents: Int) throws(OrderError) -> [OrderPlaced] {
        guard totalCents > 0 else { throw .nothingToPay }
        return [OrderPlaced(customerID: customerID, totalCents: totalCents)]
    }
}

/// Places order `aggregateID`.
struct PlaceOrder: CommandRequest {
    var aggregateID: String
    var customerID: String
    var totalCents: Int
}

/// One line of a customer's order list: a value of the read model.
struct OrderSummary: Codable, Sendable, Hashable {
    var orderID: String
    var totalCents: Int
}

/// The read model "orders by customer": `customer/<customer>/<order>` holds an `OrderSummary`.
struct OrdersByCustomer: Projection {
    let name = "orders-by-customer"
    let serializer: EventSerializer

    func apply(_ event: RecordedEvent, to transaction: inout ReadModelTransaction) async throws {
        guard event.type == OrderPlaced.eventType, let orderID = event.aggregateID else { return }
        let placed = try self.serializer.decode(event, as: OrderPlaced.self)
        try transaction.set(
            OrderSummary(orderID: orderID, totalCents: placed.totalCents),
            forKey: "customer/\(placed.customerID)/\(orderID)"
        )
    }
}

/// A customer's orders, from the read model once it includes `minimumPosition`.
struct OrdersOfCustomer: QueryRequest {
    typealias Response = [OrderSummary]
    var customerID: String
    var minimumPosition: UInt64?
}

actor OrderService: ServiceActor {
    static let name: ServiceName = "orders"
    /// Its orders' events cross its boundary: other services may subscribe to them durably.
    static let publishes: [any DomainEvent.Type] = [OrderPlaced.self]
    private let orders: AggregateRepository<Order>
    private let ordersByCustomer: ProjectionRunner

    /// Built by the host when the service starts, on the service's own storage.
    init(environment: ServiceEnvironment) async throws {
        let storage = try await environment.storage()
        let serializer = EventSerializer(registry: EventTypeRegistry([OrderPlaced.self]))
        self.orders = try await environment.makeRepository(serializer: serializer)
        self.ordersByCustomer = ProjectionRunner(
            projection: OrdersByCustomer(serializer: serializer),
            eventStore: storage.events,
            projectionStore: ProjectionStore(keyValueStore: try await storage.keyValues(named: "orders-by-customer")),
            clock: environment.clock,
            random: environment.random
        )
    }

    nonisolated func registerHandlers(_ handlers: inout RequestHandlers<OrderService>) {
        handlers.command(PlaceOrder.self, repository: { $0.orders }, expecting: .new) { order, request in
            try order.place(for: request.customerID, totalCents: request.totalCents)
        }
        handlers.query(OrdersOfCustomer.self, runner: { $0.ordersByCustomer }) { store, request in
            try await store.values(OrderSummary.self, withPrefix: "customer/\(request.customerID)/").map(\.value)
        }
    }

    func start(_ environment: ServiceEnvironment) async throws {
        await self.ordersByCustomer.start()
    }

    func stop() async throws {
        await self.ordersByCustomer.stop()
    }
}

// MARK: The loyalty service: a durable subscriber, and a durable publisher

/// Points were awarded for an order.
struct PointsAwarded: DomainEvent {
    static let eventType = "loyalty.points-awarded"
    var customerID: String
    var orderID: String
    var points: Int
}

/// A customer's loyalty account, in the loyalty service's key-value storage.
struct LoyaltyAccount: Codable, Sendable {
    var points = 0
    /// The orders counted already.
    var orders: Set<String> = []
}

/// A customer's points, once the loyalty service has handled every order up to `minimumPosition`.
struct PointsBalance: QueryRequest {
    typealias Response = Int
    var customerID: String
    var minimumPosition: UInt64?
}

actor LoyaltyService: ServiceActor {
    static let name: ServiceName = "loyalty"
    static let publishes: [any DomainEvent.Type] = [PointsAwarded.self]
    private var environment: ServiceEnvironment?
    private var accounts: StateNamespace?
    private var placedOrders: DurableSubscription?

    nonisolated func registerHandlers(_ handlers: inout RequestHandlers<LoyaltyService>) {
        handlers.on(PointsBalance.self) { service, request in
            try await service.balance(request)
        }
    }

    func start(_ environment: ServiceEnvironment) async throws {
        self.environment = environment
        self.accounts = try await environment.storage().keyValues(named: "accounts")
        self.placedOrders = try await environment.subscribeDurably(
            to: OrderPlaced.self,
            name: "points-for-orders"
        ) { [self] placed, recorded in
            try await self.award(placed, recorded)
        }
    }

    /// Awards an order's points and announces it. Called at least once per order: a second call
    /// for one order counts nothing and announces it again.
    @discardableResult
    func award(_ placed: OrderPlaced, _ recorded: RecordedEvent) async throws -> AppendResult {
        guard let environment = self.environment, let accounts = self.accounts,
            let orderID = recorded.aggregateID
        else { throw CQRSHandlerError(service: Self.name, request: "award", message: "not started") }
        let key = "account/\(placed.customerID)"
        let points = placed.totalCents / 100
        // The subscription delivers one event at a time: no other award runs between this read
        // and the write below.
        var account = try await accounts.value(LoyaltyAccount.self, forKey: key) ?? LoyaltyAccount()
        if !account.orders.contains(orderID) {
            account.orders.insert(orderID)
            account.points += points
            try await accounts.set(account, forKey: key)
        }
        // After the state change, on every delivery: a crash before this line delivers the order
        // again, and the second delivery publishes what the first did not.
        return try await environment.publishDurably(
            PointsAwarded(customerID: placed.customerID, orderID: orderID, points: points)
        )
    }

    private func balance(_ request: PointsBalance) async throws -> Int {
        guard let accounts = self.accounts, let placedOrders = self.placedOrders else {
            throw CQRSHandlerError(service: Self.name, request: PointsBalance.name, message: "not started")
        }
        if let position = request.minimumPosition {
            try await placedOrders.waitUntilDelivered(through: position)
        }
        return try await accounts.value(LoyaltyAccount.self, forKey: "account/\(request.customerID)")?.points ?? 0
    }
}

// MARK: The mailer: another durable subscriber

actor Mailer: ServiceActor {
    static let name: ServiceName = "mailer"
    /// The mails sent, by order: stands for the mail server.
    private(set) var mailed: [String: PointsAwarded] = [:]
    private(set) var subscription: DurableSubscription?

    func start(_ environment: ServiceEnvironment) async throws {
        self.subscription = try await environment.subscribeDurably(
            to: PointsAwarded.self,
            name: "points-mails"
        ) { [self] awarded, _ in
            await self.mail(awarded)
        }
    }

    private func mail(_ awarded: PointsAwarded) {
        guard self.mailed[awarded.orderID] == nil else { return }  // delivered again: sent already
        self.mailed[awarded.orderID] = awarded
    }
}

// MARK: The tests

@Suite("The CQRS article's example", .timeLimit(.minutes(2)))
struct CQRSArticleTests {
    /// The order service, built by the host when it starts.
    static func registerOrders(_ host: ServiceHost) async throws {
        try await host.register { environment in try await OrderService(environment: environment) }
    }

    @Test("a command, then read-your-writes in its service's read model and in another service")
    func readYourWrites() async throws {
        try await TestHost.with(LoyaltyService(), Mailer(), register: Self.registerOrders) { test in
            let receipt = try await test.client.send(
                PlaceOrder(aggregateID: "o-1", customerID: "ada", totalCents: 4_200)
            )
            #expect(receipt.aggregateID == "o-1")
            #expect(receipt.version == 0)
            let position = try #require(receipt.position)

            let orders = try await test.client.send(OrdersOfCustomer(customerID: "ada", minimumPosition: position))
            #expect(orders == [OrderSummary(orderID: "o-1", totalCents: 4_200)])

            let points = try await test.client.send(PointsBalance(customerID: "ada", minimumPosition: position))
            #expect(points == 42)
        }
    }

    @Test("a second order, read at its own position in both services")
    func secondOrder() async throws {
        try await TestHost.with(LoyaltyService(), Mailer(), register: Self.registerOrders) { test in
            _ = try await test.client.send(PlaceOrder(aggregateID: "o-1", customerID: "ada", totalCents: 4_200))
            let second = try await test.client.send(
                PlaceOrder(aggregateID: "o-2", customerID: "ada", totalCents: 1_050)
            )
            let secondPosition = try #require(second.position)
            #expect(
                try await test.client.send(OrdersOfCustomer(customerID: "ada", minimumPosition: secondPosition))
                    == [
                        OrderSummary(orderID: "o-1", totalCents: 4_200),
                        OrderSummary(orderID: "o-2", totalCents: 1_050),
                    ]
            )
            #expect(try await test.client.send(PointsBalance(customerID: "ada", minimumPosition: secondPosition)) == 52)
        }
    }

    @Test("the order id reaches a subscriber in another service, where stream names carry the writer's namespace")
    func aggregateIDAcrossServices() async throws {
        let mailer = Mailer()
        try await TestHost.with(LoyaltyService(), mailer, register: Self.registerOrders) { test in
            let receipt = try await test.client.send(
                PlaceOrder(aggregateID: "o-7f3a-1", customerID: "grace", totalCents: 999)
            )
            _ = try await test.client.send(PointsBalance(customerID: "grace", minimumPosition: receipt.position))
            let subscription = try #require(await mailer.subscription)
            let published = try await subscription.publications()
            #expect(published.map(\.stream) == ["loyalty/$outbox"])
            try await subscription.waitUntilDelivered(through: try #require(published.last).position)
            let mail = await mailer.mailed["o-7f3a-1"]
            #expect(mail?.customerID == "grace")
            #expect(mail?.points == 9)
        }
    }

    @Test("a redelivered order counts its points once; its announcement goes out again and is mailed once")
    func redeliveryIsIdempotent() async throws {
        let loyalty = LoyaltyService()
        let mailer = Mailer()
        try await TestHost.with(loyalty, mailer, register: Self.registerOrders) { test in
            let receipt = try await test.client.send(
                PlaceOrder(aggregateID: "o-1", customerID: "ada", totalCents: 4_200)
            )
            let position = try #require(receipt.position)
            #expect(try await test.client.send(PointsBalance(customerID: "ada", minimumPosition: position)) == 42)

            // The same event again, as a restart delivers it after a crash before the
            // subscription's checkpoint.
            var metadata = EventMetadata(id: EventID(high: 1, low: 1), time: 0)
            metadata.aggregateID = "o-1"
            let again = RecordedEvent(
                stream: "orders/order-o-1",
                version: 0,
                position: position,
                data: EventData(type: OrderPlaced.eventType, metadata: metadata, payload: [])
            )
            let announced = try await loyalty.award(OrderPlaced(customerID: "ada", totalCents: 4_200), again)
            #expect(try await test.client.send(PointsBalance(customerID: "ada", minimumPosition: position)) == 42)

            let subscription = try #require(await mailer.subscription)
            try await subscription.waitUntilDelivered(through: announced.positions.lowerBound)
            #expect(try await subscription.publications().map(\.state) == [.completed, .completed])
            #expect(await mailer.mailed.count == 1)

            // A position from another service's write: the order service's read model has read
            // past it (it holds no event of the loyalty service), so the query answers at once.
            let orders = try await test.client.send(
                OrdersOfCustomer(customerID: "ada", minimumPosition: announced.positions.lowerBound)
            )
            #expect(orders.map(\.orderID) == ["o-1"])
        }
    }

    @Test("a refused command writes nothing, so nothing is published and no points are awarded")
    func refusedCommand() async throws {
        try await TestHost.with(LoyaltyService(), Mailer(), register: Self.registerOrders) { test in
            let first = try await test.client.send(PlaceOrder(aggregateID: "o-1", customerID: "ada", totalCents: 100))
            let twice = await #expect(throws: RequestError.self) {
                try await test.client.send(PlaceOrder(aggregateID: "o-1", customerID: "ada", totalCents: 9_900))
            }
            #expect(twice?.code == .handlerFailed)
            #expect((twice?.underlying as? AggregateError)?.code == .alreadyExists)
            let free = await #expect(throws: RequestError.self) {
                try await test.client.send(PlaceOrder(aggregateID: "o-2", customerID: "ada", totalCents: 0))
            }
            #expect(free?.underlying is OrderError)
            #expect(try await test.client.send(PointsBalance(customerID: "ada", minimumPosition: first.position)) == 1)
            let orders = try await test.client.send(
                OrdersOfCustomer(customerID: "ada", minimumPosition: first.position)
            )
            #expect(orders == [OrderSummary(orderID: "o-1", totalCents: 100)])
        }
    }
}
