import Foundation
import KeelCore
import KeelEventSourcing
import KeelTestSupport
import KeelTesting
import Synchronization
import Testing

@testable import Keel

/// Durable publications and subscriptions: at least once, across restarts, with each
/// publication's state listable and failed ones resubmitted.
@Suite("Durable subscriptions", .timeLimit(.minutes(10)))
struct DurableSubscriptionTests {
    struct MissingEnvironment: Error {}
    struct HandlerFailure: Error {}

    struct OrderShipped: DomainEvent, Equatable {
        static let eventType = "order.shipped"
        var orderID: Int
    }

    /// What the subscriber's handler saw, and which orders make it fail.
    final class Deliveries: Sendable {
        private let state = Lock<(orders: [Int], lines: [String], failing: Set<Int>, contexts: [TraceContext?])>(
            ([], [], [], [])
        )

        var orders: [Int] { self.state.withLock { $0.orders } }
        /// The trace context each delivery's handler ran with.
        var contexts: [TraceContext?] { self.state.withLock { $0.contexts } }
        /// Each delivery as `delivered <order> <position> <event id>`, as the crash subscriber says it.
        var lines: [String] { self.state.withLock { $0.lines } }

        func fail(_ orders: Set<Int>) { self.state.withLock { $0.failing = orders } }

        func deliver(_ order: Int, _ recorded: RecordedEvent) throws {
            try self.state.withLock { state throws(HandlerFailure) in
                guard !state.failing.contains(order) else { throw HandlerFailure() }
                state.orders.append(order)
                state.contexts.append(TraceContext.current)
                state.lines.append("delivered \(order) \(recorded.position) \(recorded.metadata.id)")
            }
        }
    }

    actor Shipping: ServiceActor {
        static let name: ServiceName = "shipping"
        static let publishes: [any DomainEvent.Type] = [OrderShipped.self]
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
            ) { event, recorded in
                try deliveries.deliver(event.orderID, recorded)
            }
        }
    }

    static func directory() -> String {
        FileManager.default.temporaryDirectory.path + "/keel-durable-\(UInt64.random(in: 0...UInt64.max))"
    }

    @Test(
        "a subscriber SIGKILLed between its handler and its checkpoint gets that event again after a restart, and none it completed before",
        arguments: [0, 3]
    )
    func killedBetweenHandlerAndCheckpoint(completed: Int) async throws {
        await CrashTrialLane.enter()
        defer { CrashTrialLane.leave() }
        let directory = Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // The child delivers orders 1...completed and commits their checkpoint; the handler of the
        // next order runs and never returns; the one after is shipped. Then it is killed.
        let child = try CrashChild(tool: "KeelCrashSubscriber", arguments: [directory, String(completed)])
        var lines: [String] = []
        var isStopped = false
        var lastShipped: UInt64?
        while !isStopped || lastShipped == nil, let line = await child.nextLine() {
            lines.append(line)
            let fields = line.split(separator: " ")
            if line == "stopped" { isStopped = true }
            if fields.count == 3, fields[0] == "shipped", fields[1] == "\(completed + 2)" {
                lastShipped = UInt64(fields[2])
            }
        }
        let stderr = child.sigkill()
        while let line = await child.nextLine() { lines.append(line) }
        #expect(!CrashChild.hasSanitizerReport(stderr), "the child reported\n\(stderr)")
        try #require(isStopped, "the child said \(lines), stderr \(stderr)")
        let last = try #require(lastShipped)
        let delivered = lines.filter { $0.hasPrefix("delivered ") }
        #expect(delivered.compactMap { Int($0.split(separator: " ")[1]) } == Array(1...(completed + 1)))
        let interrupted = try #require(delivered.last)

        // The restart, in this process, over the directory the child left.
        var configuration = TestHost.defaultConfiguration
        configuration.storage = .directory(directory)
        let deliveries = Deliveries()
        let mailer = Mailer(deliveries)
        try await TestHost.with(services: [Shipping(), mailer], configuration: configuration) { _ in
            let subscription = try #require(await mailer.subscription)
            try await subscription.waitUntilDelivered(through: last)
            // Redelivered: the same event (position and id) whose handler ran before the kill.
            #expect(deliveries.orders == [completed + 1, completed + 2])
            #expect(deliveries.lines.first == interrupted)
            let status = try await subscription.status()
            #expect(status.deliveredUpTo == last + 1)
            #expect(status.failed.isEmpty)
        }
    }

    @Test("after a graceful restart the subscriber goes on from its own checkpoint, past what it delivered")
    func acrossGracefulRestarts() async throws {
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

    @Test(
        "a durable handler runs in the publisher's trace: same trace and correlation, a child span, the event as cause"
    )
    func handlerRunsInThePublishersTrace() async throws {
        let deliveries = Deliveries()
        let mailer = Mailer(deliveries)
        let shipping = Shipping()
        try await TestHost.with(services: [shipping, mailer]) { test in
            let root = TraceContext.makeRoot(using: test.host.random, correlationID: "order-7")
            let receipt = try await TraceContext.$current.withValue(root) { try await shipping.ship(7) }
            // Published outside any trace: the handler gets a trace of its own, still caused by the event.
            let untraced = try await shipping.ship(8)
            let subscription = try #require(await mailer.subscription)
            try await subscription.waitUntilDelivered(through: untraced.positions.lowerBound)
            // `delivered <order> <position> <event id>`
            let eventIDs = deliveries.lines.map { String($0.split(separator: " ")[3]) }
            try #require(eventIDs.count == 2)
            let contexts = deliveries.contexts
            try #require(contexts.count == 2)
            let traced = try #require(contexts[0])
            #expect(traced.traceID == root.traceID)
            #expect(traced.parentSpanID == root.spanID)
            #expect(traced.spanID != root.spanID)
            #expect(traced.correlationID == "order-7")
            #expect(traced.causationID == eventIDs[0])
            #expect(receipt.positions.lowerBound < untraced.positions.lowerBound)
            let fresh = try #require(contexts[1])
            #expect(fresh.traceID != root.traceID)
            #expect(fresh.causationID == eventIDs[1])
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
        let welcomed = HostFixtures.Values<String>()
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
            #expect(welcomer.welcomed.all == ["Ada <ada@example.com> from user/user-ada"])

            // No outbox write: besides the services' key-value records, the host's log holds the
            // aggregate's one event, and the user service has no outbox stream.
            let log = try await test.host.storage.sharedStore().readAll(from: 0, limit: .max)
            let written = log.filter { !$0.stream.name.contains("/\(EventStoreKeyValueStore.streamCategory)-") }
            #expect(written.map(\.stream) == ["user/user-ada"])
            #expect(written.map(\.type) == [CQRSTests.UserRegistered.eventType])
            #expect(try await test.host.storage.storage(for: "user").events.streamVersion("$outbox") == nil)
        }
    }
}
