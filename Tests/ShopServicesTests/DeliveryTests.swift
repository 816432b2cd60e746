import Keel
import KeelCore
import KeelSagas
import KeelTesting
import Testing

@testable import ShopServices

/// The shop's services on a test host, with the instruments the delivery tests read: the courier,
/// the gateway, the order and notification services.
struct ShopUnderTest {
    let courier = Courier()
    let gateway: PaymentGateway
    let orders = OrderService(courierTimeout: .seconds(60), narrator: .silent)
    let notifications = NotificationService(narrator: .silent)
    let clock = TestClock()
    /// The host's wall clock starts at this second, which ends every delivery's key.
    static let epoch: Int64 = 1_800_000_000

    /// The key of order `id`'s delivery.
    static func delivery(_ id: Int) -> String { "order-\(id)-\(Self.epoch)" }

    init() {
        self.gateway = PaymentGateway(clock: self.clock, random: RandomSource(seed: 3))
    }

    /// Runs `body` with the shop's seven services started on a test host.
    func run(_ body: (TestHost) async throws -> Void) async throws {
        let services: [any ServiceActor] = [
            CatalogService(narrator: .silent),
            InventoryService(narrator: .silent),
            PaymentService(gateway: self.gateway, narrator: .silent),
            ShippingService(courier: self.courier, narrator: .silent),
            self.orders,
            self.notifications,
        ]
        var configuration = TestHost.defaultConfiguration
        configuration.wallClock = self.clock.wallClock(startingAt: Self.epoch * 1_000_000_000)
        try await TestHost.with(services: services, configuration: configuration, clock: self.clock) { host in
            try await host.register { environment in try await UserService(environment: environment, narrator: .silent)
            }
        } _: { test in
            try await body(test)
        }
    }

    /// Places an order of `quantity` × `sku` for Ada, which must be accepted.
    func place(_ sku: String, quantity: Int = 1, on test: TestHost) async throws -> Order {
        try await test.client.send(PlaceOrder(userID: 1, lines: [OrderLine(sku: sku, quantity: quantity)]))
    }

    /// The units of `sku` on the shelf.
    func stock(_ sku: String, on test: TestHost) async throws -> Int {
        try await test.client.send(CheckStock(sku: sku)).available
    }

    /// The e-mails sent so far, once there are `count`.
    func emails(_ count: Int) async -> [Email] {
        await self.notifications.waitUntil(emails: count, auditEntries: 0)
        return await self.notifications.outbox
    }
}

/// Shipping an order in the shop: a choreography of the order service's delivery process manager,
/// the shipping service and the payment service, with a refund as the compensation.
@Suite("The shop's delivery choreography", .timeLimit(.minutes(2)))
struct DeliveryTests {
    @Test("a courier that collects the parcel ships the order: one booking, an e-mail with the tracking number")
    func shipped() async throws {
        let shop = ShopUnderTest()
        try await shop.run { test in
            let order = try await shop.place("keyboard", quantity: 2, on: test)
            #expect(try await test.client.send(ShipOrder(orderID: order.id)))
            let emails = await shop.emails(2)
            #expect(emails.last?.subject == "Your order #\(order.id) is on its way")
            #expect(emails.last?.body == "tracking number KC1001")
            #expect(emails.last?.to == "ada@example.com")
            #expect(try await shop.stock("keyboard", on: test) == 3)
            // The charge stands: it can still be refunded.
            #expect(await shop.gateway.refund(order.paymentID))
            let instance = try #require(
                try await shop.orders.deliveries?.instance(for: ShopUnderTest.delivery(order.id))
            )
            #expect(instance.isCompleted)
        }
    }

    @Test("a refused parcel is compensated: the stock goes back, the charge is refunded, the order is cancelled")
    func refused() async throws {
        let shop = ShopUnderTest()
        try await shop.run { test in
            let order = try await shop.place("monitor", on: test)
            #expect(try await shop.stock("monitor", on: test) == 0)
            await shop.courier.behave(.refuses(sku: "monitor"))
            #expect(try await test.client.send(ShipOrder(orderID: order.id)))
            let emails = await shop.emails(2)
            #expect(emails.last?.subject == "Your order #\(order.id) is cancelled")
            #expect(
                emails.last?.body
                    == "the courier refused the parcel: it does not carry a monitor; \(dollars(order.totalCents)) refunded"
            )
            #expect(try await shop.stock("monitor", on: test) == 1)
            // Refunded already: a second refund does nothing.
            #expect(await shop.gateway.refund(order.paymentID) == false)
        }
    }

    @Test("a courier that never answers: the process manager's timeout compensates, on the host's clock")
    func unanswered() async throws {
        let shop = ShopUnderTest()
        try await shop.run { test in
            let order = try await shop.place("cable", quantity: 4, on: test)
            await shop.courier.behave(.unresponsive)
            #expect(try await test.client.send(ShipOrder(orderID: order.id)))
            await shop.courier.waitForBookings(1)
            let deliveries = try #require(await shop.orders.deliveries)
            await deliveries.waitUntilEffectsDelivered()
            // The courier's minute, armed when the booking was committed: nothing else sleeps.
            await shop.clock.waitForSleepers(count: 1)
            let instance = try #require(try await deliveries.instance(for: ShopUnderTest.delivery(order.id)))
            #expect(instance.timeouts.map(\.name) == ["courier"])
            #expect(try await shop.stock("cable", on: test) == 36)

            shop.clock.advance(by: .seconds(59))
            #expect(await shop.notifications.outbox.count == 1)  // the confirmation only
            shop.clock.advance(by: .seconds(1))
            let emails = await shop.emails(2)
            #expect(emails.last?.subject == "Your order #\(order.id) is cancelled")
            #expect(emails.last?.body == "no courier answered within 60000 ms; \(dollars(order.totalCents)) refunded")
            #expect(try await shop.stock("cable", on: test) == 40)
            #expect(await shop.gateway.refund(order.paymentID) == false)
        }
    }

    @Test("shipping an order twice starts one delivery; shipping an unknown order is an OrderError")
    func shipTwiceAndUnknown() async throws {
        let shop = ShopUnderTest()
        try await shop.run { test in
            let order = try await shop.place("mouse", on: test)
            async let first = test.client.send(ShipOrder(orderID: order.id))
            async let second = test.client.send(ShipOrder(orderID: order.id))
            let started = try await [first, second]
            #expect(started.sorted { !$0 && $1 } == [false, true])
            _ = await shop.emails(2)
            #expect(await shop.courier.bookings == 1)
            let error = await #expect(throws: RequestError.self) {
                try await test.client.send(ShipOrder(orderID: 99))
            }
            guard case .unknownOrder(99)? = error?.underlying as? OrderError else {
                Issue.record("expected OrderError.unknownOrder(99), got \(String(describing: error))")
                return
            }
        }
    }
}
