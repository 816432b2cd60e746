// The shop: a modular monolith of five services in one process.
//
//   user, catalog, inventory   answer requests, each from its own private storage
//   order                      places orders by request to the three above, then publishes
//                              `order.created` on the event bus
//   notification               listens for `order.created` (by type) and `order.#` (by pattern)
//
// Run it with `swift run shop`.

import Foundation  // `exit`
import Keel
import KeelCore

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
            try await host.instrumentation.withSpan("checkout", kind: .client, random: host.random) { _ in
                try await host.client.send(request)
            }
        }
        return (root.traceID, .success(order))
    } catch {
        return (root.traceID, .failure(error))
    }
}

// MARK: Start

print("Keel shop: five services in one process, talking by request and by event.")
print()

// Records every span and metric in memory, so that we can print them at the end.
let recorder = InMemoryRecorder()
var configuration = ServiceHost.Configuration()
// Check health once after start; a long-running host would check every few seconds.
configuration.healthCheckInterval = nil
// A seeded random source makes trace and event ids the same from run to run.
let host = ServiceHost(configuration: configuration, instrumentation: recorder, random: RandomSource(seed: 42))

// The program keeps a reference to the notification service to wait for its handlers; services
// themselves reach each other only by request and event.
let notifications = NotificationService()
do {
    try await host.register(UserService())
    try await host.register(CatalogService())
    try await host.register(InventoryService())
    try await host.register(OrderService())
    try await host.register(notifications)
    // Checks the dependency graph, then starts services in dependency order: user, catalog and
    // inventory first (concurrently), then order and notification.
    try await host.start()
} catch {
    print("The host did not start: \(error)")
    exit(1)
}

let running = host.registry.services.flatMap { host.registry.instances(of: $0) }
print("Started: " + running.map { "\($0.id) (\($0.health))" }.joined(separator: ", "))

// MARK: Orders

let orders: [(correlationID: String, title: String, request: PlaceOrder)] = [
    (
        "order-1", "Ada buys a keyboard and two mice",
        PlaceOrder(userID: 1, lines: [OrderLine(sku: "keyboard", quantity: 1), OrderLine(sku: "mouse", quantity: 2)])
    ),
    (
        "order-2", "Grace buys the last monitor and three cables",
        PlaceOrder(userID: 2, lines: [OrderLine(sku: "monitor", quantity: 1), OrderLine(sku: "cable", quantity: 3)])
    ),
    (
        "order-3", "customer 42, whom nobody knows, buys a mouse",
        PlaceOrder(userID: 42, lines: [OrderLine(sku: "mouse", quantity: 1)])
    ),
    (
        "order-4", "Alan wants a monitor too",
        PlaceOrder(userID: 3, lines: [OrderLine(sku: "monitor", quantity: 1)])
    ),
]

var traces: [String: TraceID] = [:]
var accepted = 0
for (placed, (correlationID, title, request)) in orders.enumerated() {
    print()
    print("\(correlationID): \(title)")
    let (trace, result) = await placeOrder(request, correlationID: correlationID, on: host)
    traces[correlationID] = trace
    if case .success = result { accepted += 1 }
    // The notification service handles `order.created` and `order.rejected` on its own
    // subscription tasks, after `send` has returned. Wait for its e-mail and audit entry so that
    // the output stays in order (and, with the seeded random source, ids repeat from run to run).
    await notifications.waitUntil(emails: accepted, auditEntries: placed + 1)
    switch result {
    case .success(let order):
        print("  → accepted: order #\(order.id), \(dollars(order.totalCents))")
    case .failure(let error as RequestError):
        // The order service's handler threw, so the code is `handlerFailed` and the underlying
        // cause is the handler's own error: an `OrderError` saying why, in plain words.
        let reason = error.underlying.map { String(describing: $0) } ?? error.message
        print("  → refused (\(error.code)): \(reason)")
    case .failure(let error):
        print("  → failed: \(error)")
    }
}

print()
print("Stock left:")
for sku in ["keyboard", "mouse", "monitor", "cable"] {
    do {
        let level = try await host.client.send(CheckStock(sku: sku))
        print("  \(level.sku): \(level.available)")
    } catch {
        print("  \(sku): unknown (\(error))")
    }
}

// MARK: Shutdown

print()
print("Shutting down: in-flight event handlers finish, then services stop in reverse order.")
// `shutdown` refuses new work, waits for the requests and event handlers still in flight (none
// here: we waited for them above), then stops the services, dependents first.
await host.shutdown()

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
