import ShopServices

// The API's JSON bodies. They are the HTTP contract and stay apart from the services' messages,
// so that either can change without the other.

/// `POST /customers`.
struct CustomerRegistration: Decodable {
    var id: Int
    var name: String
    var email: String
}

/// `PUT /customers/{id}/email`.
struct EmailChange: Decodable {
    var email: String
    /// The `version` the client read; the change fails with 409 if the customer moved on.
    var expectedVersion: UInt64?
}

/// `POST /orders`.
struct OrderPlacement: Decodable {
    struct Line: Decodable {
        var sku: String
        var quantity: Int
    }

    var customerId: Int
    var lines: [Line]
    /// The client's name for the order, to place it at most once (`PlaceOrder.reference`).
    var reference: String?
}

/// A customer, as `GET /customers/{id}` answers.
struct CustomerResource: Encodable {
    var id: Int
    var name: String
    var email: String
    var version: UInt64?

    init(_ user: User) {
        self.id = user.id
        self.name = user.name
        self.email = user.email
        self.version = user.version
    }
}

/// What a write answers: the customer's new version and the global position of its event, which
/// a client passes back as `minPosition` to read its own write.
struct CustomerWrite: Encodable {
    var id: Int
    var name: String?
    var email: String
    var version: UInt64?
    var position: UInt64?
}

/// `GET /customers?domain=…`.
struct CustomerList: Encodable {
    struct Entry: Encodable {
        var id: Int
        var name: String
        var email: String
    }

    var domain: String
    var minPosition: UInt64?
    var customers: [Entry]
}

/// An order, as `POST /orders` and `GET /orders/{id}` answer.
struct OrderResource: Encodable {
    struct Item: Encodable {
        var sku: String
        var name: String
        var quantity: Int
        var unitPriceCents: Int
    }

    var id: Int
    var customerId: Int
    var items: [Item]
    var totalCents: Int
    var reservationId: Int
    var paymentId: Int

    init(_ order: Order) {
        self.id = order.id
        self.customerId = order.userID
        self.items = order.items.map {
            Item(sku: $0.sku, name: $0.name, quantity: $0.quantity, unitPriceCents: $0.unitPriceCents)
        }
        self.totalCents = order.totalCents
        self.reservationId = order.reservationID
        self.paymentId = order.paymentID
    }
}

/// `GET /stock/{sku}`'s answer.
struct StockResource: Encodable {
    var sku: String
    var available: Int
}
