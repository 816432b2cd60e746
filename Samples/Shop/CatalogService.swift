import Keel

/// Why the catalog service could not answer.
enum CatalogError: Error, CustomStringConvertible {
    case unknownProduct(sku: String)

    var description: String {
        switch self {
        case .unknownProduct(let sku): "the catalog has no product \"\(sku)\""
        }
    }
}

/// Knows what the shop sells and at what price.
actor CatalogService: ServiceActor {
    static let name: ServiceName = "catalog"

    /// The service's own storage, keyed by SKU.
    private var products: [String: Product] = [
        "keyboard": Product(sku: "keyboard", name: "Mechanical keyboard", priceCents: 89_00),
        "mouse": Product(sku: "mouse", name: "Wireless mouse", priceCents: 25_00),
        "monitor": Product(sku: "monitor", name: "27-inch monitor", priceCents: 249_00),
        "cable": Product(sku: "cable", name: "USB-C cable", priceCents: 9_50),
    ]

    nonisolated func registerHandlers(_ handlers: inout RequestHandlers<CatalogService>) {
        handlers.on(GetProduct.self) { service, request in
            guard let product = service.products[request.sku] else {
                throw CatalogError.unknownProduct(sku: request.sku)
            }
            say(Self.name, "\(product.sku) costs \(dollars(product.priceCents))")
            return product
        }
    }

    func stop() async throws {
        say(Self.name, "stopped")
    }
}
