import KeelCore
import KeelEventSourcing
import KeelSagas
import KeelTesting
import Synchronization

/// The services of the seed's order saga, as one in-memory world: money, stock, an order book,
/// and a log of every effect, with failures and gates to inject at any operation.
///
/// Effects are keyed by idempotency key: a repeated call with a key already applied returns the
/// first result without a second effect, and `applications` counts effects per key, so a test
/// can tell that no key was applied twice.
final class ShopWorld: Sendable {
    struct Failure: Error, CustomStringConvertible {
        var operation: String
        var description: String { "injected failure of \(self.operation)" }
    }

    struct State {
        var balances: [String: Int] = [:]
        var merchant = 0
        var stock: [String: Int] = [:]
        var reserved: [String: Int] = [:]
        var confirmed: Set<String> = []
        var payments: [String: Payment] = [:]
        var reservations: [String: Reservation] = [:]
        var refunded: Set<String> = []
        var released: Set<String> = []
        var applications: [String: Int] = [:]
        var log: [String] = []
        /// Operation → how many more calls fail.
        var failures: [String: Int] = [:]
        var gates: [String: Gate] = [:]
    }

    let state: Lock<State>

    init(balance: Int = 100, stock: Int = 10) {
        var state = State()
        state.balances["ada"] = balance
        state.stock["widget"] = stock
        self.state = Lock(state)
    }

    var log: [String] { self.state.withLock { $0.log } }
    var balance: Int { self.state.withLock { $0.balances["ada", default: 0] } }
    var merchant: Int { self.state.withLock { $0.merchant } }
    var stock: Int { self.state.withLock { $0.stock["widget", default: 0] } }
    var reserved: Int { self.state.withLock { $0.reserved["widget", default: 0] } }
    var confirmed: Set<String> { self.state.withLock { $0.confirmed } }
    var applications: [String: Int] { self.state.withLock { $0.applications } }

    /// Makes the next `times` calls of `operation` fail.
    /// Writes `line` in the log: what a test saga's own effect does.
    func record(_ line: String) {
        self.state.withLock { $0.log.append(line) }
    }

    func fail(_ operation: String, times: Int = .max) {
        self.state.withLock { $0.failures[operation] = times }
    }

    /// Makes calls of `operation` wait at a gate until it opens (or the caller is cancelled).
    func gate(_ operation: String) -> Gate {
        let gate = Gate()
        self.state.withLock { $0.gates[operation] = gate }
        return gate
    }

    private func enter(_ operation: String) async throws {
        let gate = self.state.withLock { $0.gates[operation] }
        if let gate { try await gate.pass() }
        let fails = self.state.withLock { state -> Bool in
            guard let left = state.failures[operation], left > 0 else { return false }
            state.failures[operation] = left - 1
            return true
        }
        if fails {
            self.state.withLock { $0.log.append("\(operation) failed") }
            throw Failure(operation: operation)
        }
    }

    func validate(_ order: OrderDraft) async throws -> Int {
        try await self.enter("validate")
        self.state.withLock { $0.log.append("validate") }
        return order.total
    }

    func pay(_ order: OrderDraft, amount: Int, key: String) async throws -> Payment {
        try await self.enter("pay")
        return try self.state.withLock { state throws -> Payment in
            if let existing = state.payments[key] { return existing }
            guard state.balances[order.user, default: 0] >= amount else {
                state.log.append("pay declined")
                throw Failure(operation: "pay (insufficient funds)")
            }
            state.balances[order.user, default: 0] -= amount
            state.merchant += amount
            let payment = Payment(key: key, user: order.user, amount: amount)
            state.payments[key] = payment
            state.applications[key, default: 0] += 1
            state.log.append("pay")
            return payment
        }
    }

    func refund(_ payment: Payment) async throws {
        try await self.enter("refund")
        self.state.withLock { state in
            guard state.refunded.insert(payment.key).inserted else { return }
            state.balances[payment.user, default: 0] += payment.amount
            state.merchant -= payment.amount
            state.log.append("refund")
        }
    }

    func reserve(_ order: OrderDraft, key: String) async throws -> Reservation {
        try await self.enter("reserve")
        return try self.state.withLock { state throws -> Reservation in
            if let existing = state.reservations[key] { return existing }
            guard state.stock[order.item, default: 0] >= order.quantity else {
                state.log.append("reserve refused")
                throw Failure(operation: "reserve (out of stock)")
            }
            state.stock[order.item, default: 0] -= order.quantity
            state.reserved[order.item, default: 0] += order.quantity
            let reservation = Reservation(key: key, item: order.item, quantity: order.quantity)
            state.reservations[key] = reservation
            state.applications[key, default: 0] += 1
            state.log.append("reserve")
            return reservation
        }
    }

    func release(_ reservation: Reservation) async throws {
        try await self.enter("release")
        self.state.withLock { state in
            guard state.released.insert(reservation.key).inserted else { return }
            state.stock[reservation.item, default: 0] += reservation.quantity
            state.reserved[reservation.item, default: 0] -= reservation.quantity
            state.log.append("release")
        }
    }

    func confirm(_ order: OrderDraft) async throws -> String {
        try await self.enter("confirm")
        self.state.withLock { state in
            state.confirmed.insert(order.id)
            state.log.append("confirm")
        }
        return "receipt-\(order.id)"
    }

    func ship(_ order: OrderDraft) async throws -> String {
        try await self.enter("ship")
        self.state.withLock { $0.log.append("ship") }
        return "parcel-\(order.id)"
    }
}

struct OrderDraft: Codable, Sendable, Hashable {
    var id: String
    var user = "ada"
    var item = "widget"
    var quantity = 2
    var total = 30
}

struct Payment: Codable, Sendable, Hashable {
    var key: String
    var user: String
    var amount: Int
}

struct Reservation: Codable, Sendable, Hashable {
    var key: String
    var item: String
    var quantity: Int
}

/// The seed's orchestration: validate → pay → reserve → confirm (the pivot).
struct OrderSaga: Saga {
    static let name = "order.place"
    let world: ShopWorld

    func run(_ order: OrderDraft, saga: SagaContext) async throws -> String {
        let total = try await saga.step("validate", .idempotent) { _ in try await world.validate(order) }
        let payment = try await saga.step("pay", .idempotent) { step in
            try await world.pay(order, amount: total, key: step.idempotencyKey)
        } compensate: { payment, _ in
            try await world.refund(payment)
        }
        _ = try await saga.step("reserve", .idempotent) { step in
            try await world.reserve(order, key: step.idempotencyKey)
        } compensate: { reservation, _ in
            try await world.release(reservation)
        }
        _ = payment
        return try await saga.pivot("confirm", .idempotent) { _ in try await world.confirm(order) }
    }
}

/// A gate an operation waits at until the test opens it; tells the test when someone arrived.
final class Gate: Sendable {
    private struct State {
        var isOpen = false
        var waiters: [Int: CheckedContinuation<Void, any Error>] = [:]
        var arrivals = 0
        var arrivalWaiters: [CheckedContinuation<Void, Never>] = []
        var next = 0
    }
    private let state = Lock(State())

    /// Opens the gate: every waiter passes, and so does every later caller.
    func open() {
        let waiters = self.state.withLock { state in
            state.isOpen = true
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Waits until someone has arrived at the gate.
    func arrival() async {
        await withCheckedContinuation { continuation in
            let now = self.state.withLock { state -> Bool in
                if state.arrivals > 0 { return true }
                state.arrivalWaiters.append(continuation)
                return false
            }
            if now { continuation.resume() }
        }
    }

    func pass() async throws {
        let key = self.state.withLock { state -> Int in
            defer { state.next += 1 }
            return state.next
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                // One locked decision: pass, refuse (already cancelled), or wait. The continuation is
                // touched again only by whoever takes it out of `waiters` under the lock.
                let (decision, arrivals) = self.state.withLock { state -> (Bool?, [CheckedContinuation<Void, Never>]) in
                    state.arrivals += 1
                    let arrivals = state.arrivalWaiters
                    state.arrivalWaiters = []
                    if state.isOpen { return (true, arrivals) }
                    if Task.isCancelled { return (false, arrivals) }
                    state.waiters[key] = continuation
                    return (nil, arrivals)
                }
                for arrival in arrivals { arrival.resume() }
                switch decision {
                case true?: continuation.resume()
                case false?: continuation.resume(throwing: CancellationError())
                case nil: break
                }
            }
        } onCancel: {
            let waiter = self.state.withLock { $0.waiters.removeValue(forKey: key) }
            waiter?.resume(throwing: CancellationError())
        }
    }
}

/// A store that "crashes" at an append: from the `limit`-th append on, every append fails, either
/// before writing (`writes == false`) or after (`true`: the record is there, the caller is told it
/// is not).
final class CrashingStore: ForwardingEventStore {
    let base: any EventStore
    private let limit: Int
    private let writes: Bool
    private let count = Lock(0)

    init(base: any EventStore, crashAtAppend limit: Int, writes: Bool = false) {
        self.base = base
        self.limit = limit
        self.writes = writes
    }

    var hasCrashed: Bool { self.count.withLock { $0 >= self.limit } }

    @discardableResult
    func append(
        _ events: [EventData],
        to stream: StreamID,
        expecting expected: ExpectedVersion
    ) async throws(EventStoreError) -> AppendResult {
        let number = self.count.withLock { count -> Int in
            count += 1
            return count
        }
        guard number >= self.limit else { return try await self.base.append(events, to: stream, expecting: expected) }
        if self.writes, number == self.limit {
            try await self.base.append(events, to: stream, expecting: expected)
        }
        throw EventStoreError(code: .io, stream: stream, message: "injected crash at append \(number)")
    }
}
