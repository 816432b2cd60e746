import Foundation
import KeelCore
import KeelEventSourcing
import KeelTesting
import Synchronization
import Testing

@testable import Keel

/// Durable publications and subscriptions: at least once, across restarts, with each
/// publication's state listable and failed ones resubmitted.
@Suite("Durable subscriptions", .timeLimit(.minutes(1)))
struct DurableSubscriptionTests {
    struct MissingEnvironment: Error {}
    struct HandlerFailure: Error {}

    struct OrderShipped: DomainEvent, Equatable {
        static let eventType = "order.shipped"
        var orderID: Int
    }

    /// What the subscriber's handler saw, and which orders make it fail.
    final class Deliveries: Sendable {
        private let state = Lock<(orders: [Int], failing: Set<Int>)>(([], []))

        var orders: [Int] { self.state.withLock { $0.orders } }

        func fail(_ orders: Set<Int>) { self.state.withLock { $0.failing = orders } }

        func deliver(_ order: Int) throws {
            try self.state.withLock { state throws(HandlerFailure) in
                guard !state.failing.contains(order) else { throw HandlerFailure() }
                state.orders.append(order)
            }
        }
    }

    actor Shipping: ServiceActor {
        static let name: ServiceName = "shipping"
        private var environment: ServiceEnvironment?

        func start(_ environment: ServiceEnvironment) async throws {
            self.environment = environment
        }

        func ship(_ order: Int) async throws -> AppendResult {
            guard let environment = self.environment else { throw MissingEnvironment() }
            return try await environment.publishDurably(OrderShipped(orderID: order))
        }
    }

    actor Mailer: ServiceActor {
        static let name: ServiceName = "mailer"
        let deliveries: Deliveries
        private(set) var subscription: DurableSubscription?

        init(_ deliveries: Deliveries) {
            self.deliveries = deliveries
        }

        func start(_ environment: ServiceEnvironment) async throws {
            var configuration = ProjectionRunner.Configuration()
            configuration.maxAttempts = 1
            let deliveries = self.deliveries
            self.subscription = try await environment.subscribeDurably(
                to: OrderShipped.self,
                name: "shipping-mails",
                configuration: configuration
            ) { event, _ in
                try deliveries.deliver(event.orderID)
            }
        }
    }

    static func directory() -> String {
        FileManager.default.temporaryDirectory.path + "/keel-durable-\(UInt64.random(in: 0...UInt64.max))"
    }

    @Test("delivered at least once across restarts, from the subscriber's own checkpoint")
    func acrossRestarts() async throws {
        let directory = Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var configuration = TestHost.defaultConfiguration
        configuration.storage = .directory(directory)

        let first = Deliveries()
        let mailer = Mailer(first)
        let shipping = Shipping()
        try await TestHost.with(services: [shipping, mailer], configuration: configuration) { _ in
            var last: UInt64 = 0
            for order in 1...3 {
                last = try await shipping.ship(order).positions.lowerBound
            }
            let subscription = try #require(await mailer.subscription)
            try await subscription.waitUntilDelivered(through: last)
            #expect(first.orders == [1, 2, 3])
            let publications = try await subscription.publications()
            #expect(publications.map(\.state) == [.completed, .completed, .completed])
            #expect(publications.allSatisfy { $0.eventType == "order.shipped" })
        }

        // A new process: the subscriber goes on after what it delivered, and gets only the new one.
        let second = Deliveries()
        let mailerAgain = Mailer(second)
        let shippingAgain = Shipping()
        try await TestHost.with(services: [shippingAgain, mailerAgain], configuration: configuration) { _ in
            let position = try await shippingAgain.ship(4).positions.lowerBound
            let subscription = try #require(await mailerAgain.subscription)
            try await subscription.waitUntilDelivered(through: position)
            #expect(second.orders == [4])
            let status = try await subscription.status()
            #expect(status.failed.isEmpty)
            #expect(status.deliveredUpTo == position + 1)
        }
    }

    @Test("a failing delivery is listed as failed, the others go on, and a resubmission delivers it")
    func failedAndResubmitted() async throws {
        let deliveries = Deliveries()
        deliveries.fail([2])
        let mailer = Mailer(deliveries)
        let shipping = Shipping()
        try await TestHost.with(services: [shipping, mailer]) { _ in
            var positions: [UInt64] = []
            for order in 1...3 {
                positions.append(try await shipping.ship(order).positions.lowerBound)
            }
            let subscription = try #require(await mailer.subscription)
            try await subscription.waitUntilDelivered(through: positions[2])
            #expect(deliveries.orders == [1, 3])
            var publications = try await subscription.publications()
            #expect(publications.map(\.state) == [.completed, .failed, .completed])
            #expect(try await subscription.status().failed.map(\.position) == [positions[1]])

            deliveries.fail([])
            #expect(try await subscription.resubmit(position: positions[1]))
            #expect(deliveries.orders == [1, 3, 2])
            publications = try await subscription.publications()
            #expect(publications.map(\.state) == [.completed, .completed, .completed])
        }
    }

    /// Subscribes durably to the user aggregate's registrations (the aggregate's own events).
    actor Welcomer: ServiceActor {
        static let name: ServiceName = "welcomer"
        let welcomed = HarnessFixtures.Log()
        private(set) var subscription: DurableSubscription?

        func start(_ environment: ServiceEnvironment) async throws {
            let welcomed = self.welcomed
            self.subscription = try await environment.subscribeDurably(
                to: CQRSTests.UserRegistered.self,
                name: "welcome"
            ) { event, recorded in
                welcomed.append("\(event.name) <\(event.email)> from \(recorded.stream)")
            }
        }
    }

    @Test("an aggregate's events are publications too: same append, no outbox write")
    func aggregateEventsArePublications() async throws {
        let welcomer = Welcomer()
        try await TestHost.with(services: [CQRSTests.UserService(), welcomer]) { test in
            let receipt = try await test.client.send(
                CQRSTests.RegisterUser(aggregateID: "ada", email: "ada@example.com", name: "Ada")
            )
            let subscription = try #require(await welcomer.subscription)
            try await subscription.waitUntilDelivered(through: try #require(receipt.position))
            #expect(welcomer.welcomed.values == ["Ada <ada@example.com> from user/user-ada"])
        }
    }
}
