import HTTPTypes
import Hummingbird
import Keel
import KeelCore
import ShopServices

/// The shop's API: customers and orders, each route one Keel request through the host's client,
/// bounded by the configured request timeout.
struct ShopRoutes: Sendable {
    let client: RequestClient
    let maxBodyBytes: Int
    let requestTimeout: Duration

    func add(to group: RouterGroup<ShopRequestContext>) {
        group.post("customers") { request, _ in try await self.register(request) }
        group.get("customers") { request, _ in try await self.listByDomain(request) }
        group.get("customers/{id}") { _, context in try await self.customer(context) }
        group.put("customers/{id}/email") { request, context in try await self.changeEmail(request, context) }
        group.post("orders") { request, _ in try await self.placeOrder(request) }
        group.get("orders/{id}") { _, context in try await self.order(context) }
        group.get("stock/{sku}") { _, context in try await self.stock(context) }
    }

    private func send<R: ServiceRequest>(_ request: R) async throws(RequestError) -> R.Response {
        try await self.client.send(request, timeout: self.requestTimeout)
    }

    /// `POST /customers` → 201 with the customer, its version and its event's position.
    private func register(_ request: Request) async throws -> Response {
        let body = try await JSONBody.decode(CustomerRegistration.self, from: request, limit: self.maxBodyBytes)
        let receipt = try await self.send(
            RegisterCustomer(aggregateID: String(body.id), name: body.name, email: body.email)
        )
        var headers: HTTPFields = [.location: "/customers/\(body.id)"]
        if let position = receipt.position { headers[.readPosition] = String(position) }
        return JSONBody.response(
            CustomerWrite(
                id: body.id,
                name: body.name,
                email: body.email,
                version: receipt.version,
                position: receipt.position
            ),
            status: .created,
            headers: headers
        )
    }

    /// `GET /customers/{id}` → 200 with the customer and its version.
    private func customer(_ context: ShopRequestContext) async throws -> Response {
        let id = try Self.id(context, resource: "customer")
        let user = try await self.send(GetUser(id: id))
        return JSONBody.response(CustomerResource(user))
    }

    /// `PUT /customers/{id}/email` → 200 with the new version and the event's position.
    private func changeEmail(_ request: Request, _ context: ShopRequestContext) async throws -> Response {
        let id = try Self.id(context, resource: "customer")
        let body = try await JSONBody.decode(EmailChange.self, from: request, limit: self.maxBodyBytes)
        let receipt = try await self.send(
            ChangeCustomerEmail(aggregateID: String(id), email: body.email, expectedVersion: body.expectedVersion)
        )
        var headers: HTTPFields = [:]
        if let position = receipt.position { headers[.readPosition] = String(position) }
        return JSONBody.response(
            CustomerWrite(id: id, email: body.email, version: receipt.version, position: receipt.position),
            headers: headers
        )
    }

    /// `GET /customers?domain=…&minPosition=…` → 200 with the customers at the domain, once the
    /// read model includes `minPosition`.
    private func listByDomain(_ request: Request) async throws -> Response {
        let query = request.uri.queryParameters
        guard let domain = query["domain"].map(String.init), !domain.isEmpty else {
            throw APIError(.unprocessableContent, "missing_domain", "give the e-mail domain: ?domain=example.com")
        }
        var minPosition: UInt64?
        if let text = query["minPosition"] {
            guard let position = UInt64(text) else {
                throw APIError(.badRequest, "bad_position", "minPosition must be a non-negative integer")
            }
            minPosition = position
        }
        let listings = try await self.send(CustomersByDomain(domain: domain, minimumPosition: minPosition))
        let entries = listings.compactMap { listing in
            Int(listing.id).map { CustomerList.Entry(id: $0, name: listing.name, email: listing.email) }
        }
        return JSONBody.response(
            CustomerList(domain: domain, minPosition: minPosition, customers: entries.sorted { $0.id < $1.id })
        )
    }

    /// `POST /orders` → 201 with the placed order.
    private func placeOrder(_ request: Request) async throws -> Response {
        let body = try await JSONBody.decode(OrderPlacement.self, from: request, limit: self.maxBodyBytes)
        let order = try await self.send(
            PlaceOrder(
                userID: body.customerId,
                lines: body.lines.map { OrderLine(sku: $0.sku, quantity: $0.quantity) },
                reference: body.reference
            )
        )
        return JSONBody.response(OrderResource(order), status: .created, headers: [.location: "/orders/\(order.id)"])
    }

    /// `GET /stock/{sku}` → 200 with the units on the shelf.
    private func stock(_ context: ShopRequestContext) async throws -> Response {
        let sku = context.parameters.get("sku") ?? ""
        let available = try await ShopAssembly.availableStock(of: sku, using: self.client, timeout: self.requestTimeout)
        return JSONBody.response(StockResource(sku: sku, available: available))
    }

    /// `GET /orders/{id}` → 200 with the order.
    private func order(_ context: ShopRequestContext) async throws -> Response {
        let id = try Self.id(context, resource: "order")
        let order = try await self.send(GetOrder(id: id))
        return JSONBody.response(OrderResource(order))
    }

    /// The `{id}` path parameter: a path that names no possible id names no resource (404).
    private static func id(_ context: ShopRequestContext, resource: String) throws(APIError) -> Int {
        guard let id = context.parameters.get("id", as: Int.self) else {
            throw APIError(.notFound, "unknown_\(resource)", "no \(resource) has this id")
        }
        return id
    }
}
