// The shop: a modular monolith of seven services in one process.
//
//   user, catalog, inventory   answer requests, each from its own private storage
//   payment                    charges customers through an external payment gateway (simulated),
//                              on a route guarded by a resilience pipeline; refunds them
//   shipping                   books an external courier (simulated) and publishes its answer
//   order                      places orders by request to the four above, each as a saga
//                              journaled in its storage (a failed charge releases the stock it
//                              reserved), then publishes `order.created` on the event bus; ships
//                              them by choreography: a process manager reacts to the shipping and
//                              payment services' events, and refunds an order no courier takes
//   notification               listens for `order.created` (by type) and `order.#` (by pattern),
//                              and durably for shipped and cancelled orders
//
// The user service is event-sourced in the host's embedded store (`.keel/shop`): a second run finds
// the first run's customers. Run it with `swift run shop`; `swift run shop --fresh` deletes the
// store first.
//
// The program checks what it shows: when something that should succeed fails (an order that should
// be accepted, a stock query, the customer query), or something that should be refused goes
// through, it says so at the end and exits with status 1.

import Foundation  // `exit`
import Keel
import KeelCore
import KeelEventSourcing
import KeelResilience
import ShopServices

// MARK: Helpers

/// Places one order inside a new trace whose correlation id is `correlationID`.
/// - Returns: The trace's id, and the order or the reason it was refused.
func placeOrder(
    _ request: PlaceOrder,
    correlationID: String,
    on host: ServiceHost
) async -> (trace: TraceID, result: Result<Order, any Error>) {
    // Every request and event below inherits this context: one trace, one correlation id.
    let root = TraceContext.makeRoot(using: host.random, correlationID: correlationID)
    do {
        let order = try await TraceContext.$current.withValue(root) {
            try await host.telemetry.withSpan("checkout", kind: .client, random: host.random) { _ in
                try await host.client.send(request)
            }
        }
        return (root.traceID, .success(order))
    } catch {
        return (root.traceID, .failure(error))
    }
}

/// What became of an order, in one line.
func outcome(_ result: Result<Order, any Error>) -> String {
    switch result {
    case .success(let order):
        return "accepted: order #\(order.id), \(dollars(order.totalCents))"
    case .failure(let error as RequestError):
        // The order service's handler threw, so the code is `handlerFailed` and the underlying
        // cause is the handler's own error: an `OrderError` saying why, in plain words.
        let reason = error.underlying.map { String(describing: $0) } ?? error.message
        return "refused (\(error.code)): \(reason)"
    case .failure(let error):
        return "failed: \(error)"
    }
}

/// What the program expected and did not see; printed at the end, and the exit status is 1 if any.
var surprises: [String] = []

/// Notes a surprise when `condition` is false.
@MainActor
func check(_ condition: Bool, _ surprise: @autoclosure () -> String) {
    if !condition { surprises.append(surprise()) }
}

/// What an order should come to.
enum Expected {
    /// Accepted, with an order number.
    case accepted
    /// Refused by the order service (its handler threw), for the customer's or the shop's reason.
    case refused

    /// Whether `result` is what was expected.
    func matches(_ result: Result<Order, any Error>) -> Bool {
        switch (self, result) {
        case (.accepted, .success): true
        case (.refused, .failure(let error as RequestError)): error.code == .handlerFailed
        default: false
        }
    }
}

/// The order counts the notification service will have handled once it has caught up: one audit
/// entry per order, one e-mail per accepted order.
struct Tally {
    var placed = 0
    var accepted = 0

    mutating func count(_ result: Result<Order, any Error>) {
        self.placed += 1
        if case .success = result { self.accepted += 1 }
    }
}

/// The transitions a breaker's event stream reports, one line each, until the stream ends.
func stateTransitions(_ events: CircuitBreakerEvents) async -> [String] {
    var lines: [String] = []
    for await event in events where event.kind == .stateTransition {
        guard let from = event.fromState, let to = event.toState else { continue }
        let stay = to == .open ? event.duration.map { " for \(milliseconds($0))" } ?? "" : ""
        lines.append("\(from) → \(to)\(stay)")
    }
    return lines
}

// MARK: Start

print("Keel shop: seven services in one process, talking by request and by event.")
print()

// The services' storage: a directory next to the working directory, kept between runs.
let storageDirectory = ".keel/shop"
let isFresh = CommandLine.arguments.contains("--fresh")
if isFresh {
    try? FileManager.default.removeItem(atPath: storageDirectory)
    print("--fresh: deleted \(storageDirectory); the user service starts with an empty store.")
    print()
}

// Records every span and metric in memory, so that we can print them at the end.
let recorder = InMemoryRecorder()
var configuration = ServiceHost.Configuration()
// Check health once after start; a long-running host would check every few seconds.
configuration.healthCheckInterval = nil
configuration.storage = .directory(storageDirectory)
// A seeded random source makes trace and event ids the same from run to run.
let host = ServiceHost(configuration: configuration, telemetry: recorder, random: RandomSource(seed: 42))

// The program keeps a reference to the notification service to wait for its handlers; services
// themselves reach each other only by request and event.
let notifications = NotificationService()
// The payment gateway stands for a remote API; the program keeps it to make it misbehave. Its own
// seeded random source decides which calls fail, without disturbing the host's ids.
let gateway = PaymentGateway(clock: host.clock, random: RandomSource(seed: 5))
// Retry, breaker, bulkhead and timeout around every `ChargePayment`; the program keeps them to
// watch the breaker and print their metrics.
let payments = PaymentResilience(clock: host.clock, random: RandomSource(seed: 11), telemetry: recorder)
// The courier stands for a remote API too, which the program makes refuse parcels or fall silent.
let courier = Courier()
/// How long the courier has to answer a booking before the order is cancelled and refunded.
let courierTimeout = Duration.milliseconds(300)
do {
    // The user service is built by the host when it starts, on its own storage: its repository
    // and read model are there from its first request.
    try await host.register { environment in try await UserService(environment: environment) }
    try await host.register(CatalogService())
    try await host.register(InventoryService())
    try await host.register(PaymentService(gateway: gateway))
    try await host.register(ShippingService(courier: courier))
    try await host.register(OrderService(courierTimeout: courierTimeout))
    try await host.register(notifications)
    // Every call of `ChargePayment`, whoever makes it, runs through the pipeline; a refusal by one
    // of its strategies reaches the caller as a `RequestError` whose code names it: `circuitOpen`,
    // `bulkheadFull` (or `deadlineExceeded` for the timeout).
    await host.setPolicy(payments.pipeline, for: ChargePayment.self)
    // Checks the dependency graph, then starts services in dependency order: user, catalog,
    // inventory, payment and shipping first (concurrently), then order and notification.
    try await host.start()
} catch {
    print("The host did not start: \(error)")
    exit(1)
}

let running = host.registry.services.flatMap { host.registry.instances(of: $0) }
print("Started: " + running.map { "\($0.id) (\($0.health))" }.joined(separator: ", "))

// MARK: Orders

let orders: [(correlationID: String, title: String, request: PlaceOrder, expected: Expected)] = [
    (
        "order-1", "Ada buys a keyboard and two mice",
        PlaceOrder(userID: 1, lines: [OrderLine(sku: "keyboard", quantity: 1), OrderLine(sku: "mouse", quantity: 2)]),
        .accepted
    ),
    (
        "order-2", "Grace buys the last monitor and three cables",
        PlaceOrder(userID: 2, lines: [OrderLine(sku: "monitor", quantity: 1), OrderLine(sku: "cable", quantity: 3)]),
        .accepted
    ),
    (
        "order-3", "customer 42, whom nobody knows, buys a mouse",
        PlaceOrder(userID: 42, lines: [OrderLine(sku: "mouse", quantity: 1)]),
        .refused
    ),
    (
        "order-4", "Alan wants a monitor too",
        PlaceOrder(userID: 3, lines: [OrderLine(sku: "monitor", quantity: 1)]),
        .refused
    ),
]

var traces: [String: TraceID] = [:]
var tally = Tally()
for (correlationID, title, request, expected) in orders {
    print()
    print("\(correlationID): \(title)")
    let (trace, result) = await placeOrder(request, correlationID: correlationID, on: host)
    traces[correlationID] = trace
    tally.count(result)
    check(expected.matches(result), "\(correlationID) should have been \(expected): \(outcome(result))")
    // The notification service handles `order.created` and `order.rejected` on its own
    // subscription tasks, after `send` has returned. Wait for its e-mail and audit entry so that
    // the output stays in order (and, with the seeded random source, ids repeat from run to run).
    await notifications.waitUntil(emails: tally.accepted, auditEntries: tally.placed)
    print("  → \(outcome(result))")
}

print()
print("Stock left:")
for sku in ["keyboard", "mouse", "monitor", "cable"] {
    do {
        let level = try await host.client.send(CheckStock(sku: sku))
        print("  \(level.sku): \(level.available)")
    } catch {
        print("  \(sku): unknown (\(error))")
        surprises.append("the stock of \(sku) could not be read: \(error)")
    }
}

// MARK: Payments

print()
print("Payments through a resilience pipeline")
print("  Every ChargePayment runs through, outermost first:")
print("    a retry: 2 attempts, 10 ms apart, within a retry budget shared by all charges;")
let openFor = milliseconds(PaymentResilience.openDuration)
print("    a circuit breaker: opens for \(openFor) when half of the last 10 attempts failed;")
print("    a bulkhead: 2 calls at the gateway at once, 1 more may wait 15 ms, the rest are turned away;")
print("    a timeout of \(milliseconds(PaymentResilience.attemptTimeout)) per attempt.")
print("  A refusal by one of them reaches the order service as a RequestError with code `circuitOpen`")
print("  or `bulkheadFull`, a timeout as `deadlineExceeded`.")

// The breaker publishes what happens to it as an `AsyncSequence`. A child task of this program
// collects the state transitions while the orders run; the stream, and with it the task, ends
// when the breaker shuts down, which the host does with the policies it was given when it shuts
// down below. Subscribing before the task starts misses no event.
let breakerEvents = payments.breaker.events()
async let transitions = stateTransitions(breakerEvents)

/// Places payment orders one at a time, printing each outcome and the breaker's state after it.
/// - Parameters:
///   - orders: The orders.
///   - expected: What each order should come to; `nil` where it depends on the flaky gateway.
///   - tally: The counts so far.
/// - Returns: `tally` with the orders counted.
@MainActor
func placeInTurn(
    _ orders: [(correlationID: String, title: String, request: PlaceOrder)],
    expected: Expected?,
    tally: Tally
) async -> Tally {
    var tally = tally
    for (correlationID, title, request) in orders {
        print()
        print("\(correlationID): \(title)")
        let (_, result) = await placeOrder(request, correlationID: correlationID, on: host)
        tally.count(result)
        if let expected {
            check(expected.matches(result), "\(correlationID) should have been \(expected): \(outcome(result))")
        }
        await notifications.waitUntil(emails: tally.accepted, auditEntries: tally.placed)
        print("  → \(outcome(result))")
        print("  breaker: \(payments.breaker.state)")
    }
    return tally
}

/// An order of one USB-C cable, the shop's cheapest product, for customer `userID`.
func cable(for userID: Int) -> PlaceOrder {
    PlaceOrder(userID: userID, lines: [OrderLine(sku: "cable", quantity: 1)])
}

print()
print("1. The gateway is healthy: charges go through on the first attempt.")
tally = await placeInTurn(
    [
        ("pay-1", "Ada buys a cable", cable(for: 1)),
        ("pay-2", "Grace buys a cable", cable(for: 2)),
    ],
    expected: .accepted,
    tally: tally
)

print()
await gateway.behave(.flaky(failureRate: 0.75))
print("2. The gateway turns flaky: it fails 75 % of its calls (seeded, so the same ones every run).")
print("   A failed attempt is retried once; every attempt counts in the breaker's window. Once the")
print("   breaker opens, orders are refused at once: the gateway is not called at all.")
tally = await placeInTurn(
    [
        ("pay-3", "Alan buys a cable", cable(for: 3)),
        ("pay-4", "Ada buys a cable", cable(for: 1)),
        ("pay-5", "Grace buys a cable", cable(for: 2)),
        ("pay-6", "Alan buys a cable", cable(for: 3)),
        ("pay-7", "Ada buys a cable", cable(for: 1)),
    ],
    expected: nil,
    tally: tally
)

print()
await gateway.behave(.healthy)
print("   The gateway recovers, but the breaker does not know yet: it stays open for")
print("   \(milliseconds(PaymentResilience.openDuration)), then turns half-open and lets 2 probes through.")
// The sample waits on the host's clock; the breaker moves to half-open on the same clock.
let margin = Duration.milliseconds(50)
do {
    try await host.clock.sleep(for: PaymentResilience.openDuration + margin)
} catch {
    print("   (the wait was cancelled)")
}
print("   After \(milliseconds(PaymentResilience.openDuration + margin)) the breaker is \(payments.breaker.state).")
tally = await placeInTurn(
    [
        ("pay-8", "Grace buys a cable: the first probe", cable(for: 2)),
        ("pay-9", "Alan buys a cable: the second probe", cable(for: 3)),
    ],
    expected: .accepted,
    tally: tally
)

print()
await gateway.behave(.slow(latency: .milliseconds(200)))
print("3. The gateway turns slow: it answers after 200 ms, far beyond the 40 ms an attempt may")
print("   wait. Four customers order at once, 5 ms apart: two get the bulkhead's permits and time")
print("   out twice, one waits 15 ms in its queue and gives up, one finds the queue full.")
print()
let rush: [(correlationID: String, request: PlaceOrder)] = [
    ("rush-1", cable(for: 1)), ("rush-2", cable(for: 2)), ("rush-3", cable(for: 3)), ("rush-4", cable(for: 1)),
]
let rushResults = await withTaskGroup(of: (String, Result<Order, any Error>).self) { group in
    for (index, (correlationID, request)) in rush.enumerated() {
        group.addTask {
            // Staggered so that they reach the bulkhead in the order of their names.
            try? await host.clock.sleep(for: .milliseconds(5) * index)
            return (correlationID, await placeOrder(request, correlationID: correlationID, on: host).result)
        }
    }
    var results: [String: Result<Order, any Error>] = [:]
    for await (correlationID, result) in group {
        results[correlationID] = result
    }
    return results
}
for (correlationID, _) in rush {
    guard let result = rushResults[correlationID] else { continue }
    tally.count(result)
}
await notifications.waitUntil(emails: tally.accepted, auditEntries: tally.placed)
print()
for (correlationID, _) in rush {
    guard let result = rushResults[correlationID] else { continue }
    print("\(correlationID) → \(outcome(result))")
    // Every attempt outlasts its timeout or is turned away: none of these can be charged.
    check(Expected.refused.matches(result), "\(correlationID) should have been refused: \(outcome(result))")
}
print("breaker: \(payments.breaker.state)")

let breakerMetrics = payments.breaker.metrics
print()
print("Resilience metrics:")
print(
    "  breaker \(payments.breaker.name): \(breakerMetrics.state), "
        + "\(breakerMetrics.bufferedCalls) calls in its window (\(breakerMetrics.failedCalls) failed), "
        + "\(breakerMetrics.notPermittedCalls) calls refused while open"
)
print("  bulkhead \(payments.bulkhead.metrics)")
let budget = payments.budget.snapshot
print("  retry budget: \(budget.calls) calls, \(budget.retries) retries, \(budget.refused) retries refused")
print("  gateway: \(await gateway.calls) calls received")

// MARK: Shipping, by choreography

print()
print("4. Shipping is a choreography: nobody calls the services in turn. The order service")
print("   publishes order.ready-to-ship; its delivery process manager books a courier through the")
print("   shipping service, which publishes what the courier said. When the courier refuses the")
print("   parcel, or says nothing for \(milliseconds(courierTimeout)), the process manager puts the stock back,")
print("   refunds the payment and, once payment.refunded arrives, cancels the order. Its state,")
print("   timeouts and outbox live in the order service's storage; every event here is durable.")

/// Ships order `id` and waits for the customer's e-mail about it.
/// - Returns: The e-mail count once it has been sent.
@MainActor
func ship(_ id: Int, title: String, emailsBefore: Int) async -> Int {
    print()
    print("ship-\(id): \(title)")
    let root = TraceContext.makeRoot(using: host.random, correlationID: "ship-\(id)")
    do {
        let started = try await TraceContext.$current.withValue(root) {
            try await host.client.send(ShipOrder(orderID: id))
        }
        check(started, "order #\(id) was shipped before")
    } catch {
        surprises.append("order #\(id) could not be shipped: \(error)")
        return emailsBefore
    }
    await notifications.waitUntil(emails: emailsBefore + 1, auditEntries: tally.placed)
    return emailsBefore + 1
}

var emails = tally.accepted
emails = await ship(1, title: "Ada's keyboard and mice; the courier is reliable", emailsBefore: emails)
await courier.behave(.refuses(sku: "monitor"))
emails = await ship(2, title: "Grace's monitor and cables; the courier will not carry monitors", emailsBefore: emails)
await courier.behave(.unresponsive)
emails = await ship(3, title: "Ada's cable; the courier stops answering", emailsBefore: emails)

let mail = await notifications.outbox.suffix(3).map(\.subject)
check(
    mail == [
        "Your order #1 is on its way", "Your order #2 is cancelled", "Your order #3 is cancelled",
    ],
    "the shipping e-mails were \(mail)"
)
print()
do {
    let again = try await host.client.send(ShipOrder(orderID: 1))
    print(
        "Shipping order #1 again: \(again ? "started a second delivery" : "refused, its delivery has started already")."
    )
    check(!again, "order #1 was shipped twice")
    let monitors = try await host.client.send(CheckStock(sku: "monitor"))
    print("Monitors on the shelf after order #2's cancellation: \(monitors.available).")
    check(monitors.available == 1, "order #2's monitor is not back on the shelf")
} catch {
    surprises.append("after shipping: \(error)")
}

// MARK: Customers, read from a projection

// The command side answers with the position of its last event; the query side waits until its
// read model includes it, so the answer reflects the write.
print()
let katherine = RegisterCustomer(aggregateID: "4", name: "Katherine Johnson", email: "katherine@nasa.gov")
var readPosition: UInt64?
do {
    let receipt = try await host.client.send(katherine)
    readPosition = receipt.position
    print("Registered customer 4 (its event is at position \(receipt.position.map(String.init) ?? "-")).")
} catch {
    // The aggregate refuses a second registration: an earlier run of the shop made this one.
    let refusal = error.underlying as? AggregateError
    print("Customer 4 was not registered again: \(refusal?.message ?? "\(error)")")
    check(refusal != nil && !isFresh, "registering customer 4 failed: \(error)")
}
for domain in ["example.com", "nasa.gov"] {
    do {
        let customers = try await host.client.send(CustomersByDomain(domain: domain, minimumPosition: readPosition))
        print("  customers at \(domain): \(customers.map { "\($0.name) (\($0.id))" }.joined(separator: ", "))")
        check(!customers.isEmpty, "no customers at \(domain)")
    } catch {
        print("  customers at \(domain): the query failed: \(error)")
        surprises.append("the query for customers at \(domain) failed: \(error)")
    }
}

// MARK: Shutdown

print()
print("Shutting down: in-flight event handlers finish, then services stop in reverse order.")
// `shutdown` refuses new work, waits for the requests and event handlers still in flight (none
// here: we waited for them above), then stops the services, dependents first.
await host.shutdown()

// The host shut down the payment pipeline it was given: the breaker's timer and its event
// stream have ended, and with them the child task that collected the transitions.
print()
print("The breaker's transitions, from its event stream:")
let transitionLines = await transitions
for line in transitionLines {
    print("  \(line)")
}
check(transitionLines.contains { $0.hasPrefix("closed → open") }, "the flaky gateway never opened the breaker")

print()
print("Audit log (every event matching \"order.#\"):")
for entry in await notifications.auditLog {
    print("  \(entry)")
}

// MARK: Trace and metrics

for correlationID in ["order-1", "order-4"] {
    guard let trace = traces[correlationID] else { continue }
    print()
    print("Trace of \(correlationID) (\(trace)):")
    for line in recorder.renderTrace(trace).split(separator: "\n") {
        print("  \(line)")
    }
}

print()
print("Metrics:")
for line in recorder.renderMetrics().split(separator: "\n") {
    print("  \(line)")
}

// MARK: Verdict

if !surprises.isEmpty {
    print()
    print("The shop did not behave as expected:")
    for surprise in surprises {
        print("  - \(surprise)")
    }
    exit(1)
}
