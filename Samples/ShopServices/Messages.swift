import Keel
import KeelCore

// The contract between the shop's services: the requests they answer, the responses they give
// and the events they publish. Services share these types and nothing else; each one's storage
// stays private to its actor.
//
// Every request, response and event is `Codable` as well as `Sendable`, so that a service could
// later move to another process without its callers changing.

// MARK: Users

/// A customer, as the user service answers ``GetUser``.
public struct User: Sendable, Codable, Hashable {
    /// The customer's id.
    public var id: Int
    /// The customer's full name.
    public var name: String
    /// The customer's e-mail address.
    public var email: String
    /// The version of the customer's event stream this answer was read at (Keel counts from 0: 0
    /// after the registration, one more for each change), for an optimistic
    /// ``ChangeCustomerEmail``; `nil` where the answer does not come from the stream.
    public var version: UInt64?

    /// Creates a customer.
    /// - Parameters:
    ///   - id: The customer's id.
    ///   - name: The full name.
    ///   - email: The e-mail address.
    ///   - version: The stream version it was read at, if any.
    public init(id: Int, name: String, email: String, version: UInt64? = nil) {
        self.id = id
        self.name = name
        self.email = email
        self.version = version
    }
}

/// Asks the user service for one customer; fails with ``UserError/unknownUser(id:)`` when there is
/// no customer with that id.
public struct GetUser: ServiceRequest {
    /// The customer.
    public typealias Response = User
    /// The customer's id.
    public var id: Int

    /// Asks for customer `id`.
    /// - Parameter id: The customer's id.
    public init(id: Int) {
        self.id = id
    }
}

// MARK: Catalog

/// A product the shop sells, with its price in cents.
package struct Product: Sendable, Codable, Hashable {
    package var sku: String
    package var name: String
    package var priceCents: Int
}

/// Asks the catalog service for one product.
package struct GetProduct: ServiceRequest {
    package typealias Response = Product
    package var sku: String
}

// MARK: Inventory

/// So many units of one product.
public struct OrderLine: Sendable, Codable, Hashable {
    /// The product's stock-keeping unit, such as `keyboard`.
    public var sku: String
    /// How many units; an order refuses a quantity below 1.
    public var quantity: Int

    /// Creates a line.
    /// - Parameters:
    ///   - sku: The product's stock-keeping unit.
    ///   - quantity: How many units.
    public init(sku: String, quantity: Int) {
        self.sku = sku
        self.quantity = quantity
    }
}

/// How many units of a product are on the shelf.
package struct StockLevel: Sendable, Codable, Hashable {
    package var sku: String
    package var available: Int
}

/// Asks the inventory service how many units of a product are available.
package struct CheckStock: ServiceRequest {
    package typealias Response = StockLevel
    package var sku: String

    package init(sku: String) {
        self.sku = sku
    }
}

/// Takes units of several products off the shelf, all of them or none.
///
/// With a `key`, asking again is safe: a second request under the same key is answered with the
/// reservation the first one made, and a key given up with ``CancelReservation`` is refused.
package struct ReserveStock: ServiceRequest {
    package typealias Response = StockReservation
    package var lines: [OrderLine]
    /// The caller's idempotency key, if any.
    package var key: String? = nil
}

/// Gives up the reservation made under `key`, whether or not it was ever made: releases it if it
/// was, and refuses any reservation asked for under that key from then on. It undoes a
/// ``ReserveStock`` whose answer never came back (the inventory's process died, the request's
/// deadline passed in transit), which the caller cannot release by id.
///
/// The answer says whether this call released stock.
package struct CancelReservation: ServiceRequest {
    package typealias Response = Bool
    package var key: String
}

/// Puts a reservation's stock back on the shelf: the compensation of ``ReserveStock``.
///
/// Releasing a reservation twice, or one that does not exist, changes nothing: the answer says
/// whether this call released it.
package struct ReleaseStock: ServiceRequest {
    package typealias Response = Bool
    package var reservationID: Int
}

/// The inventory's receipt for a reservation.
package struct StockReservation: Sendable, Codable, Hashable {
    package var id: Int
    package var lines: [OrderLine]
}

// MARK: Payments

/// Asks the payment service to charge a customer.
///
/// The route of this request carries a resilience pipeline (see `PaymentResilience`): a call may
/// be retried, cut short by a timeout, or refused at once by an open circuit breaker or a full
/// bulkhead, which the caller sees as a `RequestError` with code `circuitOpen` or `bulkheadFull`.
package struct ChargePayment: ServiceRequest {
    package typealias Response = PaymentReceipt
    package var userID: Int
    package var amountCents: Int
    /// What the charge is for, as the customer's statement shows it.
    package var reference: String
    /// The caller's idempotency key, if any: a charge asked for again under the same key is
    /// answered with the first one's receipt, and takes no money twice.
    package var idempotencyKey: String? = nil
}

/// The gateway's receipt for a charge.
package struct PaymentReceipt: Sendable, Codable, Hashable {
    package var id: Int
    package var amountCents: Int
}

// MARK: Orders

/// Asks the order service to place an order: it checks the customer, prices the lines, reserves
/// the stock and charges the customer; a refusal is an ``OrderError``.
public struct PlaceOrder: ServiceRequest {
    /// The placed order.
    public typealias Response = Order
    /// The customer who orders.
    public var userID: Int
    /// What they order, at least one line.
    public var lines: [OrderLine]
    /// The caller's name for this order, unique per order (1 to 100 characters), if it gives one:
    /// placing an order again under the same reference places nothing new, but answers what
    /// became of the first (the order, or the refusal). A caller whose request got no answer (a
    /// timeout, a lost connection, a process that died) asks again with the same reference.
    public var reference: String?

    /// Creates the request.
    /// - Parameters:
    ///   - userID: The customer's id.
    ///   - lines: The lines.
    ///   - reference: The caller's name for the order, to place it at most once; `nil` for none.
    public init(userID: Int, lines: [OrderLine], reference: String? = nil) {
        self.userID = userID
        self.lines = lines
        self.reference = reference
    }
}

/// Asks the order service for an order it placed; fails with ``OrderError/unknownOrder(id:)``
/// when there is none with that id.
public struct GetOrder: ServiceRequest {
    /// The order.
    public typealias Response = Order
    /// The order's id.
    public var id: Int

    /// Asks for order `id`.
    /// - Parameter id: The order's id.
    public init(id: Int) {
        self.id = id
    }
}

/// A placed order.
public struct Order: Sendable, Codable, Hashable {
    /// One line of an order, priced when the order was placed.
    public struct Item: Sendable, Codable, Hashable {
        /// The product's stock-keeping unit.
        public var sku: String
        /// The product's name.
        public var name: String
        /// How many units.
        public var quantity: Int
        /// The price of one unit when the order was placed, in cents.
        public var unitPriceCents: Int
    }

    /// The order's id, from 1 up in the order they were placed.
    public var id: Int
    /// The customer who ordered.
    public var userID: Int
    /// The priced lines.
    public var items: [Item]
    /// The inventory's reservation of the stock.
    public var reservationID: Int
    /// The payment gateway's receipt.
    public var paymentID: Int

    /// What the order costs, in cents.
    public var totalCents: Int {
        self.items.reduce(0) { $0 + $1.quantity * $1.unitPriceCents }
    }
}

/// Published by the order service when an order has been placed.
package struct OrderCreated: Event {
    package static let topic = "order.created"
    package var orderID: Int
    package var userID: Int
    package var items: [Order.Item]
    package var totalCents: Int
}

/// Published by the order service when it refuses an order.
package struct OrderRejected: Event {
    package static let topic = "order.rejected"
    package var userID: Int
    package var reason: String
}

// MARK: Formatting

/// `$1,234.50` for 123450 cents.
package func dollars(_ cents: Int) -> String {
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
package func milliseconds(_ duration: Duration) -> String {
    "\(duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000) ms"
}

/// `2 × keyboard, 1 × mouse`.
func describe(_ lines: [OrderLine]) -> String {
    lines.map { "\($0.quantity) × \($0.sku)" }.joined(separator: ", ")
}
