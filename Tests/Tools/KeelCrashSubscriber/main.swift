// keel-crash-subscriber: the victim of the durable subscription restart test.
//
//     keel-crash-subscriber <directory> <completed>
//
// Starts a ServiceHost whose storage is a FileEventStore in <directory>, with the test's two
// services: `shipping`, which publishes `order.shipped` durably, and `mailer`, which subscribes to
// it durably as `shipping-mails`. It ships orders 1...<completed> and waits until the
// subscription has delivered them (their checkpoint is committed), then ships the next two. The
// handler delivers each order by writing a line; at the first order after <completed> it writes
// the line and never returns, so the checkpoint past that order is never committed. Lines go to
// stdout with write(2), unbuffered:
//
//     completed <position>                  orders 1...<completed> are delivered and checkpointed
//     shipped <order> <position>
//     delivered <order> <position> <event id>
//     stopped                               the handler of order <completed> + 1 waits for the kill
//
// The test kills this process with SIGKILL once the handler has stopped and both orders are
// shipped, restarts the services in its own process and checks what is delivered again. An alarm
// ends the process after 60 seconds, so that a test never waits for it forever.

import Keel
import KeelCore
import KeelEventSourcing

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

func say(_ line: String) {
    let bytes = Array((line + "\n").utf8)
    var written = 0
    while written < bytes.count {
        let result = bytes.withUnsafeBytes { write(1, $0.baseAddress! + written, bytes.count - written) }
        if result <= 0 { exit(3) }
        written += result
    }
}

/// Suspends the calling task for good: the test kills the process while it waits here.
func stopHere() async -> Never {
    // Never resumed, on purpose: nothing after this point may run.
    await withUnsafeContinuation { (_: UnsafeContinuation<Void, Never>) in }
    preconditionFailure("resumed a continuation nobody holds")
}

struct MissingEnvironment: Error {}

/// The test's `OrderShipped`: the same type name and fields.
struct OrderShipped: DomainEvent {
    static let eventType = "order.shipped"
    var orderID: Int
}

actor Shipping: ServiceActor {
    static let name: ServiceName = "shipping"
    static let publishes: [any DomainEvent.Type] = [OrderShipped.self]
    private var environment: ServiceEnvironment?

    func start(_ environment: ServiceEnvironment) async throws {
        self.environment = environment
    }

    func ship(_ order: Int) async throws -> UInt64 {
        guard let environment = self.environment else { throw MissingEnvironment() }
        return try await environment.publishDurably(OrderShipped(orderID: order)).positions.lowerBound
    }
}

actor Mailer: ServiceActor {
    static let name: ServiceName = "mailer"
    let stopAt: Int
    private(set) var subscription: DurableSubscription?

    init(stopAt: Int) {
        self.stopAt = stopAt
    }

    func start(_ environment: ServiceEnvironment) async throws {
        var configuration = ProjectionRunner.Configuration()
        configuration.maxAttempts = 1
        let stopAt = self.stopAt
        self.subscription = try await environment.subscribeDurably(
            to: OrderShipped.self,
            name: "shipping-mails",
            configuration: configuration
        ) { event, recorded in
            say("delivered \(event.orderID) \(recorded.position) \(recorded.metadata.id)")
            if event.orderID == stopAt {
                say("stopped")
                await stopHere()
            }
        }
    }
}

let arguments = CommandLine.arguments
guard arguments.count == 3, let completed = Int(arguments[2]), completed >= 0 else {
    say("usage: keel-crash-subscriber <directory> <completed>")
    exit(2)
}
alarm(60)
// The trials run beside the rest of `swift test`: the victim yields the processors to it, so
// that a busy test process is not also raced by a child it has yet to kill. (Only the
// schedule changes, not what a kill can interrupt.)
_ = nice(10)
var configuration = ServiceHost.Configuration()
configuration.healthCheckInterval = nil
configuration.storage = .directory(arguments[1])
let host = ServiceHost(configuration: configuration)
let shipping = Shipping()
let mailer = Mailer(stopAt: completed + 1)
do {
    try await host.register(shipping)
    try await host.register(mailer)
    try await host.start()
    guard let subscription = await mailer.subscription else { throw MissingEnvironment() }
    var last: UInt64?
    for order in stride(from: 1, through: completed, by: 1) {
        last = try await shipping.ship(order)
    }
    if let last { try await subscription.waitUntilDelivered(through: last) }
    say("completed \(last.map(String.init) ?? "none")")
    for order in [completed + 1, completed + 2] {
        say("shipped \(order) \(try await shipping.ship(order))")
    }
} catch {
    say("error \(error)")
    exit(1)
}
await stopHere()
