import Keel
import KeelCore
import KeelEventSourcing
import KeelSagas
import Synchronization

// The seed's choreography: OrderCreated → PaymentProcessed / PaymentFailed → InventoryReserved /
// InventoryReservationFailed → order confirmed or cancelled, with the refund as compensation. Four
// services: `order` (with the process manager), `payment`, `inventory` and `notifications`, which
// records the outcomes. The article ProcessManagers.md shows this code.

// MARK: - Events

struct OrderCreated: DomainEvent, Equatable {
    static let eventType = "order.created"
    var orderID: String
    var amount: Int
    var quantity: Int
}

struct OrderConfirmed: DomainEvent, Equatable {
    static let eventType = "order.confirmed"
    var orderID: String
}

struct OrderCancelled: DomainEvent, Equatable {
    static let eventType = "order.cancelled"
    var orderID: String
    var reason: String
}

struct PaymentProcessed: DomainEvent, Equatable {
    static let eventType = "payment.processed"
    var orderID: String
}

struct PaymentFailed: DomainEvent, Equatable {
    static let eventType = "payment.failed"
    var orderID: String
    var reason: String
}

struct PaymentRefunded: DomainEvent, Equatable {
    static let eventType = "payment.refunded"
    var orderID: String
}

struct InventoryReserved: DomainEvent, Equatable {
    static let eventType = "inventory.reserved"
    var orderID: String
}

struct InventoryReservationFailed: DomainEvent, Equatable {
    static let eventType = "inventory.reservation-failed"
    var orderID: String
}

// MARK: - Commands

struct PlaceOrder: ServiceRequest {
    typealias Response = Done
    var orderID: String
    var amount: Int
    var quantity: Int
}

struct ChargePayment: ServiceRequest {
    typealias Response = Done
    var orderID: String
    var amount: Int
}

struct RefundPayment: ServiceRequest {
    typealias Response = Done
    var orderID: String
}

struct ReserveInventory: ServiceRequest {
    typealias Response = Done
    var orderID: String
    var quantity: Int
}

// MARK: - The process manager

/// Takes an order through payment and inventory, and refunds the payment when the stock is short or
/// the payment does not answer in time.
struct OrderFulfilment: ProcessManager {
    struct State: Codable, Sendable, Equatable {
        enum Step: String, Codable, Sendable {
            case charging, reserving, refunding
        }
        var orderID: String
        var amount: Int
        var quantity: Int
        var step: Step
        var cancelReason: String?
    }

    static let name = "order-fulfilment"

    /// How long the payment service has to answer.
    var paymentTimeout: Duration = .seconds(30)

    func registerHandlers(_ handlers: inout ProcessHandlers<Self>) {
        handlers.sends(ChargePayment.self)
        handlers.sends(RefundPayment.self)
        handlers.sends(ReserveInventory.self)
        handlers.publishes(OrderConfirmed.self)
        handlers.publishes(OrderCancelled.self)

        handlers.on(OrderCreated.self, correlatedBy: \.orderID) { event, state, context in
            guard state == nil else { return }
            state = State(orderID: event.orderID, amount: event.amount, quantity: event.quantity, step: .charging)
            try context.send(ChargePayment(orderID: event.orderID, amount: event.amount))
            try context.schedule("payment", after: self.paymentTimeout)
        }
        handlers.on(PaymentProcessed.self, correlatedBy: \.orderID) { event, state, context in
            guard var process = state, process.step == .charging else { return }
            context.cancelTimeout("payment")
            process.step = .reserving
            state = process
            try context.send(ReserveInventory(orderID: event.orderID, quantity: process.quantity))
        }
        handlers.on(PaymentFailed.self, correlatedBy: \.orderID) { event, state, context in
            guard let process = state, process.step == .charging else { return }
            context.cancelTimeout("payment")
            try context.publish(OrderCancelled(orderID: event.orderID, reason: "payment failed: \(event.reason)"))
            context.complete()
        }
        handlers.on(InventoryReserved.self, correlatedBy: \.orderID) { event, state, context in
            guard state?.step == .reserving else { return }
            try context.publish(OrderConfirmed(orderID: event.orderID))
            context.complete()
        }
        handlers.on(InventoryReservationFailed.self, correlatedBy: \.orderID) { event, state, context in
            guard var process = state, process.step == .reserving else { return }
            // Compensation: the payment went through, the order cannot be served.
            process.step = .refunding
            process.cancelReason = "out of stock"
            state = process
            try context.send(RefundPayment(orderID: event.orderID))
        }
        handlers.on(PaymentRefunded.self, correlatedBy: \.orderID) { event, state, context in
            guard let process = state, process.step == .refunding else { return }
            try context.publish(OrderCancelled(orderID: event.orderID, reason: process.cancelReason ?? "refunded"))
            context.complete()
        }
    }

    func handleTimeout(_ timeout: ProcessTimeout, state: inout State?, context: inout ProcessContext) throws {
        guard timeout.name == "payment", var process = state, process.step == .charging else { return }
        // The payment may still land: refund it (a refund of nothing is a no-op), then cancel.
        process.step = .refunding
        process.cancelReason = "payment timed out"
        state = process
        try context.send(RefundPayment(orderID: process.orderID))
    }
}

// MARK: - Services

struct MissingEnvironment: Error {}
struct PaymentUnavailable: Error {}

actor OrderService: ServiceActor {
    static let name: ServiceName = "order"
    static let dependencies: [ServiceName] = ["payment", "inventory"]
    static let publishes: [any DomainEvent.Type] = [OrderCreated.self, OrderConfirmed.self, OrderCancelled.self]

    let fulfilment: ProcessManagerRunner<OrderFulfilment>
    private var environment: ServiceEnvironment?

    init(
        _ manager: OrderFulfilment = OrderFulfilment(),
        configuration: ProcessManagerRunner<OrderFulfilment>.Configuration
    ) {
        self.fulfilment = ProcessManagerRunner(manager, configuration: configuration)
    }

    nonisolated func registerHandlers(_ handlers: inout RequestHandlers<OrderService>) {
        handlers.on(PlaceOrder.self) { _, order, environment in
            _ = try await environment.publishDurably(
                OrderCreated(orderID: order.orderID, amount: order.amount, quantity: order.quantity)
            )
        }
    }

    func start(_ environment: ServiceEnvironment) async throws {
        self.environment = environment
        try await self.fulfilment.start(in: environment)
    }

    func stop() async throws {
        await self.fulfilment.stop()
    }

    /// Appends `event` twice with one event id, as a redelivery would present it.
    /// - Returns: The second copy's position.
    func publishTwice(_ event: OrderCreated, id: EventID) async throws -> UInt64 {
        guard let environment = self.environment else { throw MissingEnvironment() }
        let data = try EventSerializer().encode(event, metadata: EventMetadata(id: id, time: 0))
        let storage = try await environment.storage()
        try await storage.events.append(data, to: "$outbox", expecting: .any)
        return try await storage.events.append(data, to: "$outbox", expecting: .any).positions.lowerBound
    }
}

/// The payment side's books, shared by the payment service's instances across a restart.
final class PaymentLedger: Sendable {
    struct Books: Sendable, Equatable {
        /// Each charge request received: the order and the request's causation id.
        var attempts: [String] = []
        var attemptKeys: [String] = []
        var charged: [String: Int] = [:]
        var refunded: [String] = []
        /// Orders whose card is declined.
        var declined: Set<String> = []
        /// Whether charges are accepted and never answered.
        var isSilent = false
        /// How many charge requests fail, before they do anything, from now on.
        var failures = 0
    }

    let books = Observed(Books())
}

actor PaymentService: ServiceActor {
    static let name: ServiceName = "payment"
    static let publishes: [any DomainEvent.Type] = [PaymentProcessed.self, PaymentFailed.self, PaymentRefunded.self]

    let ledger: PaymentLedger

    init(_ ledger: PaymentLedger) {
        self.ledger = ledger
    }

    nonisolated func registerHandlers(_ handlers: inout RequestHandlers<PaymentService>) {
        handlers.on(ChargePayment.self) { service, command, environment in
            try await service.charge(command, environment)
        }
        handlers.on(RefundPayment.self) { service, command, environment in
            try await service.refund(command, environment)
        }
        handlers.on(AnnouncePayment.self) { _, request, environment in
            try await environment.publishDurably(PaymentProcessed(orderID: request.orderID)).positions.lowerBound
        }
    }

    private func charge(_ command: ChargePayment, _ environment: ServiceEnvironment) async throws {
        enum Decision { case fail, silent, duplicate, decline, charge }
        let key = TraceContext.current?.causationID ?? "none"
        let decision = self.ledger.books.update { books -> Decision in
            books.attempts.append(command.orderID)
            books.attemptKeys.append(key)
            if books.failures > 0 {
                books.failures -= 1
                return .fail
            }
            if books.isSilent { return .silent }
            if books.charged[command.orderID] != nil { return .duplicate }
            if books.declined.contains(command.orderID) { return .decline }
            books.charged[command.orderID] = command.amount
            return .charge
        }
        switch decision {
        case .fail: throw PaymentUnavailable()
        case .silent, .duplicate: return
        case .decline:
            try await environment.publishDurably(PaymentFailed(orderID: command.orderID, reason: "card declined"))
        case .charge:
            try await environment.publishDurably(PaymentProcessed(orderID: command.orderID))
        }
    }

    private func refund(_ command: RefundPayment, _ environment: ServiceEnvironment) async throws {
        let isNew = self.ledger.books.update { books -> Bool in
            guard !books.refunded.contains(command.orderID) else { return false }
            books.refunded.append(command.orderID)
            books.charged[command.orderID] = nil
            return true
        }
        if isNew { try await environment.publishDurably(PaymentRefunded(orderID: command.orderID)) }
    }
}

actor InventoryService: ServiceActor {
    static let name: ServiceName = "inventory"
    static let publishes: [any DomainEvent.Type] = [InventoryReserved.self, InventoryReservationFailed.self]

    private var available: Int
    private(set) var reservations: [String: Int] = [:]

    init(stock: Int) {
        self.available = stock
    }

    nonisolated func registerHandlers(_ handlers: inout RequestHandlers<InventoryService>) {
        handlers.on(ReserveInventory.self) { service, command, environment in
            try await service.reserve(command, environment)
        }
    }

    private func reserve(_ command: ReserveInventory, _ environment: ServiceEnvironment) async throws {
        if self.reservations[command.orderID] == nil {
            guard command.quantity <= self.available else {
                try await environment.publishDurably(InventoryReservationFailed(orderID: command.orderID))
                return
            }
            self.available -= command.quantity
            self.reservations[command.orderID] = command.quantity
        }
        try await environment.publishDurably(InventoryReserved(orderID: command.orderID))
    }
}

/// What the customers are told: every order's outcome, as it was published.
final class Outcomes: Sendable {
    enum Outcome: Sendable, Equatable {
        case confirmed
        case cancelled(String)
    }

    /// Every outcome event received, in order, with the order it is about.
    let received = Observed<[(orderID: String, outcome: Outcome)]>([])

    /// Waits for the first outcome of `orderID`.
    func outcome(of orderID: String) async -> Outcome {
        let all = await self.received.wait { $0.contains { $0.orderID == orderID } }
        return all.first { $0.orderID == orderID }!.outcome
    }

    /// The outcomes received for `orderID`, in order.
    func all(of orderID: String) -> [Outcome] {
        self.received.value.filter { $0.orderID == orderID }.map(\.outcome)
    }
}

actor NotificationService: ServiceActor {
    static let name: ServiceName = "notifications"
    let outcomes: Outcomes

    init(_ outcomes: Outcomes) {
        self.outcomes = outcomes
    }

    nonisolated func registerHandlers(_ handlers: inout RequestHandlers<NotificationService>) {
        handlers.subscribeDurably(to: OrderConfirmed.self, name: "confirmations") { service, event, _ in
            service.outcomes.received.update { $0.append((event.orderID, .confirmed)) }
        }
        handlers.subscribeDurably(to: OrderCancelled.self, name: "cancellations") { service, event, _ in
            service.outcomes.received.update { $0.append((event.orderID, .cancelled(event.reason))) }
        }
    }
}

// MARK: - Test plumbing

/// A value that tests change from services and wait on, without sleeping: ``wait(until:)`` resumes
/// when an ``update(_:)`` makes the predicate true.
final class Observed<Value: Sendable>: Sendable {
    private struct Waiter {
        var predicate: @Sendable (Value) -> Bool
        var continuation: CheckedContinuation<Value, Never>
    }

    private let state: Lock<(value: Value, waiters: [Waiter])>

    init(_ value: Value) {
        self.state = Lock((value, []))
    }

    var value: Value { self.state.withLock { $0.value } }

    @discardableResult
    func update<T: Sendable>(_ change: (inout Value) -> T) -> T {
        let (result, ready) = self.state.withLock { state in
            let result = change(&state.value)
            var ready: [(CheckedContinuation<Value, Never>, Value)] = []
            state.waiters.removeAll { waiter in
                guard waiter.predicate(state.value) else { return false }
                ready.append((waiter.continuation, state.value))
                return true
            }
            return (result, ready)
        }
        for (continuation, value) in ready { continuation.resume(returning: value) }
        return result
    }

    /// Waits until `predicate` holds (the suite's time limit ends a wait that never does).
    func wait(until predicate: @escaping @Sendable (Value) -> Bool) async -> Value {
        await withCheckedContinuation { continuation in
            let now: Value? = self.state.withLock { state in
                if predicate(state.value) { return state.value }
                state.waiters.append(Waiter(predicate: predicate, continuation: continuation))
                return nil
            }
            if let now { continuation.resume(returning: now) }
        }
    }
}
