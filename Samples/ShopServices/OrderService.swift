import Keel
import KeelCore
import KeelEventSourcing
import KeelResilience
import KeelSagas

/// Why the order service refused an order, or could not find one, in the shop's own words.
///
/// It reaches a caller of ``PlaceOrder`` or ``GetOrder`` as the `underlying` error of a Keel
/// `RequestError` with code `handlerFailed`.
public enum OrderError: Error, CustomStringConvertible {
    /// The order has no lines.
    case emptyOrder
    /// A line asks for fewer than one unit.
    case invalidQuantity(sku: String, quantity: Int)
    /// No customer has this id.
    case unknownUser(id: Int)
    /// The catalog has no product with this SKU.
    case unknownProduct(sku: String)
    /// The inventory has fewer units than a line asks for; nothing was reserved.
    case outOfStock(sku: String, requested: Int, available: Int)
    /// The payment service did not charge the customer, or the payment route refused the charge:
    /// the `ChargePayment` request's error, whose code says why (`circuitOpen`, `bulkheadFull`,
    /// `deadlineExceeded`, or `handlerFailed` when the gateway said no). The order's saga released
    /// the reserved stock.
    case paymentFailed(RequestError)
    /// The order's saga could neither finish nor undo what it did, and waits for an operator.
    case needsIntervention(String)
    /// Another service failed for a reason that is not the customer's (a deadline, a shutdown…).
    case upstream(RequestError)
    /// No order has this id (``GetOrder``).
    case unknownOrder(id: Int)

    /// The refusal in a sentence.
    public var description: String {
        switch self {
        case .emptyOrder: "the order has no lines"
        case .invalidQuantity(let sku, let quantity): "\(quantity) × \(sku): a line needs at least one unit"
        case .unknownOrder(let id): "there is no order with id \(id)"
        case .unknownUser(let id): "there is no customer with id \(id)"
        case .unknownProduct(let sku): "the shop does not sell \"\(sku)\""
        case .outOfStock(let sku, let requested, let available):
            "\(requested) × \(sku) requested, but only \(available) left in stock"
        case .paymentFailed(let error): "the payment did not go through: \(Self.describePayment(error))"
        case .upstream(let error): "another service failed: \(error)"
        case .needsIntervention(let what): "the order needs an operator: \(what)"
        }
    }

    /// The payment failure in a few words: the `ChargePayment` request's code and its cause.
    private static func describePayment(_ error: RequestError) -> String {
        let cause =
            switch error.underlying {
            case let rejection as CircuitBreakerError:
                "CircuitBreakerError.\(rejection.code) (breaker '\(rejection.breakerName)')"
            case let rejection as BulkheadError:
                "BulkheadError, \(rejection.code) (bulkhead '\(rejection.bulkhead)')"
            case let timeout as TimeoutError:
                "TimeoutError, no answer within \(milliseconds(timeout.timeout))"
            case let underlying?:
                "\(underlying)"
            case nil:
                error.message
            }
        return "ChargePayment \(error.code), cause: \(cause)"
    }
}

/// Places orders: validates the customer, prices the lines, reserves the stock, charges the
/// customer, records the order and tells everyone who listens.
///
/// Placing an order is a saga (``PlaceOrderSaga``), journaled in the service's own storage: when
/// the charge fails, the saga releases the reservation it made, and a saga interrupted by a crash
/// is resumed when the service starts again.
///
/// Shipping an order (``ShipOrder``) is a choreography instead: the service publishes
/// `order.ready-to-ship` durably, and its delivery process manager (``DeliveryProcess``) takes it
/// from there, on events from the shipping and payment services.
///
/// It reaches the other services only by request, through `environment.send`, and only those it
/// declares in `dependencies`; a request to any other service fails with `undeclaredDependency`.
package actor OrderService: ServiceActor {
    package static let name: ServiceName = "order"
    package static let dependencies: [ServiceName] = [
        UserService.name, CatalogService.name, InventoryService.name, PaymentService.name, ShippingService.name,
    ]
    package static let publishes: [any DomainEvent.Type] = [
        OrderReadyToShip.self, OrderShipped.self, OrderCancelled.self,
    ]

    /// The orders placed so far, by id.
    private var orders: [Int: Order] = [:]
    /// Runs the orders' sagas; made at start, on the service's storage.
    private var sagas: SagaRunner?
    /// Makes each saga's id unique, with the time the service started.
    private var sagaCount = 0
    private var startTime: Int64 = 0
    /// Ships orders; made at start, on the service's storage (`nil` before).
    package private(set) var deliveries: ProcessManagerRunner<DeliveryProcess>?
    /// The orders whose delivery has started, in this run.
    private var shipping: Set<Int> = []
    /// How long a courier has to answer a booking.
    private let courierTimeout: Duration
    /// Where the service tells what it does.
    private let say: Narrator

    /// Creates the service, with no orders yet (orders live in memory only).
    /// - Parameters:
    ///   - courierTimeout: How long a courier has to answer a booking before the delivery process
    ///     manager gives up on it and cancels the order.
    ///   - narrator: Where the service tells what it does.
    package init(courierTimeout: Duration = .seconds(60), narrator: Narrator = .standardOutput) {
        self.courierTimeout = courierTimeout
        self.say = narrator
    }

    package nonisolated func registerHandlers(_ handlers: inout RequestHandlers<OrderService>) {
        // The three-argument form hands the handler the environment the service was started with.
        handlers.on(PlaceOrder.self) { service, request, environment in
            try await service.place(request, in: environment)
        }
        handlers.on(GetOrder.self) { service, request in
            guard let order = service.orders[request.id] else { throw OrderError.unknownOrder(id: request.id) }
            return order
        }
        handlers.on(ShipOrder.self) { service, request, environment in
            try await service.ship(request.orderID, in: environment)
        }
    }

    package func start(_ environment: ServiceEnvironment) async throws {
        let sagas = try await SagaRunner.make(environment)
        sagas.register(PlaceOrderSaga(environment: environment, narrator: self.say))
        // A saga a crash interrupted goes on (or compensates) from where its journal stops.
        let resumed = try await sagas.recover()
        if !resumed.isEmpty {
            say(Self.name, "resuming \(resumed.count) interrupted order saga(s)")
        }
        self.sagas = sagas
        self.startTime = environment.wallClock.nanosecondsSinceEpoch()
        // Deliveries a restart interrupted go on: their timeouts and undelivered effects are in
        // the service's storage, and their subscriptions resume where they left off.
        let deliveries = ProcessManagerRunner(DeliveryProcess(courierTimeout: self.courierTimeout))
        try await deliveries.start(in: environment)
        self.deliveries = deliveries
    }

    package func stop() async throws {
        await self.deliveries?.stop()
        await self.sagas?.shutdown()
        say(Self.name, "stopped (\(self.orders.count) orders on record)")
    }

    /// Places an order, or publishes `order.rejected` and throws an `OrderError` saying why not.
    private func place(_ request: PlaceOrder, in environment: ServiceEnvironment) async throws(OrderError) -> Order {
        say(Self.name, "customer \(request.userID) orders \(describe(request.lines))")
        do {
            return try await self.place(request, environment: environment)
        } catch {
            say(Self.name, "refused: \(error)")
            do {
                try await environment.publish(OrderRejected(userID: request.userID, reason: error.description))
            } catch {
                say(Self.name, "could not publish \(OrderRejected.topic): \(error)")
            }
            throw error
        }
    }

    private func place(_ request: PlaceOrder, environment: ServiceEnvironment) async throws(OrderError) -> Order {
        guard !request.lines.isEmpty else { throw .emptyOrder }
        if let line = request.lines.first(where: { $0.quantity < 1 }) {
            throw .invalidQuantity(sku: line.sku, quantity: line.quantity)
        }
        guard let sagas = self.sagas else { throw .needsIntervention("the order service has not started") }

        // Steps 1–4 (validate, price, reserve, charge) are the saga's. Its id is unique across runs
        // of the shop: the service's start time and a count.
        self.sagaCount += 1
        let sagaID = "\(self.startTime)-\(self.sagaCount)"
        let placed: PlaceOrderSaga.Placed
        do {
            switch try await sagas.run(
                PlaceOrderSaga(environment: environment, narrator: self.say),
                id: sagaID,
                input: request
            ) {
            case .completed(let output):
                placed = output
            case .compensated(let cause):
                throw Self.refusal(cause)
            case .needsIntervention(let intervention):
                throw OrderError.needsIntervention(intervention.description)
            }
        } catch let error as OrderError {
            throw error
        } catch {
            throw .needsIntervention("\(error)")
        }

        // 5. Record the order. The id is chosen and the order stored with no `await` in between,
        //    so concurrent `place` calls, which interleave on this actor at every `await` above,
        //    never share an id.
        let order = Order(
            id: self.orders.count + 1,
            userID: request.userID,
            items: placed.items,
            reservationID: placed.reservationID,
            paymentID: placed.paymentID
        )
        self.orders[order.id] = order
        say(Self.name, "created order #\(order.id), total \(dollars(order.totalCents))")

        // 6. Tell whoever listens. `publish` returns once subscribers' mailboxes have the event;
        //    it does not wait for their handlers. (If it fails, the order stands but nobody hears
        //    of it: a durable publication from the outbox would close that gap.)
        do {
            try await environment.publish(
                OrderCreated(orderID: order.id, userID: order.userID, items: order.items, totalCents: order.totalCents)
            )
        } catch {
            say(Self.name, "could not publish \(OrderCreated.topic): \(error)")
        }
        return order
    }

    /// Starts the delivery of order `id`: publishes `order.ready-to-ship` durably, once per order.
    /// - Returns: Whether this call started it (`false` when it had started already).
    private func ship(_ id: Int, in environment: ServiceEnvironment) async throws -> Bool {
        guard let order = self.orders[id] else { throw OrderError.unknownOrder(id: id) }
        // Marked before the `await`, so that a second request for the same order, interleaving
        // on this actor, does not publish a second delivery.
        guard self.shipping.insert(id).inserted else { return false }
        // Said first: once published, the delivery's next steps may speak before this returns.
        say(Self.name, "order #\(id) is ready to ship")
        do {
            try await environment.publishDurably(
                OrderReadyToShip(
                    delivery: "order-\(id)-\(self.startTime / 1_000_000_000)",
                    orderID: id,
                    userID: order.userID,
                    lines: order.items.map { OrderLine(sku: $0.sku, quantity: $0.quantity) },
                    reservationID: order.reservationID,
                    paymentID: order.paymentID,
                    totalCents: order.totalCents
                )
            )
        } catch {
            self.shipping.remove(id)
            throw error
        }
        return true
    }

    /// Why a compensated saga refused the order, in the order service's words.
    private static func refusal(_ cause: SagaFailure) -> OrderError {
        guard let error = cause.error as? RequestError else {
            return .needsIntervention("\(cause)")
        }
        if cause.step == "charge" { return .paymentFailed(error) }
        return Self.translate(error)
    }
    /// Turns another service's failure into the order service's own words.
    private static func translate(_ error: RequestError) -> OrderError {
        switch error.underlying {
        case UserError.unknownUser(let id)?:
            return .unknownUser(id: id)
        case CatalogError.unknownProduct(let sku)?:
            return .unknownProduct(sku: sku)
        case InventoryError.insufficientStock(let sku, let requested, let available)?:
            return .outOfStock(sku: sku, requested: requested, available: available)
        default:
            // Not a business failure (a deadline, a shutdown…): let it through as it is.
            return .upstream(error)
        }
    }
}

/// Placing an order, as a saga: validate the customer, price the lines, reserve the stock, then
/// charge the customer — the pivot. When the charge fails, the reservation is released.
///
/// Each step is a request to another service, in the order's trace; the journal lives in the
/// order service's storage.
package struct PlaceOrderSaga: Saga {
    package static let name = "order.place"

    /// What a completed saga hands the order service to record.
    package struct Placed: Codable, Sendable {
        package var items: [Order.Item]
        package var reservationID: Int
        package var paymentID: Int
    }

    let environment: ServiceEnvironment
    let narrator: Narrator

    package init(environment: ServiceEnvironment, narrator: Narrator) {
        self.environment = environment
        self.narrator = narrator
    }

    package func run(_ request: PlaceOrder, saga: SagaContext) async throws -> Placed {
        let environment = self.environment
        let say = self.narrator
        // 1. Validate the customer. The user service throws `UserError`; it reaches us as the
        //    `underlying` cause of a `RequestError` with code `handlerFailed`. Reads are idempotent.
        try await saga.step("validate", .idempotent) { _ in
            _ = try await environment.send(GetUser(id: request.userID))
        }

        // 2. Price every line from the catalog.
        let items = try await saga.step("price", .idempotent) { _ in
            var items: [Order.Item] = []
            for line in request.lines {
                let product = try await environment.send(GetProduct(sku: line.sku))
                items.append(
                    Order.Item(
                        sku: product.sku,
                        name: product.name,
                        quantity: line.quantity,
                        unitPriceCents: product.priceCents
                    )
                )
            }
            return items
        }

        // 3. Reserve the stock: the inventory checks and takes all lines in one step. Its
        //    compensation puts the stock back.
        let reservation = try await saga.step("reserve") { _ in
            try await environment.send(ReserveStock(lines: request.lines))
        } compensate: { reservation, _ in
            say(OrderService.name, "compensating: releasing reservation #\(reservation.id)")
            _ = try await environment.send(ReleaseStock(reservationID: reservation.id))
        }

        // 4. Charge the customer: the pivot. The route carries a resilience pipeline, so this one
        //    call may be retried, cut short by a timeout, or refused at once by the breaker or the
        //    bulkhead. If it fails, the saga compensates the reservation; once it succeeds, the
        //    order stands.
        let totalCents = items.reduce(0) { $0 + $1.quantity * $1.unitPriceCents }
        let receipt = try await saga.pivot("charge") { _ in
            try await environment.send(
                ChargePayment(
                    userID: request.userID,
                    amountCents: totalCents,
                    reference: "reservation #\(reservation.id)"
                )
            )
        }
        return Placed(items: items, reservationID: reservation.id, paymentID: receipt.id)
    }
}
