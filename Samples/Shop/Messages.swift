import Keel
import KeelCore

// The contract between the shop's services: the requests they answer, the responses they give
// and the events they publish. Services share these types and nothing else; each one's storage
// stays private to its actor.
//
// Every request, response and event is `Codable` as well as `Sendable`, so that a service could
// later move to another process without its callers changing.

// MARK: Users

/// A customer.
struct User: Sendable, Codable, Hashable {
    var id: Int
    var name: String
    var email: String
}

/// Asks the user service for one customer.
struct GetUser: ServiceRequest {
    typealias Response = User
    var id: Int
}

// MARK: Catalog

/// A product the shop sells, with its price in cents.
struct Product: Sendable, Codable, Hashable {
    var sku: String
    var name: String
    var priceCents: Int
}

/// Asks the catalog service for one product.
struct GetProduct: ServiceRequest {
    typealias Response = Product
    var sku: String
}

// MARK: Inventory

/// So many units of one product.
struct OrderLine: Sendable, Codable, Hashable {
    var sku: String
    var quantity: Int
}

/// How many units of a product are on the shelf.
struct StockLevel: Sendable, Codable, Hashable {
    var sku: String
    var available: Int
}

/// Asks the inventory service how many units of a product are available.
struct CheckStock: ServiceRequest {
    typealias Response = StockLevel
    var sku: String
}

/// Takes units of several products off the shelf, all of them or none.
struct ReserveStock: ServiceRequest {
    typealias Response = StockReservation
    var lines: [OrderLine]
}

/// The inventory's receipt for a reservation.
struct StockReservation: Sendable, Codable, Hashable {
    var id: Int
    var lines: [OrderLine]
}

// MARK: Payments

/// Asks the payment service to charge a customer.
///
/// The route of this request carries a resilience pipeline (see `PaymentResilience`): a call may
/// be retried, cut short by a timeout, or refused at once by an open circuit breaker or a full
/// bulkhead, which the caller sees as a `RequestError` with code `circuitOpen` or `bulkheadFull`.
struct ChargePayment: ServiceRequest {
    typealias Response = PaymentReceipt
    var userID: Int
    var amountCents: Int
    /// What the charge is for, as the customer's statement shows it.
    var reference: String
}

/// The gateway's receipt for a charge.
struct PaymentReceipt: Sendable, Codable, Hashable {
    var id: Int
    var amountCents: Int
}

// MARK: Orders

/// Asks the order service to place an order.
struct PlaceOrder: ServiceRequest {
    typealias Response = Order
    var userID: Int
    var lines: [OrderLine]
}

/// A placed order.
struct Order: Sendable, Codable, Hashable {
    /// One line of an order, priced when the order was placed.
    struct Item: Sendable, Codable, Hashable {
        var sku: String
        var name: String
        var quantity: Int
        var unitPriceCents: Int
    }

    var id: Int
    var userID: Int
    var items: [Item]
    var reservationID: Int
    var paymentID: Int

    var totalCents: Int {
        self.items.reduce(0) { $0 + $1.quantity * $1.unitPriceCents }
    }
}

/// Published by the order service when an order has been placed.
struct OrderCreated: Event {
    static let topic = "order.created"
    var orderID: Int
    var userID: Int
    var items: [Order.Item]
    var totalCents: Int
}

/// Published by the order service when it refuses an order.
struct OrderRejected: Event {
    static let topic = "order.rejected"
    var userID: Int
    var reason: String
}

// MARK: Formatting

/// `$1,234.50` for 123450 cents.
func dollars(_ cents: Int) -> String {
    let whole = String(cents / 100)
    var grouped = ""
    for (offset, digit) in whole.enumerated() {
        if offset > 0 && (whole.count - offset) % 3 == 0 { grouped.append(",") }
        grouped.append(digit)
    }
    let fraction = cents % 100
    return "$\(grouped).\(fraction < 10 ? "0" : "")\(fraction)"
}

/// `40 ms` for a duration of 40 milliseconds.
func milliseconds(_ duration: Duration) -> String {
    "\(duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000) ms"
}

/// `2 × keyboard, 1 × mouse`.
func describe(_ lines: [OrderLine]) -> String {
    lines.map { "\($0.quantity) × \($0.sku)" }.joined(separator: ", ")
}

/// Prints what a service is doing, tagged with the business operation it works for.
///
/// The correlation id comes from the task-local `TraceContext`, which Keel binds around every
/// request and event handler; that is how the notification service, running on its own
/// subscription task, still knows which order it is working for.
func say(_ service: ServiceName, _ text: String) {
    let tag = "[\(service)]"
    guard let correlation = TraceContext.current?.correlationID else {
        print("  \(tag) \(text)")
        return
    }
    print("  \(correlation)  \(tag)\(String(repeating: " ", count: max(1, 15 - tag.count)))\(text)")
}
