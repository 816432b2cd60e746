import HTTPTypes
import Hummingbird
import Synchronization

/// The load check's baseline: `GET /baseline/customers/{id}` and `POST /baseline/orders` answer
/// the same JSON as the real routes, from plain values in this struct, without Keel. They go
/// through the same middleware (ids, trace header, log line, drain gate, JSON coding), so that
/// the ratio of the two measures what Keel's services add. Served only with `--baseline`.
final class BaselineRoutes: Sendable {
    let maxBodyBytes: Int
    /// The ids of the orders the baseline has "placed".
    private let orders = Atomic<Int>(0)

    init(maxBodyBytes: Int) {
        self.maxBodyBytes = maxBodyBytes
    }

    private static let customers = [
        1: ("Ada Lovelace", "ada@example.com"),
        2: ("Grace Hopper", "grace@example.com"),
        3: ("Alan Turing", "alan@example.com"),
    ]
    private static let products = [
        "keyboard": ("Mechanical keyboard", 89_00),
        "mouse": ("Wireless mouse", 25_00),
        "monitor": ("27-inch monitor", 249_00),
        "cable": ("USB-C cable", 9_50),
    ]

    private struct Customer: Encodable {
        var id: Int
        var name: String
        var email: String
        var version: UInt64
    }

    func add(to group: RouterGroup<ShopRequestContext>) {
        group.get("baseline/customers/{id}") { _, context in
            guard let id = context.parameters.get("id", as: Int.self), let (name, email) = Self.customers[id] else {
                throw APIError(.notFound, "unknown_customer", "no customer has this id")
            }
            return JSONBody.response(Customer(id: id, name: name, email: email, version: 0))
        }
        group.post("baseline/orders") { request, _ in
            let body = try await JSONBody.decode(OrderPlacement.self, from: request, limit: self.maxBodyBytes)
            guard Self.customers[body.customerId] != nil else {
                throw APIError(
                    .unprocessableContent,
                    "invalid_order",
                    "there is no customer with id \(body.customerId)"
                )
            }
            var items: [OrderResource.Item] = []
            for line in body.lines {
                guard let (name, price) = Self.products[line.sku] else {
                    throw APIError(.unprocessableContent, "invalid_order", "the shop does not sell \"\(line.sku)\"")
                }
                items.append(.init(sku: line.sku, name: name, quantity: line.quantity, unitPriceCents: price))
            }
            let id = self.orders.wrappingAdd(1, ordering: .relaxed).newValue
            let order = Order(
                id: id,
                customerId: body.customerId,
                items: items,
                totalCents: items.reduce(0) { $0 + $1.quantity * $1.unitPriceCents },
                reservationId: id,
                paymentId: id
            )
            return JSONBody.response(order, status: .created, headers: [.location: "/baseline/orders/\(id)"])
        }
    }

    private struct Order: Encodable {
        var id: Int
        var customerId: Int
        var items: [OrderResource.Item]
        var totalCents: Int
        var reservationId: Int
        var paymentId: Int
    }
}
