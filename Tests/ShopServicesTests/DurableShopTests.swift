import Keel
import KeelCore
import KeelEventSourcing
import KeelTesting
import Testing

@testable import ShopServices

/// Stores that outlive a host: each `run` starts a new host on them, as a process that restarts
/// on the same database does.
struct DurableShop {
    let events = InMemoryEventStore()
    let state = InMemoryStateStore()
    let clock = TestClock()

    /// Runs `body` on a new host over the shared stores, with `services` and the user service.
    func run<T: Sendable>(_ services: [any ServiceActor], _ body: (TestHost) async throws -> T) async throws -> T {
        var configuration = TestHost.defaultConfiguration
        configuration.storage = .stores(events: self.events, state: self.state, name: "durable shop")
        return try await TestHost.with(services: services, configuration: configuration, clock: self.clock) { host in
            try await host.register { environment in try await UserService(environment: environment, narrator: .silent)
            }
        } _: { test in
            try await body(test)
        }
    }

    /// The shop's order-taking services, durable, on `gateway`.
    func services(_ gateway: PaymentGateway, durable: Bool = true) -> [any ServiceActor] {
        [
            CatalogService(narrator: .silent),
            InventoryService(durable: durable, narrator: .silent),
            PaymentService(gateway: gateway, durable: durable, narrator: .silent),
            ShippingService(courier: Courier(), narrator: .silent),
            OrderService(durable: durable, narrator: .silent),
        ]
    }
}

@Suite("The shop's durable services", .timeLimit(.minutes(2)))
struct DurableShopTests {
    @Test(
        "a durable inventory counts its stock from its reservations after a restart; keys answer once; a cancelled key is refused"
    )
    func inventoryAfterRestart() async throws {
        let shop = DurableShop()
        let inventory = { InventoryService(stock: ["cable": 10], durable: true, narrator: .silent) }
        let (first, second) = try await shop.run([inventory()]) { test in
            let first = try await test.client.send(
                ReserveStock(lines: [OrderLine(sku: "cable", quantity: 3)], key: "k1")
            )
            let second = try await test.client.send(ReserveStock(lines: [OrderLine(sku: "cable", quantity: 2)]))
            #expect(try await test.client.send(ReleaseStock(reservationID: second.id)))
            // Nothing was reserved under k3, and nothing will be.
            #expect(try await test.client.send(CancelReservation(key: "k3")) == false)
            #expect(try await test.client.send(CheckStock(sku: "cable")).available == 7)
            return (first, second)
        }
        try await shop.run([inventory()]) { test in
            #expect(try await test.client.send(CheckStock(sku: "cable")).available == 7)
            // Asked again under its key: the same reservation, no more stock taken.
            let again = try await test.client.send(
                ReserveStock(lines: [OrderLine(sku: "cable", quantity: 3)], key: "k1")
            )
            #expect(again == first)
            #expect(try await test.client.send(CheckStock(sku: "cable")).available == 7)
            // Released before the restart: not released twice.
            #expect(try await test.client.send(ReleaseStock(reservationID: second.id)) == false)
            await #expect(throws: RequestError.self) {
                try await test.client.send(ReserveStock(lines: [OrderLine(sku: "cable", quantity: 1)], key: "k3"))
            }
            // Ids are not reused.
            let third = try await test.client.send(ReserveStock(lines: [OrderLine(sku: "cable", quantity: 1)]))
            #expect(third.id == second.id + 1)
            // Cancelling a key that reserved releases its stock.
            #expect(try await test.client.send(CancelReservation(key: "k1")))
            #expect(try await test.client.send(CheckStock(sku: "cable")).available == 9)
        }
    }

    @Test("an inventory in memory opens afresh on every start")
    func inventoryInMemory() async throws {
        let shop = DurableShop()
        let inventory = { InventoryService(stock: ["cable": 10], narrator: .silent) }
        try await shop.run([inventory()]) { test in
            _ = try await test.client.send(ReserveStock(lines: [OrderLine(sku: "cable", quantity: 3)], key: "k1"))
        }
        try await shop.run([inventory()]) { test in
            let available = try await test.client.send(CheckStock(sku: "cable")).available
            #expect(available == 10)
        }
    }

    @Test("an acknowledged order survives a restart, and an order placed again under its reference is the same order")
    func orderAfterRestart() async throws {
        let shop = DurableShop()
        let request = PlaceOrder(userID: 1, lines: [OrderLine(sku: "keyboard", quantity: 2)], reference: "web-1")
        let gateway = PaymentGateway(clock: shop.clock, random: RandomSource(seed: 1))
        let order = try await shop.run(shop.services(gateway)) { test in
            try await test.client.send(request)
        }
        // A new gateway: the old one's memory of its keys died with the process.
        let restarted = PaymentGateway(clock: shop.clock, random: RandomSource(seed: 1))
        try await shop.run(shop.services(restarted)) { test in
            #expect(try await test.client.send(GetOrder(id: order.id)) == order)
            #expect(try await test.client.send(request) == order)
            #expect(try await test.client.send(CheckStock(sku: "keyboard")).available == 3)
            // The payment service answered from its stored receipt: the gateway was not asked.
            #expect(await restarted.calls == 0)
            let next = try await test.client.send(
                PlaceOrder(userID: 1, lines: [OrderLine(sku: "mouse", quantity: 1)], reference: "web-2")
            )
            #expect(next.id == order.id + 1)
            let refused = await #expect(throws: RequestError.self) {
                try await test.client.send(
                    PlaceOrder(userID: 1, lines: [OrderLine(sku: "mouse", quantity: 1)], reference: "")
                )
            }
            guard case .invalidReference? = refused?.underlying as? OrderError else {
                Issue.record("expected invalidReference, got \(String(describing: refused))")
                return
            }
        }
    }

    @Test("a refused order placed again under its reference is refused again, and its stock stays released")
    func refusedOrderAgain() async throws {
        let shop = DurableShop()
        let gateway = PaymentGateway(clock: shop.clock, random: RandomSource(seed: 1))
        await gateway.behave(.flaky(failureRate: 1))
        let request = PlaceOrder(userID: 1, lines: [OrderLine(sku: "monitor", quantity: 1)], reference: "web-9")
        try await shop.run(shop.services(gateway)) { test in
            let error = await #expect(throws: RequestError.self) { try await test.client.send(request) }
            guard case .paymentFailed? = error?.underlying as? OrderError else {
                Issue.record("expected paymentFailed, got \(String(describing: error))")
                return
            }
            // Placed again: the refusal, as the saga's journal recorded it.
            let again = await #expect(throws: RequestError.self) { try await test.client.send(request) }
            guard case .refusedBefore(let step, _)? = again?.underlying as? OrderError else {
                Issue.record("expected refusedBefore, got \(String(describing: again))")
                return
            }
            #expect(step == "charge")
            let monitors = try await test.client.send(CheckStock(sku: "monitor")).available
            #expect(monitors == 1)
        }
    }
}
