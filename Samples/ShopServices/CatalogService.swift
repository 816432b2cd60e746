import Keel

/// Why the catalog service could not answer.
package enum CatalogError: Error, Codable, CustomStringConvertible {
    case unknownProduct(sku: String)

    package var description: String {
        switch self {
        case .unknownProduct(let sku): "the catalog has no product \"\(sku)\""
        }
    }
}

/// Knows what the shop sells and at what price.
package actor CatalogService: ServiceActor {
    package static let name: ServiceName = "catalog"

    /// Where the service tells what it does.
    private let say: Narrator

    /// The service's own storage, keyed by SKU.
    private var products: [String: Product] = [
        "keyboard": Product(sku: "keyboard", name: "Mechanical keyboard", priceCents: 89_00),
        "mouse": Product(sku: "mouse", name: "Wireless mouse", priceCents: 25_00),
        "monitor": Product(sku: "monitor", name: "27-inch monitor", priceCents: 249_00),
        "cable": Product(sku: "cable", name: "USB-C cable", priceCents: 9_50),
    ]

    /// Creates the service with the shop's four products.
    /// - Parameter narrator: Where the service tells what it does.
    package init(narrator: Narrator = .standardOutput) {
        self.say = narrator
    }

    package nonisolated func registerHandlers(_ handlers: inout RequestHandlers<CatalogService>) {
        handlers.on(GetProduct.self) { service, request in
            guard let product = service.products[request.sku] else {
                throw CatalogError.unknownProduct(sku: request.sku)
            }
            service.say(Self.name, "\(product.sku) costs \(dollars(product.priceCents))")
            return product
        }
    }

    package func stop() async throws {
        say(Self.name, "stopped")
    }
}
