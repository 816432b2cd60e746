import Keel
import KeelCore

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
/// guarded by `payments.pipeline`), `shipping` (books `courier`), `order` (orders in memory; ships
/// them with a process manager) and `notification` (listens to `order.#` on the bus, and durably to
/// shipped and cancelled orders).
public enum ShopAssembly {
    /// The stock-keeping units of the products the catalog sells.
    public static let skus = ["keyboard", "mouse", "monitor", "cable"]

    /// Registers the seven services on `host` and installs the payment pipeline on the
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
        narrator: Narrator = .standardOutput
    ) async throws(HostError) {
        let stock = stockPerProduct.map { units in InventoryService.openingStock.mapValues { _ in units } }
        try await host.register { environment in try await UserService(environment: environment, narrator: narrator) }
        try await host.register(CatalogService(narrator: narrator))
        try await host.register(InventoryService(stock: stock ?? InventoryService.openingStock, narrator: narrator))
        try await host.register(PaymentService(gateway: gateway, narrator: narrator))
        try await host.register(ShippingService(courier: courier, narrator: narrator))
        try await host.register(OrderService(courierTimeout: courierTimeout, narrator: narrator))
        try await host.register(NotificationService(narrator: narrator))
        await host.setPolicy(payments.pipeline, for: ChargePayment.self)
    }
}
