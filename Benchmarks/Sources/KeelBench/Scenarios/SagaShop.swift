import Keel

/// The order flow of the saga scenarios: three in-process services (orders, payments, inventory),
/// their requests, and the four calls of placing an order, made the same way by the saga's steps
/// and by the baselines.
///
/// Every step is a request through the host's request channel (`host.client.send`) to one of the
/// services, each an actor doing a little bookkeeping: a check, a balance and a stock count moved,
/// the charge and the reservation remembered by idempotency key, so that a repeated call has no
/// second effect (as a saga's idempotent steps need). The keys are remembered for the last
/// ``KeyWindow/capacity`` calls, as a service expires them: the services' state does not grow
/// with the millions of orders a run places, so the cost of a call is the same in every round
/// and on both sides.
enum SagaShop {
    /// The saga's input: what is ordered, by whom, for how much.
    struct Order: Codable, Sendable {
        var id: String
        var user = "ada"
        var item = "widget"
        var quantity = 2
        var total = 30
    }

    /// A charge, as the payments service records it.
    struct Payment: Codable, Sendable {
        var key: String
        var user: String
        var amount: Int
    }

    /// A reservation, as the inventory service records it.
    struct Reservation: Codable, Sendable {
        var key: String
        var item: String
        var quantity: Int
    }

    /// Checks an order and returns its total.
    struct ValidateOrder: ServiceRequest {
        typealias Response = Int
        var order: Order
    }

    /// Charges a user, once per idempotency key.
    struct ChargePayment: ServiceRequest {
        typealias Response = Payment
        var user: String
        var amount: Int
        var key: String
    }

    /// Refunds a charge (the compensation of ``ChargePayment``).
    struct RefundPayment: ServiceRequest {
        typealias Response = Done
        var payment: Payment
    }

    /// Reserves stock, once per idempotency key.
    struct ReserveStock: ServiceRequest {
        typealias Response = Reservation
        var item: String
        var quantity: Int
        var key: String
    }

    /// Releases a reservation (the compensation of ``ReserveStock``).
    struct ReleaseStock: ServiceRequest {
        typealias Response = Done
        var reservation: Reservation
    }

    /// Confirms an order once paid and reserved; returns the receipt.
    struct ConfirmOrder: ServiceRequest {
        typealias Response = String
        var orderID: String
        var paymentKey: String
    }

    /// The orders service: validates and confirms.
    actor Orders: ServiceActor {
        static let name: ServiceName = "bench-orders"

        private var confirmed = 0

        nonisolated func registerHandlers(_ handlers: inout RequestHandlers<Orders>) {
            handlers.on(ValidateOrder.self) { service, request in
                try service.validate(request.order)
            }
            handlers.on(ConfirmOrder.self) { service, request in
                service.confirm(request.orderID)
            }
        }

        private func validate(_ order: Order) throws -> Int {
            guard order.quantity > 0, order.total > 0, !order.item.isEmpty else { throw RejectedOrder() }
            return order.total
        }

        private func confirm(_ orderID: String) -> String {
            self.confirmed &+= 1
            return "receipt-" + orderID
        }
    }

    /// The payments service: charges and refunds, a charge once per idempotency key.
    actor Payments: ServiceActor {
        static let name: ServiceName = "bench-payments"

        private var balances: [String: Int] = [:]
        private var charges = KeyWindow<Payment>()

        nonisolated func registerHandlers(_ handlers: inout RequestHandlers<Payments>) {
            handlers.on(ChargePayment.self) { service, request in
                service.charge(request)
            }
            handlers.on(RefundPayment.self) { service, request in
                service.refund(request.payment)
                return Done()
            }
        }

        private func charge(_ request: ChargePayment) -> Payment {
            if let existing = self.charges[request.key] { return existing }
            let payment = Payment(key: request.key, user: request.user, amount: request.amount)
            self.balances[request.user, default: 0] -= request.amount
            self.charges.insert(payment, for: request.key)
            return payment
        }

        private func refund(_ payment: Payment) {
            guard self.charges.removeValue(forKey: payment.key) != nil else { return }
            self.balances[payment.user, default: 0] += payment.amount
        }
    }

    /// The inventory service: reserves and releases stock, a reservation once per idempotency key.
    actor Inventory: ServiceActor {
        static let name: ServiceName = "bench-inventory"

        private var reserved: [String: Int] = [:]
        private var reservations = KeyWindow<Reservation>()

        nonisolated func registerHandlers(_ handlers: inout RequestHandlers<Inventory>) {
            handlers.on(ReserveStock.self) { service, request in
                service.reserve(request)
            }
            handlers.on(ReleaseStock.self) { service, request in
                service.release(request.reservation)
                return Done()
            }
        }

        private func reserve(_ request: ReserveStock) -> Reservation {
            if let existing = self.reservations[request.key] { return existing }
            let reservation = Reservation(key: request.key, item: request.item, quantity: request.quantity)
            self.reserved[request.item, default: 0] += request.quantity
            self.reservations.insert(reservation, for: request.key)
            return reservation
        }

        private func release(_ reservation: Reservation) {
            guard self.reservations.removeValue(forKey: reservation.key) != nil else { return }
            self.reserved[reservation.item, default: 0] -= reservation.quantity
        }
    }

    /// What a service remembers per idempotency key: the values of the last ``capacity`` keys; an
    /// older key is forgotten when a new one comes.
    struct KeyWindow<Value> {
        /// How many keys are remembered.
        static var capacity: Int { 4_096 }

        private var values: [String: Value] = [:]
        /// The remembered keys, oldest at `next` once the ring is full.
        private var ring: [String] = []
        private var next = 0

        subscript(key: String) -> Value? { self.values[key] }

        /// Remembers `value` for `key`, forgetting the oldest key when the window is full.
        mutating func insert(_ value: Value, for key: String) {
            if self.ring.count < Self.capacity {
                self.ring.append(key)
            } else {
                self.values.removeValue(forKey: self.ring[self.next])
                self.ring[self.next] = key
                self.next = (self.next + 1) % Self.capacity
            }
            self.values[key] = value
        }

        /// Forgets `key`; returns its value, if it was remembered.
        mutating func removeValue(forKey key: String) -> Value? {
            self.values.removeValue(forKey: key)
        }
    }

    /// The error of an order that does not validate (never thrown by the scenarios' orders).
    struct RejectedOrder: Error {}

    /// Makes a started host with the three services, health checks off (no timer fires during a
    /// round) and the default `NoOpTelemetry`.
    /// - Returns: The host.
    /// - Throws: What registering or starting throws.
    static func makeHost() async throws -> ServiceHost {
        var configuration = ServiceHost.Configuration()
        configuration.healthCheckInterval = nil
        let host = ServiceHost(configuration: configuration)
        try await host.register(Orders())
        try await host.register(Payments())
        try await host.register(Inventory())
        try await host.start()
        return host
    }

    /// The id of the `index`th order: fixed width, so that every saga's journal entries have the
    /// same sizes.
    static func orderID(_ index: Int) -> String {
        let digits = String(index)
        return "o-" + String(repeating: "0", count: max(0, 10 - digits.count)) + digits
    }

    /// The idempotency key the saga gives step `step` of its first run of order `orderID`
    /// (``/KeelSagas/SagaStepContext/idempotencyKey``), which the direct calls pass too.
    static func key(_ orderID: String, _ step: String) -> String {
        orderID + "/" + step
    }

    /// The four calls of placing an order, one after the other, made directly: what the saga's
    /// steps do, without the saga.
    /// - Parameters:
    ///   - order: The order.
    ///   - requests: The client to send with.
    /// - Returns: The receipt.
    /// - Throws: A ``RequestError``.
    static func placeDirectly(_ order: Order, _ requests: RequestClient) async throws -> String {
        let total = try await requests.send(ValidateOrder(order: order))
        let payment = try await requests.send(
            ChargePayment(user: order.user, amount: total, key: Self.key(order.id, "pay"))
        )
        _ = try await requests.send(
            ReserveStock(item: order.item, quantity: order.quantity, key: Self.key(order.id, "reserve"))
        )
        return try await requests.send(ConfirmOrder(orderID: order.id, paymentKey: payment.key))
    }
}
