import Keel
import KeelCore
import KeelEventSourcing

/// An e-mail the shop sent (well, printed).
package struct Email: Sendable, Hashable {
    package var to: String
    package var subject: String
    package var body: String
}

/// Tells customers about their orders, and keeps an audit log of everything that happens to
/// orders.
///
/// It never gets a request from the order service: it learns of orders from events on the bus,
/// through the two subscriptions it declares in `registerHandlers`; the host makes them once the
/// service has started and ends them before it stops. Each subscription has its own mailbox and
/// task, so a slow mail server would never slow down placing orders. The handler runs with the
/// publisher's trace context, so the customer lookup it makes appears in the same trace as the
/// order that caused it.
package actor NotificationService: ServiceActor {
    package static let name: ServiceName = "notification"
    package static let dependencies: [ServiceName] = [UserService.name]

    /// The e-mails sent so far, oldest first.
    package private(set) var outbox: [Email] = []
    /// Everything that happened to orders, oldest first: one line per event matching `order.#`.
    package private(set) var auditLog: [String] = []
    /// The durable events already told, by id: a redelivered event sends no second e-mail.
    private var told: Set<EventID> = []
    /// The environment the service was started with.
    private var environment: ServiceEnvironment?
    /// Callers of `waitUntil(emails:auditEntries:)` still waiting.
    private var waiters: [Waiter] = []
    /// Where the service tells what it does.
    private let say: Narrator

    /// Creates the service.
    /// - Parameter narrator: Where the service tells what it does.
    package init(narrator: Narrator = .standardOutput) {
        self.say = narrator
    }

    package nonisolated func registerHandlers(_ handlers: inout RequestHandlers<NotificationService>) {
        // By type: only `OrderCreated`, delivered as an `OrderCreated`. The four-argument form
        // hands the handler the environment too, to send requests.
        handlers.subscribe(to: OrderCreated.self) { service, event, _, environment in
            try await service.confirm(event, in: environment)
        }
        // By pattern: every event whose topic starts with `order.`, whatever its type.
        handlers.subscribe(pattern: "order.#") { service, event, envelope in
            service.audit(event, envelope)
        }
        // Durably: what became of a shipped order, from the order service's outbox, at least once
        // and across restarts, from where each subscription left off.
        handlers.subscribeDurably(to: OrderShipped.self, name: "shipped-orders") { service, event, recorded in
            try await service.tell(
                event.userID,
                subject: "Your order #\(event.orderID) is on its way",
                body: "tracking number \(event.trackingNumber)",
                once: recorded.metadata.id
            )
        }
        handlers.subscribeDurably(to: OrderCancelled.self, name: "cancelled-orders") { service, event, recorded in
            try await service.tell(
                event.userID,
                subject: "Your order #\(event.orderID) is cancelled",
                body: "\(event.reason); \(dollars(event.refundedCents)) refunded",
                once: recorded.metadata.id
            )
        }
    }

    package func start(_ environment: ServiceEnvironment) async throws {
        self.environment = environment
    }

    package func stop() async throws {
        say(Self.name, "stopped (\(self.outbox.count) e-mails sent, \(self.auditLog.count) audit entries)")
    }

    /// Suspends until at least `emails` e-mails have been sent and `auditEntries` entries written.
    ///
    /// The program calls it so that its output stays in order; services never wait for each
    /// other like this. It is not cancellable: the program waits only for events it knows are
    /// coming.
    package func waitUntil(emails: Int, auditEntries: Int) async {
        guard self.outbox.count < emails || self.auditLog.count < auditEntries else { return }
        await withCheckedContinuation { continuation in
            self.waiters.append(Waiter(emails: emails, auditEntries: auditEntries, continuation: continuation))
        }
    }

    private struct Waiter {
        var emails: Int
        var auditEntries: Int
        var continuation: CheckedContinuation<Void, Never>
    }

    private func resumeSatisfiedWaiters() {
        let (emails, auditEntries) = (self.outbox.count, self.auditLog.count)
        let isSatisfied = { (waiter: Waiter) in waiter.emails <= emails && waiter.auditEntries <= auditEntries }
        let ready = self.waiters.filter(isSatisfied)
        self.waiters.removeAll(where: isSatisfied)
        for waiter in ready { waiter.continuation.resume() }
    }

    /// Looks up the customer and sends the confirmation. A throw would be retried by the bus's
    /// redelivery policy, then dead-lettered.
    private func confirm(_ event: OrderCreated, in environment: ServiceEnvironment) async throws {
        let user = try await environment.send(GetUser(id: event.userID))
        let lines = event.items.map { "\($0.quantity) × \($0.name)" }.joined(separator: ", ")
        let email = Email(
            to: user.email,
            subject: "Your order #\(event.orderID) is confirmed",
            body: "\(lines); total \(dollars(event.totalCents))"
        )
        self.outbox.append(email)
        say(Self.name, "e-mailed \(email.to): \"\(email.subject)\"")

        self.resumeSatisfiedWaiters()
    }

    /// E-mails customer `userID`, once per durable event.
    private func tell(_ userID: Int, subject: String, body: String, once id: EventID) async throws {
        guard !self.told.contains(id), let environment = self.environment else { return }
        let user = try await environment.send(GetUser(id: userID))
        // Checked again: another delivery of the event may have interleaved at the `await`.
        guard self.told.insert(id).inserted else { return }
        let email = Email(to: user.email, subject: subject, body: body)
        self.outbox.append(email)
        say(Self.name, "e-mailed \(email.to): \"\(email.subject)\" (\(email.body))")
        self.resumeSatisfiedWaiters()
    }

    private func audit(_ event: any Event, _ envelope: EventEnvelope) {
        let what =
            switch event {
            case let created as OrderCreated:
                "order #\(created.orderID) for customer \(created.userID), \(dollars(created.totalCents))"
            case let rejected as OrderRejected:
                "customer \(rejected.userID): \(rejected.reason)"
            default:
                envelope.eventType
            }
        let source = envelope.source?.description ?? "outside"
        self.auditLog.append("\(envelope.correlationID)  \(envelope.topic) from \(source): \(what)")
        self.resumeSatisfiedWaiters()
    }
}
