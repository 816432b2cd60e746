import Keel
import KeelCore
import KeelEventSourcing

/// The shop's seven services, registered on a host in one call: for programs that run the shop
/// without the walk-through's instruments (the `shop-server` sample of the Integrations package).
///
/// ```swift
/// let host = ServiceHost(configuration: configuration, telemetry: telemetry)
/// let gateway = PaymentGateway(clock: host.clock, random: RandomSource())
/// let payments = PaymentResilience(clock: host.clock, random: RandomSource(), telemetry: telemetry)
/// try await ShopAssembly.register(on: host, gateway: gateway, payments: payments)
/// try await host.start()
/// let order = try await host.client.send(PlaceOrder(userID: 1, lines: [OrderLine(sku: "cable", quantity: 1)]))
/// ```
///
/// The services: `user` (customers, event-sourced in the host's storage, with the read model
/// "customers by e-mail domain"), `catalog`, `inventory`, `payment` (through `gateway`, on a route
/// guarded by `payments.pipeline`), `shipping` (books `courier`), `order` (places orders as sagas;
/// ships them with a process manager) and `notification` (listens to `order.#` on the bus, and
/// durably to shipped and cancelled orders).
///
/// The shop can also run in several processes: register a part of it (`only:`) in each, the rest
/// as stand-ins for services elsewhere (the `KeelGRPC` library's `RemoteService`, with
/// ``requests(of:)``, ``publications(of:)`` and ``errorTypes``), on one shared store, with
/// `durable: true`. The service code is the same.
public enum ShopAssembly {
    /// The stock-keeping units of the products the catalog sells.
    public static let skus = ["keyboard", "mouse", "monitor", "cable"]

    /// The shop's services, in the order they are registered.
    public static let services: [ServiceName] = [
        UserService.name, CatalogService.name, InventoryService.name, PaymentService.name, ShippingService.name,
        OrderService.name, NotificationService.name,
    ]

    /// The request types `service` answers: what a process that runs it exposes to other
    /// processes, and what a stand-in for it in another process forwards.
    /// - Parameter service: One of ``services``.
    /// - Returns: The request types; none for a service that answers none, or a name that is not
    ///   the shop's.
    public static func requests(of service: ServiceName) -> [any ServiceRequest.Type] {
        switch service {
        case UserService.name: [GetUser.self, RegisterCustomer.self, ChangeCustomerEmail.self, CustomersByDomain.self]
        case CatalogService.name: [GetProduct.self]
        case InventoryService.name: [CheckStock.self, ReserveStock.self, ReleaseStock.self, CancelReservation.self]
        case PaymentService.name: [ChargePayment.self, RefundPayment.self]
        case ShippingService.name: [BookCourier.self]
        case OrderService.name: [PlaceOrder.self, GetOrder.self, ShipOrder.self]
        default: []
        }
    }

    /// The durable publications of `service`, as it declares them: what a stand-in for it in
    /// another process declares, so that this process's durable subscriptions receive them from
    /// a store both share.
    /// - Parameter service: One of ``services``.
    /// - Returns: The event types; none for a name that is not the shop's.
    public static func publications(of service: ServiceName) -> [any DomainEvent.Type] {
        switch service {
        case PaymentService.name: PaymentService.publishes
        case ShippingService.name: ShippingService.publishes
        case OrderService.name: OrderService.publishes
        default: []
        }
    }

    /// The units of `sku` on the inventory's shelf.
    /// - Parameters:
    ///   - sku: The product's stock-keeping unit.
    ///   - client: A client of a host that runs the inventory, or a stand-in for it.
    ///   - timeout: How long the request may take.
    /// - Returns: The units; 0 for a product the shop does not stock.
    /// - Throws: The request's ``/Keel/RequestError``.
    public static func availableStock(
        of sku: String,
        using client: RequestClient,
        timeout: Duration = .seconds(5)
    ) async throws(RequestError) -> Int {
        try await client.send(CheckStock(sku: sku), timeout: timeout).available
    }

    /// The errors the shop's services throw to each other, which a caller in another process gets
    /// back as themselves (they are `Codable`) when its stand-in names them: the order service
    /// tells an unknown customer, an unknown product and missing stock apart by them.
    public static let errorTypes: [any (Error & Decodable).Type] = [
        UserError.self, CatalogError.self, InventoryError.self,
    ]

    /// Registers the shop's services on `host` and installs the payment pipeline on the
    /// `ChargePayment` route.
    ///
    /// Call it before the host starts; it does not start the host.
    /// - Parameters:
    ///   - host: A host that has not started.
    ///   - gateway: The payment gateway the payment service charges through.
    ///   - payments: The strategies that guard every charge; the host shuts its pipeline down.
    ///   - courier: The courier the shipping service books; a reliable one by default.
    ///   - courierTimeout: How long a courier has to answer a booking before the order is
    ///     cancelled and refunded.
    ///   - stockPerProduct: Units of every product on the shelf at start; `nil` keeps the
    ///     walk-through's small stock (5 keyboards, 10 mice, 1 monitor, 40 cables).
    ///   - durable: Whether the inventory's reservations, the payment service's receipts and the
    ///     order service's orders are kept in the services' storage, so that what they
    ///     acknowledged survives a crash; `false` (the walk-through's) keeps them in memory, and
    ///     every start opens the shop afresh. Customers and the order sagas' journals are in
    ///     storage either way.
    ///   - only: The services to register, for a process that runs part of the shop (the rest
    ///     registered as stand-ins for services in other processes); `nil` registers all of
    ///     ``services``.
    ///   - narrator: Where the services tell what they do.
    /// - Throws: The host's ``/Keel/HostError`` when it has started already, or when one of these
    ///   services is registered on it already.
    public static func register(
        on host: ServiceHost,
        gateway: PaymentGateway,
        payments: PaymentResilience,
        courier: Courier = Courier(),
        courierTimeout: Duration = .seconds(60),
        stockPerProduct: Int? = nil,
        durable: Bool = false,
        only: Set<ServiceName>? = nil,
        narrator: Narrator = .standardOutput
    ) async throws(HostError) {
        let wanted = { (name: ServiceName) in only?.contains(name) ?? true }
        let stock = stockPerProduct.map { units in InventoryService.openingStock.mapValues { _ in units } }
        if wanted(UserService.name) {
            try await host.register { environment in try await UserService(environment: environment, narrator: narrator)
            }
        }
        if wanted(CatalogService.name) { try await host.register(CatalogService(narrator: narrator)) }
        if wanted(InventoryService.name) {
            try await host.register(
                InventoryService(stock: stock ?? InventoryService.openingStock, durable: durable, narrator: narrator)
            )
        }
        if wanted(PaymentService.name) {
            try await host.register(PaymentService(gateway: gateway, durable: durable, narrator: narrator))
            await host.setPolicy(payments.pipeline, for: ChargePayment.self)
        }
        if wanted(ShippingService.name) {
            try await host.register(ShippingService(courier: courier, narrator: narrator))
        }
        if wanted(OrderService.name) {
            try await host.register(OrderService(courierTimeout: courierTimeout, durable: durable, narrator: narrator))
        }
        if wanted(NotificationService.name) { try await host.register(NotificationService(narrator: narrator)) }
    }
}
