import KeelCore
import Synchronization

/// The money and stock the randomized sagas move, with a journal of every effect and every
/// compensation, keyed by the step's idempotency key.
///
/// An effect applies at most once per key (a repeated call returns the first receipt), and so
/// does its reversal; the counters record every call, so that a test can tell a retry from a
/// second effect, and a compensation of a step that never applied from one that did.
final class SagaLedger: Sendable {
    static let openingBalance = 10_000
    static let openingStock = 1_000_000
    static let items = 4

    struct InjectedFailure: Error, CustomStringConvertible {
        var operation: String
        var description: String { "injected failure of \(self.operation)" }
    }

    /// What an effect did: the step's output, and what its compensation undoes.
    struct Receipt: Codable, Sendable, Hashable {
        var key: String
        var saga: Int
        var money: Int
        var item: Int
        var quantity: Int
    }

    /// One line of the journal: an effect, or the reversal of one.
    struct Entry: Sendable {
        var receipt: Receipt
        var isReversal: Bool
    }

    struct State {
        var customers: [Int: Int] = [:]
        var merchant = 0
        var shelf = [Int](repeating: SagaLedger.openingStock, count: SagaLedger.items)
        var reserved = [Int](repeating: 0, count: SagaLedger.items)
        var applied: [String: Receipt] = [:]
        var reversed: Set<String> = []
        var applications: [String: Int] = [:]
        var reversals: [String: Int] = [:]
        var actionCalls: [String: Int] = [:]
        var undoCalls: [String: Int] = [:]
        /// Compensation calls that returned normally: exactly one per compensated step.
        var undoReturns: [String: Int] = [:]
        /// Compensations of keys whose effect never applied.
        var orphanUndos: [String] = []
        var journal: [Entry] = []
    }

    let state = Lock(State())

    func recordActionCall(_ key: String) {
        self.state.withLock { $0.actionCalls[key, default: 0] += 1 }
    }

    func recordUndoCall(_ key: String) {
        self.state.withLock { $0.undoCalls[key, default: 0] += 1 }
    }

    func recordUndoReturn(_ key: String) {
        self.state.withLock { $0.undoReturns[key, default: 0] += 1 }
    }

    /// Applies `effect` for `key`, once: a repeated call returns the first receipt.
    func apply(_ effect: SagaPlan.Effect?, saga: Int, key: String) -> Receipt {
        self.state.withLock { state in
            if let receipt = state.applied[key] { return receipt }
            var receipt = Receipt(key: key, saga: saga, money: 0, item: 0, quantity: 0)
            switch effect {
            case .money(let amount): receipt.money = amount
            case .stock(let item, let quantity):
                receipt.item = item
                receipt.quantity = quantity
            case nil: break
            }
            Self.move(receipt, sign: 1, in: &state)
            state.applied[key] = receipt
            state.applications[key, default: 0] += 1
            state.journal.append(Entry(receipt: receipt, isReversal: false))
            return receipt
        }
    }

    /// Reverses the effect of `receipt`, once.
    func reverse(_ receipt: Receipt) {
        self.state.withLock { state in
            guard state.applied[receipt.key] != nil else {
                state.orphanUndos.append(receipt.key)
                return
            }
            guard state.reversed.insert(receipt.key).inserted else { return }
            Self.move(receipt, sign: -1, in: &state)
            state.reversals[receipt.key, default: 0] += 1
            state.journal.append(Entry(receipt: receipt, isReversal: true))
        }
    }

    private static func move(_ receipt: Receipt, sign: Int, in state: inout State) {
        state.customers[receipt.saga, default: SagaLedger.openingBalance] -= sign * receipt.money
        state.merchant += sign * receipt.money
        state.shelf[receipt.item] -= sign * receipt.quantity
        state.reserved[receipt.item] += sign * receipt.quantity
    }

    /// Recounts the books from the journal alone, and checks them against the running balances
    /// and against conservation: every unit of money is with a customer or the merchant, every
    /// unit of stock on the shelf or reserved.
    /// - Returns: What does not add up; empty when everything does.
    func recount() -> [String] {
        self.state.withLock { state in
            var problems: [String] = []
            var recounted = State()
            for entry in state.journal {
                Self.move(entry.receipt, sign: entry.isReversal ? -1 : 1, in: &recounted)
            }
            if recounted.customers != state.customers || recounted.merchant != state.merchant {
                problems.append("the money recounted from the journal differs from the balances")
            }
            if recounted.shelf != state.shelf || recounted.reserved != state.reserved {
                problems.append("the stock recounted from the journal differs from the shelves")
            }
            let money = state.customers.values.reduce(0, +) + state.merchant
            if money != SagaLedger.openingBalance * state.customers.count {
                problems.append(
                    "money not conserved: \(money) held, \(SagaLedger.openingBalance * state.customers.count) opened"
                )
            }
            for item in 0..<SagaLedger.items where state.shelf[item] + state.reserved[item] != SagaLedger.openingStock {
                problems.append(
                    "stock of sku\(item) not conserved: \(state.shelf[item]) on the shelf, \(state.reserved[item]) reserved"
                )
            }
            return problems
        }
    }
}
