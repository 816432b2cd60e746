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
    /// The order's reference is empty or longer than 100 characters.
    case invalidReference(String)
    /// The order was placed before under its reference and refused then, at `step`, for
    /// `reason` (as the order's saga journaled it).
    case refusedBefore(step: String?, reason: String)

    /// The refusal in a sentence.
    public var description: String {
        switch self {
        case .emptyOrder: "the order has no lines"
        case .invalidQuantity(let sku, let quantity): "\(quantity) × \(sku): a line needs at least one unit"
        case .unknownOrder(let id): "there is no order with id \(id)"
        case .refusedBefore(let step, let reason): "refused before, at \(step ?? "the start"): \(reason)"
        case .invalidReference(let reference):
            "\"\(reference)\" is not an order reference: it needs 1 to 100 characters"
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
/// is resumed when the service starts again. A durable order service (`durable: true`) keeps its
/// orders there too, each recorded by its saga before the order is answered, so an order it
/// acknowledged survives a crash; an order placed under a reference is placed at most once.
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
    /// The order each saga recorded, by saga id.
    private var orderBySaga: [String: Int] = [:]
    /// The orders announced with `order.created` in this run.
    private var announced: Set<Int> = []
    /// The next order's id; ids are never reused.
    private var nextOrderID = 1
    /// Whether orders are kept in the service's storage.
    private let durable: Bool
    /// The service's key-value storage, when durable (from start).
    private var store: StateNamespace?
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

    /// Creates the service.
    /// - Parameters:
    ///   - courierTimeout: How long a courier has to answer a booking before the delivery process
    ///     manager gives up on it and cancels the order.
    ///   - durable: Whether orders are kept in the service's storage (and found there at start);
    ///     `false` keeps them in memory.
    ///   - narrator: Where the service tells what it does.
    package init(courierTimeout: Duration = .seconds(60), durable: Bool = false, narrator: Narrator = .standardOutput) {
        self.courierTimeout = courierTimeout
        self.durable = durable
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
        if self.durable {
            // Before the sagas resume: a resumed saga records its order here.
            let store = try await environment.storage().keyValues
            for key in await store.keys(withPrefix: "order/") {
                guard let record = try await store.value(OrderRecord.self, forKey: key) else { continue }
                self.orders[record.order.id] = record.order
                self.orderBySaga[record.saga] = record.order.id
                self.nextOrderID = max(self.nextOrderID, record.order.id + 1)
            }
            self.store = store
            if !self.orders.isEmpty { say(Self.name, "found \(self.orders.count) orders in storage") }
        }
        let sagas = try await SagaRunner.make(environment)
        sagas.register(self.placeOrderSaga(environment))
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

    /// The saga that places an order, recording it with this service.
    private func placeOrderSaga(_ environment: ServiceEnvironment) -> PlaceOrderSaga {
        PlaceOrderSaga(environment: environment, narrator: self.say) { [weak self] saga, userID, placed in
            guard let self else { throw OrderError.needsIntervention("the order service is gone") }
            return try await self.record(saga: saga, userID: userID, placed: placed)
        }
    }

    /// Records the order a saga placed, once: asked again for the same saga, answers the order it
    /// recorded. The id is chosen and the order kept with no `await` in between, so concurrent
    /// sagas never share an id; a durable service answers only once the order is committed.
    private func record(saga: String, userID: Int, placed: PlaceOrderSaga.Placed) async throws -> Order {
        if let id = self.orderBySaga[saga], let order = self.orders[id] { return order }
        let order = Order(
            id: self.nextOrderID,
            userID: userID,
            items: placed.items,
            reservationID: placed.reservationID,
            paymentID: placed.paymentID
        )
        self.nextOrderID += 1
        self.orders[order.id] = order
        self.orderBySaga[saga] = order.id
        if let store = self.store {
            do {
                try await store.set(OrderRecord(order: order, saga: saga), forKey: "order/\(order.id)")
            } catch {
                self.orders[order.id] = nil
                self.orderBySaga[saga] = nil
                throw error
            }
        }
        say(Self.name, "created order #\(order.id), total \(dollars(order.totalCents))")
        return order
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

        // Steps 1–5 (validate, price, reserve, charge, record) are the saga's. Its id is the
        // caller's reference, so that the order is placed at most once, or else unique across runs
        // of the shop: the service's start time and a count.
        let sagaID: String
        if let reference = request.reference {
            guard (1...100).contains(reference.count) else { throw .invalidReference(reference) }
            sagaID = "ref-" + reference
        } else {
            self.sagaCount += 1
            sagaID = "\(self.startTime)-\(self.sagaCount)"
        }
        let order: Order
        do {
            switch try await sagas.run(self.placeOrderSaga(environment), id: sagaID, input: request) {
            case .completed(let placed):
                // The saga recorded the order (a saga from before the record step did not: this
                // records it now).
                order = try await self.record(saga: sagaID, userID: request.userID, placed: placed)
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

        // 6. Tell whoever listens, once per order in this run (an order placed again under its
        //    reference is not news). `publish` returns once subscribers' mailboxes have the event;
        //    it does not wait for their handlers. (If it fails, the order stands but nobody hears
        //    of it: a durable publication from the outbox would close that gap.)
        guard self.announced.insert(order.id).inserted else { return order }
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
            // Read back from the journal (an order placed again under its reference): the cause
            // is its type's name and its text, not the error itself.
            if cause.error == nil { return .refusedBefore(step: cause.step, reason: cause.message) }
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

/// An order as the durable order service stores it: with the saga that placed it.
struct OrderRecord: Codable {
    var order: Order
    var saga: String
}

/// Placing an order, as a saga: validate the customer, price the lines, reserve the stock, then
/// charge the customer — the pivot — and record the order. When the charge fails, the reservation
/// is released.
///
/// Each step is a request to another service, in the order's trace; the journal lives in the
/// order service's storage. The steps are safe to run again, so that a saga resumed after a crash
/// goes forward rather than stopping for an operator, and the requests to other services are
/// retried while the service is out of reach (its process restarting): the reads as they are, the
/// reservation and the charge under an idempotency key, so that neither is made twice. A
/// reservation whose answer never came back is given up by its key when the saga compensates.
package struct PlaceOrderSaga: Saga {
    package static let name = "order.place"

    /// What a completed saga hands the order service to record.
    package struct Placed: Codable, Sendable {
        package var items: [Order.Item]
        package var reservationID: Int
        package var paymentID: Int
    }

    /// Records the order a saga placed (saga id, customer, what it placed), once per saga.
    package typealias Recorder = @Sendable (String, Int, Placed) async throws -> Order

    let environment: ServiceEnvironment
    let narrator: Narrator
    let record: Recorder
    /// Retries a request while its service has no healthy instance (its process is restarting,
    /// say), for up to about 13 seconds, within the caller's deadline.
    let unreachable: Retry

    package init(environment: ServiceEnvironment, narrator: Narrator, record: @escaping Recorder) {
        self.environment = environment
        self.narrator = narrator
        self.record = record
        self.unreachable = Retry(
            name: "order.unreachable",
            configuration: .init(
                maxAttempts: 12,
                backoff: .exponential(initial: .milliseconds(50), maximum: .seconds(2)),
                shouldRetryError: { ($0 as? RequestError)?.code == .noHealthyInstance }
            ),
            clock: environment.clock,
            random: environment.random
        )
    }

    package func run(_ request: PlaceOrder, saga: SagaContext) async throws -> Placed {
        let environment = self.environment
        let say = self.narrator
        let record = self.record
        let sagaID = saga.id
        let read = SagaStepOptions(isIdempotent: true, retry: self.unreachable)
        // 1. Validate the customer. The user service throws `UserError`; it reaches us as the
        //    `underlying` cause of a `RequestError` with code `handlerFailed`. Reads are idempotent.
        try await saga.step("validate", read) { _ in
            _ = try await environment.send(GetUser(id: request.userID))
        }

        // 2. Price every line from the catalog.
        let items = try await saga.step("price", read) { _ in
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

        // 3. Reserve the stock: the inventory checks and takes all lines in one step, under a key,
        //    so asking again answers the same reservation. Its compensation puts the stock back.
        //    The step before it has nothing to do but undo: should the reservation's answer never
        //    come back, the inventory may hold stock nobody knows the id of, and giving up the key
        //    releases it (and refuses the reservation if it is still on its way).
        let stockKey = "\(sagaID)#\(saga.run)/reserve"
        try await saga.step("claim-stock-key", .idempotent) { _ in
        } compensate: { _ in
            _ = try await environment.send(CancelReservation(key: stockKey))
        }
        let reservation = try await saga.step("reserve", SagaStepOptions(isIdempotent: true, retry: self.unreachable)) {
            _ in
            try await environment.send(ReserveStock(lines: request.lines, key: stockKey))
        } compensate: { reservation, _ in
            say(OrderService.name, "compensating: releasing reservation #\(reservation.id)")
            _ = try await environment.send(ReleaseStock(reservationID: reservation.id))
        }

        // 4. Charge the customer: the pivot. The route carries a resilience pipeline, so this one
        //    call may be retried, cut short by a timeout, or refused at once by the breaker or the
        //    bulkhead. If it fails, the saga compensates the reservation; once it succeeds, the
        //    order stands. Its idempotency key makes a charge asked for again (by a saga resumed
        //    after a crash) answer the first receipt.
        let totalCents = items.reduce(0) { $0 + $1.quantity * $1.unitPriceCents }
        let receipt = try await saga.pivot("charge", .idempotent) { step in
            try await environment.send(
                ChargePayment(
                    userID: request.userID,
                    amountCents: totalCents,
                    reference: "reservation #\(reservation.id)",
                    idempotencyKey: step.idempotencyKey
                )
            )
        }
        let placed = Placed(items: items, reservationID: reservation.id, paymentID: receipt.id)

        // 5. Record the order with the order service: past the pivot, retried until it is done.
        _ = try await saga.retriable("record") { _ in try await record(sagaID, request.userID, placed) }
        return placed
    }
}
