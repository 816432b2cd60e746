import GRPCNIOTransportHTTP2
import Keel
import KeelCore
import KeelGRPC
import Synchronization

// MARK: Requests

struct Charge: ServiceRequest {
    typealias Response = Receipt
    var amount: Int
}

struct Receipt: Codable, Sendable, Hashable {
    var amount: Int
    var by: String
}

/// Its handler throws ``CardDeclined``.
struct Decline: ServiceRequest {
    typealias Response = Done
    var reason: String
}

struct CardDeclined: Error, Codable, Hashable {
    var reason: String
}

/// Its handler records the trace context it runs in.
struct Inspect: ServiceRequest {
    typealias Response = Done
}

/// Its handler waits until it is cancelled, and says when it started and when it saw the
/// cancellation.
struct Hang: ServiceRequest {
    typealias Response = Done
}

/// Its handler says it started, and returns once the test releases it.
struct Hold: ServiceRequest {
    typealias Response = Done
}

/// Its handler fails its first attempt and answers the attempt's number after that.
struct Flaky: ServiceRequest {
    typealias Response = Int
}

struct Outage: Error {}

/// Forwarded by the proxy, exposed by no remote host.
struct Unexposed: ServiceRequest {
    typealias Response = Done
}

/// Named as ``Charge`` but shaped otherwise: the remote host cannot decode it.
struct MisshapenCharge: ServiceRequest {
    typealias Response = Receipt
    static var name: String { Charge.name }
    var amount: String
}

/// A local request whose handler sends ``Charge`` as any service does.
struct Checkout: ServiceRequest {
    typealias Response = Receipt
    var amount: Int
}

/// The request types the remote host exposes.
let exposedRequests: [any ServiceRequest.Type] = [
    Charge.self, Decline.self, Inspect.self, Hang.self, Hold.self, Flaky.self,
]
/// The request types the caller's proxy forwards.
let forwardedRequests: [any ServiceRequest.Type] = exposedRequests + [Unexposed.self, MisshapenCharge.self]

// MARK: Events

/// A one-shot event that tasks wait for. A wait ends when the event fires or the waiting task is
/// cancelled, so that a test's time limit ends a test whose event never comes.
final class Latch: Sendable {
    private struct State {
        var fired = false
        var nextID = 0
        var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
        var cancelled: Set<Int> = []
    }

    private let state = Mutex(State())

    func fire() {
        let waiters = self.state.withLock { state in
            state.fired = true
            defer { state.waiters = [:] }
            return state.waiters.values
        }
        for waiter in waiters { waiter.resume() }
    }

    func wait() async {
        let id = self.state.withLock { state in
            defer { state.nextID += 1 }
            return state.nextID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let resumeNow = self.state.withLock { state in
                    guard !state.fired, !state.cancelled.contains(id) else { return true }
                    state.waiters[id] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = self.state.withLock { state in
                state.cancelled.insert(id)
                return state.waiters.removeValue(forKey: id)
            }
            waiter?.resume()
        }
    }
}

/// Suspends until the calling task is cancelled, even when it already is.
func waitUntilCancelled() async {
    await Latch().wait()
}

/// What the remote handlers saw.
final class Probe: Sendable {
    let contexts = Mutex<[TraceContext?]>([])
    let hangStarted = Latch()
    let hangCancelled = Latch()
    let holdStarted = Latch()
    let release = Latch()
    let attempts = Atomic<Int>(0)

    var lastContext: TraceContext? {
        self.contexts.withLock { $0.last ?? nil }
    }
}

// MARK: Services

/// The remote service.
actor PaymentService: ServiceActor {
    static let name: ServiceName = "payment"

    let probe: Probe

    init(probe: Probe) {
        self.probe = probe
    }

    nonisolated func registerHandlers(_ handlers: inout RequestHandlers<PaymentService>) {
        let probe = self.probe
        handlers.on(Charge.self) { _, request in
            Receipt(amount: request.amount, by: "payment")
        }
        handlers.on(Decline.self) { _, request in
            throw CardDeclined(reason: request.reason)
        }
        handlers.on(Inspect.self) { _, _ in
            probe.contexts.withLock { $0.append(TraceContext.current) }
        }
        handlers.on(Hang.self) { _, _ in
            probe.hangStarted.fire()
            await waitUntilCancelled()
            probe.hangCancelled.fire()
            throw CancellationError()
        }
        handlers.on(Hold.self) { _, _ in
            probe.holdStarted.fire()
            await probe.release.wait()
        }
        handlers.on(Flaky.self) { _, _ in
            let attempt = probe.attempts.add(1, ordering: .relaxed).newValue
            if attempt == 1 { throw Outage() }
            return attempt
        }
    }
}

/// The caller's name for the remote service.
enum Payments: RemoteServiceName {
    static let name: ServiceName = "payment"
}

/// A local service of the caller that sends ``Charge`` to its dependency, unaware that it is
/// remote.
actor CheckoutService: ServiceActor {
    static let name: ServiceName = "checkout"
    static let dependencies: [ServiceName] = ["payment"]

    nonisolated func registerHandlers(_ handlers: inout RequestHandlers<CheckoutService>) {
        handlers.on(Checkout.self) { _, request, environment in
            try await environment.send(Charge(amount: request.amount))
        }
    }
}

/// Records the trace context each call on its route runs in: the caller's side of the call.
final class RecordingPolicy: RoutePolicy {
    let contexts = Mutex<[TraceContext?]>([])

    func execute<Response: Sendable>(
        _ route: RouteDescriptor,
        operation: @escaping @Sendable () async throws -> Response
    ) async throws -> Response {
        self.contexts.withLock { $0.append(TraceContext.current) }
        return try await operation()
    }
}

// MARK: Hosts

/// A host configuration whose health checks run only when a test asks.
func manualHealthChecks() -> ServiceHost.Configuration {
    var configuration = ServiceHost.Configuration()
    configuration.healthCheckInterval = nil
    return configuration
}

/// The remote process: a host with ``PaymentService`` behind a ``RequestServer`` on loopback.
final class RemoteProcess: Sendable {
    let host: ServiceHost
    let address: ServerAddress
    private let server: RequestServer
    /// Runs the server; owned by this process: ``stop()`` cancels it and waits for it.
    private let serving: Task<Void, any Error>

    private init(host: ServiceHost, address: ServerAddress, server: RequestServer, serving: Task<Void, any Error>) {
        self.host = host
        self.address = address
        self.server = server
        self.serving = serving
    }

    /// Starts the host and its server, on `port` (0 for a free one).
    static func start(port: Int = 0, probe: Probe = Probe()) async throws -> RemoteProcess {
        let host = ServiceHost(configuration: manualHealthChecks())
        try await host.register(PaymentService(probe: probe))
        try await host.start()
        let server = RequestServer(
            host: host,
            configuration: .init(address: ServerAddress(host: "127.0.0.1", port: port), requests: exposedRequests)
        )
        // Unstructured so that a test can stop the remote process while its caller runs on;
        // `stop()` cancels and awaits it.
        let serving = Task { try await server.run() }
        do {
            return RemoteProcess(
                host: host,
                address: try await server.listeningAddress,
                server: server,
                serving: serving
            )
        } catch {
            serving.cancel()
            _ = await serving.result
            await host.shutdown()
            throw error
        }
    }

    /// Begins the server's graceful shutdown: no new calls, those in flight finish.
    func beginGracefulShutdown() {
        self.server.beginGracefulShutdown()
    }

    /// Waits until the server has stopped serving.
    func waitUntilServed() async throws {
        try await self.serving.value
    }

    /// Stops the server (calls in flight are cancelled) and the host.
    func stop() async {
        self.serving.cancel()
        _ = await self.serving.result
        await self.host.shutdown()
    }
}

/// Runs `body` with a started caller host that has a proxy of `payment` at `address` (and one
/// more at each of `others`) and a local `checkout` service, then shuts the host down. `body`
/// gets the proxy at `address`.
func withCaller<T>(
    address: ServerAddress,
    others: [ServerAddress] = [],
    configure: (inout RemoteService<Payments>.Configuration) -> Void = { _ in },
    _ body: (ServiceHost, RemoteService<Payments>) async throws -> T
) async throws -> T {
    let host = ServiceHost(configuration: manualHealthChecks())
    func makeProxy(at address: ServerAddress) -> RemoteService<Payments> {
        var configuration = RemoteService<Payments>.Configuration(address: address, requests: forwardedRequests)
        // Reconnect quickly once a remote host is back.
        configuration.transport.backoff.initial = .milliseconds(20)
        configuration.transport.backoff.max = .milliseconds(100)
        configure(&configuration)
        return RemoteService<Payments>(configuration: configuration)
    }
    let proxy = makeProxy(at: address)
    do {
        try await host.register(proxy)
        for other in others { try await host.register(makeProxy(at: other)) }
        try await host.register(CheckoutService())
        try await host.start()
        let result = try await body(host, proxy)
        await host.shutdown()
        return result
    } catch {
        await host.shutdown()
        throw error
    }
}

/// Runs `body` against a remote process and a caller host, then stops both.
func withRemoteAndCaller<T>(
    probe: Probe = Probe(),
    configure: (inout RemoteService<Payments>.Configuration) -> Void = { _ in },
    _ body: (ServiceHost, RemoteService<Payments>) async throws -> T
) async throws -> T {
    let remote = try await RemoteProcess.start(probe: probe)
    do {
        let result = try await withCaller(address: remote.address, configure: configure, body)
        await remote.stop()
        return result
    } catch {
        await remote.stop()
        throw error
    }
}
