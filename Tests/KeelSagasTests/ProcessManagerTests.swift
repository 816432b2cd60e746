import Foundation
import Keel
import KeelCore
import KeelEventSourcing
import KeelTesting
import Synchronization
import Testing

@testable import KeelSagas

/// The seed's choreography on a process manager: the three outcomes, duplicates, timeouts (also
/// across a restart), a failure between the state's commit and the effects' delivery, and a state
/// that no longer decodes.
@Suite("Process managers", .timeLimit(.minutes(2)))
struct ProcessManagerTests {
    /// The wall-clock time at the test clock's start.
    static let epoch: Int64 = 1_700_000_000_000_000_000

    /// A host configuration whose wall clock moves with `clock`.
    static func configuration(_ clock: TestClock, storage: StorageLocation = .inMemory) -> ServiceHost.Configuration {
        var configuration = TestHost.defaultConfiguration
        configuration.wallClock = clock.wallClock(startingAt: Self.epoch)
        configuration.storage = storage
        return configuration
    }

    /// No command deadline (a deadline sleeps on the test clock while the command runs, which would
    /// blur `waitForSleepers`), one-second pauses between deliveries, and events parked after their
    /// first failed attempt.
    static var runnerConfiguration: ProcessManagerRunner<OrderFulfilment>.Configuration {
        var configuration = ProcessManagerRunner<OrderFulfilment>.Configuration()
        configuration.commandTimeout = nil
        configuration.deliveryBackoff = .constant(.seconds(1))
        return configuration
    }

    /// The shop's four services.
    struct Shop {
        var ledger = PaymentLedger()
        var outcomes = Outcomes()
        var stock = 10
        var runner = ProcessManagerTests.runnerConfiguration

        func services() -> (order: OrderService, all: [any ServiceActor]) {
            let order = OrderService(configuration: self.runner)
            return (
                order,
                [
                    order, PaymentService(self.ledger), InventoryService(stock: self.stock),
                    NotificationService(self.outcomes),
                ]
            )
        }
    }

    // MARK: - The choreography's outcomes

    @Test("an order that is paid and in stock is confirmed, and its instance completes")
    func confirmed() async throws {
        let shop = Shop()
        let clock = TestClock()
        let (order, services) = shop.services()
        try await TestHost.with(services: services, configuration: Self.configuration(clock), clock: clock) { test in
            _ = try await test.client.send(PlaceOrder(orderID: "o-1", amount: 50, quantity: 2))
            #expect(await shop.outcomes.outcome(of: "o-1") == .confirmed)
            #expect(shop.ledger.books.value.charged == ["o-1": 50])
            #expect(shop.ledger.books.value.refunded.isEmpty)
            let instance = try #require(try await order.fulfilment.instance(for: "o-1"))
            #expect(instance.isCompleted)
            #expect(instance.state?.step == .reserving)
            #expect(instance.timeouts.isEmpty)
            #expect(instance.handledCount == 3)  // created, paid, reserved
        }
        #expect(shop.outcomes.all(of: "o-1") == [.confirmed])
    }

    @Test("an order whose payment fails is cancelled, with nothing reserved or refunded")
    func paymentFailed() async throws {
        let shop = Shop()
        shop.ledger.books.update { $0.declined = ["o-2"] }
        let clock = TestClock()
        let (order, services) = shop.services()
        try await TestHost.with(services: services, configuration: Self.configuration(clock), clock: clock) { test in
            _ = try await test.client.send(PlaceOrder(orderID: "o-2", amount: 50, quantity: 2))
            #expect(await shop.outcomes.outcome(of: "o-2") == .cancelled("payment failed: card declined"))
            #expect(shop.ledger.books.value.charged.isEmpty)
            #expect(shop.ledger.books.value.refunded.isEmpty)
            let instance = try #require(try await order.fulfilment.instance(for: "o-2"))
            #expect(instance.isCompleted)
            #expect(instance.timeouts.isEmpty)
        }
    }

    @Test("an order paid but out of stock is refunded (the compensation) and then cancelled")
    func inventoryFailed() async throws {
        var shop = Shop()
        shop.stock = 1
        let clock = TestClock()
        let (order, services) = shop.services()
        try await TestHost.with(services: services, configuration: Self.configuration(clock), clock: clock) { test in
            _ = try await test.client.send(PlaceOrder(orderID: "o-3", amount: 70, quantity: 5))
            #expect(await shop.outcomes.outcome(of: "o-3") == .cancelled("out of stock"))
            let books = shop.ledger.books.value
            #expect(books.attempts == ["o-3"])
            #expect(books.refunded == ["o-3"])
            #expect(books.charged.isEmpty)
            let instance = try #require(try await order.fulfilment.instance(for: "o-3"))
            #expect(instance.isCompleted)
            #expect(instance.state?.step == .refunding)
            #expect(instance.handledCount == 4)  // created, paid, reservation failed, refunded
        }
    }

    // MARK: - Duplicates

    @Test("an event delivered twice (one event id) is handled once: one command, one state change")
    func duplicateEvent() async throws {
        let shop = Shop()
        shop.ledger.books.update { $0.isSilent = true }  // the instance stays where the event left it
        let clock = TestClock()
        let (order, services) = shop.services()
        try await TestHost.with(services: services, configuration: Self.configuration(clock), clock: clock) { _ in
            let event = OrderCreated(orderID: "o-4", amount: 20, quantity: 1)
            let last = try await order.publishTwice(event, id: EventID(high: 4, low: 4))
            let subscription = try #require(await order.fulfilment.subscriptions.first)
            try await subscription.waitUntilDelivered(through: last)
            _ = await shop.ledger.books.wait { $0.attempts.count == 1 }
            // The charge's relay has nothing left once it delivered the one charge (it marks it
            // delivered after the request returns): the second delivery recorded no second effect.
            await order.fulfilment.waitUntilEffectsDelivered()
            #expect(try await order.fulfilment.pendingEffects().isEmpty)
            #expect(shop.ledger.books.value.attempts == ["o-4"])
            let instance = try #require(try await order.fulfilment.instance(for: "o-4"))
            #expect(instance.handledCount == 1)
            #expect(instance.timeouts.map(\.name) == ["payment"])
            #expect(try await subscription.status().failed.isEmpty)
        }
    }

    // MARK: - Timeouts

    @Test("a payment that never answers cancels the order when its timeout fires, after a refund")
    func paymentTimeout() async throws {
        let shop = Shop()
        shop.ledger.books.update { $0.isSilent = true }
        let clock = TestClock()
        let (order, services) = shop.services()
        try await TestHost.with(services: services, configuration: Self.configuration(clock), clock: clock) { test in
            _ = try await test.client.send(PlaceOrder(orderID: "o-5", amount: 20, quantity: 1))
            await clock.waitForSleepers(count: 1)
            let instance = try #require(try await order.fulfilment.instance(for: "o-5"))
            #expect(instance.timeouts.map(\.name) == ["payment"])
            #expect(instance.timeouts.first?.dueTime == Self.epoch + 30_000_000_000)

            clock.advance(by: .seconds(29))
            #expect(clock.sleeperCount == 1)  // not yet
            clock.advance(by: .seconds(1))
            #expect(await shop.outcomes.outcome(of: "o-5") == .cancelled("payment timed out"))
            #expect(shop.ledger.books.value.refunded == ["o-5"])
            let completed = try #require(try await order.fulfilment.instance(for: "o-5"))
            #expect(completed.isCompleted)
            #expect(completed.timeouts.isEmpty)
        }
    }

    @Test(
        "a timeout pending when the host stops fires after the restart: at its due time, or at once when overdue",
        arguments: [false, true]
    )
    func timeoutAcrossRestart(overdue: Bool) async throws {
        let shop = Shop()
        shop.ledger.books.update { $0.isSilent = true }
        let clock = TestClock()
        let storage = StorageLocation.stores(
            events: InMemoryEventStore(),
            state: InMemoryStateStore(),
            name: "stores shared by two hosts"
        )
        let first = shop.services()
        try await TestHost.with(
            services: first.all,
            configuration: Self.configuration(clock, storage: storage),
            clock: clock
        ) {
            test in
            _ = try await test.client.send(PlaceOrder(orderID: "o-6", amount: 20, quantity: 1))
            await clock.waitForSleepers(count: 1)
            clock.advance(by: .seconds(10))
        }
        #expect(clock.sleeperCount == 0)  // the first host's timer is gone with it
        if overdue { clock.advance(by: .seconds(60)) }

        let second = shop.services()
        try await TestHost.with(
            services: second.all,
            configuration: Self.configuration(clock, storage: storage),
            clock: clock
        ) {
            _ in
            if !overdue {
                await clock.waitForSleepers(count: 1)
                let instance = try #require(try await second.order.fulfilment.instance(for: "o-6"))
                #expect(instance.timeouts.first?.dueTime == Self.epoch + 30_000_000_000)
                clock.advance(by: .seconds(19))
                #expect(clock.sleeperCount == 1)
                clock.advance(by: .seconds(1))
            }
            #expect(await shop.outcomes.outcome(of: "o-6") == .cancelled("payment timed out"))
        }
        #expect(shop.ledger.books.value.attempts == ["o-6"])  // the charge was not sent again
    }

    // MARK: - Failures between the commit and the delivery

    @Test("a commit that lands but reports a failure: the redelivered event only delivers the stored command")
    func failureAfterCommit() async throws {
        let shop = Shop()
        let clock = TestClock()
        let state = FailingAfterCommitStateStore()
        let storage = StorageLocation.stores(events: InMemoryEventStore(), state: state, name: "fails after a commit")
        let (order, services) = shop.services()
        try await TestHost.with(
            services: services,
            configuration: Self.configuration(clock, storage: storage),
            clock: clock
        ) {
            test in
            state.failNextOutboxCommit()
            _ = try await test.client.send(PlaceOrder(orderID: "o-7", amount: 30, quantity: 1))
            // The handler's batch is stored, the runner was told it failed, and the event's
            // subscription waits to retry it.
            await clock.waitForSleepers(count: 1)
            #expect(state.failures == 1)
            #expect(shop.ledger.books.value.attempts.isEmpty)
            #expect(try await order.fulfilment.pendingEffects().map(\.type) == [ChargePayment.name])
            clock.advance(by: .milliseconds(100))
            #expect(await shop.outcomes.outcome(of: "o-7") == .confirmed)
            #expect(shop.ledger.books.value.attempts == ["o-7"])
            let instance = try #require(try await order.fulfilment.instance(for: "o-7"))
            #expect(instance.handledCount == 3)
        }
    }

    @Test("a command committed but not delivered when the host stops is delivered after the restart, with the same key")
    func undeliveredCommandAcrossRestart() async throws {
        let shop = Shop()
        shop.ledger.books.update { $0.failures = .max }  // the payment service is down
        let clock = TestClock()
        let storage = StorageLocation.stores(
            events: InMemoryEventStore(),
            state: InMemoryStateStore(),
            name: "stores shared by two hosts"
        )
        let first = shop.services()
        try await TestHost.with(
            services: first.all,
            configuration: Self.configuration(clock, storage: storage),
            clock: clock
        ) {
            test in
            _ = try await test.client.send(PlaceOrder(orderID: "o-8", amount: 40, quantity: 1))
            _ = await shop.ledger.books.wait { $0.attempts.count == 1 }
            let pending = try await first.order.fulfilment.pendingEffects()
            #expect(pending.map(\.type) == [ChargePayment.name])
            #expect(pending.first?.idempotencyKey.hasPrefix("order-fulfilment/o-8/") == true)
        }
        shop.ledger.books.update { $0.failures = 0 }  // back up

        let second = shop.services()
        try await TestHost.with(
            services: second.all,
            configuration: Self.configuration(clock, storage: storage),
            clock: clock
        ) {
            _ in
            #expect(await shop.outcomes.outcome(of: "o-8") == .confirmed)
            let failed = try await second.order.fulfilment.failedEffects()
            #expect(failed.isEmpty)
        }
        let books = shop.ledger.books.value
        #expect(books.attempts == ["o-8", "o-8"])
        #expect(books.attemptKeys.count == 2 && books.attemptKeys[0] == books.attemptKeys[1])
        #expect(books.attemptKeys[0].hasPrefix("order-fulfilment/o-8/"))
        #expect(books.charged == ["o-8": 40])
    }

    @Test("a command that keeps failing is parked as failed, and delivered when retried")
    func parkedCommand() async throws {
        var shop = Shop()
        shop.runner.deliveryAttempts = 2
        shop.ledger.books.update { $0.failures = 2 }
        let clock = TestClock()
        let (order, services) = shop.services()
        try await TestHost.with(services: services, configuration: Self.configuration(clock), clock: clock) { test in
            _ = try await test.client.send(PlaceOrder(orderID: "o-9", amount: 10, quantity: 1))
            _ = await shop.ledger.books.wait { $0.attempts.count == 1 }
            await clock.waitForSleepers(count: 2)  // the relay's pause and the payment's timeout
            clock.advance(by: .seconds(1))
            _ = await shop.ledger.books.wait { $0.attempts.count == 2 }
            await order.fulfilment.waitUntilEffectsDelivered()
            let failed = try await order.fulfilment.failedEffects()
            #expect(failed.map(\.type) == [ChargePayment.name])
            #expect(failed.first?.attempts == 2)
            #expect(failed.first?.failure?.contains("PaymentUnavailable") == true)
            #expect(try await order.fulfilment.retryFailedEffects() == 1)
            #expect(await shop.outcomes.outcome(of: "o-9") == .confirmed)
            #expect(try await order.fulfilment.failedEffects().isEmpty)
        }
    }

    // MARK: - Bad input

    @Test("a stored state that does not decode fails with a typed error, parks the event, and is not lost")
    func undecodableState() async throws {
        var shop = Shop()
        shop.runner.subscription.maxAttempts = 1
        shop.ledger.books.update { $0.isSilent = true }
        let clock = TestClock()
        let state = InMemoryStateStore()
        let storage = StorageLocation.stores(events: InMemoryEventStore(), state: state, name: "inspected")
        let (order, services) = shop.services()
        try await TestHost.with(
            services: services,
            configuration: Self.configuration(clock, storage: storage),
            clock: clock
        ) {
            test in
            _ = try await test.client.send(PlaceOrder(orderID: "o-10", amount: 10, quantity: 1))
            _ = await shop.ledger.books.wait { $0.attempts.count == 1 }
            let namespace = state.namespace("order/process-order-fulfilment")
            let good = try #require(try await namespace.value(forKey: "s/o-10"))
            try await namespace.put(Array("not a state".utf8), forKey: "s/o-10")

            let error = await #expect(throws: ProcessManagerError.self) {
                try await order.fulfilment.instance(for: "o-10")
            }
            #expect(error?.code == .stateUndecodable)
            #expect(error?.correlationKey == "o-10")

            // The payment's answer cannot be applied: it is parked by its subscription.
            let position = try await test.client.send(AnnouncePayment(orderID: "o-10"))
            let subscription = try #require(
                await order.fulfilment.subscriptions.first { $0.name.hasSuffix("processed") }
            )
            try await subscription.waitUntilDelivered(through: position)
            let parked = try await subscription.status().failed
            #expect(parked.map(\.position) == [position])
            #expect(parked.first?.error.contains("stateUndecodable") == true)

            // Repaired, the parked event goes through.
            try await namespace.put(good, forKey: "s/o-10")
            #expect(try await subscription.resubmit(position: position))
            let instance = try #require(try await order.fulfilment.instance(for: "o-10"))
            #expect(instance.state?.step == .reserving)
        }
    }

    @Test("effects of undeclared types and reserved timeout names are refused with typed errors")
    func undeclaredEffects() throws {
        var declarations = EffectDeclarations()
        declarations.commands = [ChargePayment.name]
        var context = ProcessContext(
            process: "p",
            correlationKey: "k",
            messageID: "m",
            now: 100,
            timeouts: [:],
            declarations: declarations,
            codec: JSONEventCodec()
        )
        try context.send(ChargePayment(orderID: "k", amount: 1))
        let command = #expect(throws: ProcessManagerError.self) { try context.send(RefundPayment(orderID: "k")) }
        #expect(command?.code == .undeclaredEffect)
        let event = #expect(throws: ProcessManagerError.self) { try context.publish(OrderConfirmed(orderID: "k")) }
        #expect(event?.code == .undeclaredEffect)
        let reserved = #expect(throws: ProcessManagerError.self) { try context.schedule("$purge", after: .seconds(1)) }
        #expect(reserved?.code == .invalidArgument)
        try context.schedule("reminder", after: .seconds(2))
        #expect(context.pendingTimeouts == [ProcessTimeout(name: "reminder", dueTime: 2_000_000_100, id: "p/k/m/1")])
        #expect(context.effects.map(\.header.idempotencyKey) == ["p/k/m/0"])
        #expect(
            command?.description.hasPrefix("ProcessManagerError(undeclaredEffect) [k]: p sends RefundPayment") == true
        )
    }
}

/// Makes the payment service publish a `PaymentProcessed` on request, for the test that needs one
/// outside the choreography.
struct AnnouncePayment: ServiceRequest {
    typealias Response = UInt64
    var orderID: String
}

/// A state store that, once armed, commits the next batch that holds an outbox entry and then
/// reports a failure: the crash point between a process manager's commit and its delivery.
final class FailingAfterCommitStateStore: StateStore {
    private let base = InMemoryStateStore()
    private let state = Lock((armed: false, failures: 0))

    var failures: Int { self.state.withLock { $0.failures } }

    func failNextOutboxCommit() { self.state.withLock { $0.armed = true } }

    func value(forKey key: String, in namespace: String) throws(KeyValueStoreError) -> [UInt8]? {
        try self.base.value(forKey: key, in: namespace)
    }

    func keys(withPrefix prefix: String, in namespace: String) -> [String] {
        self.base.keys(withPrefix: prefix, in: namespace)
    }

    func namespaces() -> [String] { self.base.namespaces() }

    func commit(_ changes: StateChanges) async throws(KeyValueStoreError) {
        try await self.base.commit(changes)
        let holdsOutbox = changes.batches.contains { namespace, batch in
            batch.operations.contains { operation in
                if case .put(let key, _) = operation { return key.hasPrefix("o/") }
                return false
            }
        }
        let fail =
            holdsOutbox
            && self.state.withLock { state in
                guard state.armed else { return false }
                state.armed = false
                state.failures += 1
                return true
            }
        if fail {
            throw KeyValueStoreError(code: .storeFailed, namespace: "test", message: "injected after the commit")
        }
    }
}
