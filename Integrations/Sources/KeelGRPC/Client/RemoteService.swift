import GRPCCore
import Keel
import KeelCore
import KeelEventSourcing

/// A stand-in for a service that lives in another process: registered in this host under the
/// remote service's name, it forwards the requests it is configured with over gRPC to the
/// remote host's ``RequestServer``.
///
/// ```swift
/// enum Payments: RemoteServiceName {
///     static let name: ServiceName = "payment"
/// }
///
/// let payments = RemoteService<Payments>(
///     configuration: .init(address: ServerAddress(host: "10.0.0.7", port: 7070), requests: [ChargeCard.self])
/// )
/// try await host.register(payments)
/// try await host.start()
/// // Unchanged: the caller neither knows nor cares that `payment` is elsewhere.
/// let receipt = try await host.client.send(ChargeCard(amount: 10), timeout: .milliseconds(200))
/// ```
///
/// **An ordinary route.** Each request type is declared with
/// ``/Keel/RequestHandlers/forward(_:_:)``, so the caller's side of the route is what it is for a
/// local service: the route's policy (a retry, a breaker: `host.setPolicy(_:for:)`), its
/// deadline, metrics and span, and the choice of an instance: register several proxies of one
/// service, each with the address of one remote host, and the host balances among those that
/// are healthy. The forwarding runs in the caller's task, off this actor, so calls do not queue
/// on the proxy.
///
/// **What travels.** The request as JSON; the caller's trace context (`traceparent`, so the
/// remote handler's call is a child of the caller's span, and the correlation id); the caller's
/// remaining budget as the call's gRPC timeout, which the remote host turns into a deadline on
/// its own clock (shorter by the time in transit). The budget is read on this host's clock but
/// runs out in real time on the wire: a host driven by a test clock sends what its clock says is
/// left. Cancelling the caller cancels the call, and the remote handler sees the cancellation.
///
/// **Errors.** A `RequestError` of the remote route reaches the caller with its code, request,
/// service and message; its cause arrives as a ``RemoteError`` (the type's name and text), or
/// as the error itself for a type in ``Configuration/errorTypes``. A remote host that cannot be
/// reached fails the call at once with `noHealthyInstance` (the call does not wait for a
/// connection); so does one that goes away during the call (gRPC reports both as unavailable),
/// and then the request may have run there: retry only what is idempotent. A call whose deadline
/// passes fails with `deadlineExceeded`; a cancelled caller gets `cancelled`.
///
/// **Health.** ``health()`` asks the remote host whether an instance of the service serves,
/// within ``Configuration/healthTimeout``; an unreachable or unhealthy remote host makes the proxy
/// not ready, so the registry takes it out of rotation and callers get `noHealthyInstance` from
/// their own host until a later check finds it again. The client reconnects on its own after a
/// remote restart (with the backoff of ``Configuration/transport``).
///
/// **Lifecycle.** ``start(_:)`` makes the gRPC client and starts the task that runs its
/// connections; ``stop()`` shuts the client down, cancels that task and waits for it. A proxy
/// runs once, in one host.
public actor RemoteService<Remote: RemoteServiceName>: ServiceActor {
    /// The remote service's name, `Remote.name`.
    public static var name: ServiceName { Remote.name }

    /// The remote service's durable publications, `Remote.publishes`: durable subscriptions of
    /// this host receive them from an event store both hosts share.
    public static var publishes: [any DomainEvent.Type] { Remote.publishes }

    /// Where the remote service is and what the proxy forwards.
    public nonisolated let configuration: Configuration

    private nonisolated let connection: RemoteConnection

    private enum State {
        case idle
        /// The task that runs the client's connections, owned by this proxy.
        case running(Task<Void, Never>)
        case stopped
    }

    private var state = State.idle

    /// Creates a proxy; it connects when its host starts it.
    /// - Parameter configuration: The remote host's address and the requests to forward.
    public init(configuration: Configuration) {
        self.configuration = configuration
        self.connection = RemoteConnection(
            service: Remote.name,
            address: configuration.address,
            healthTimeout: configuration.healthTimeout,
            transport: configuration.transport,
            errorTypes: configuration.errorTypes
        )
    }

    /// Declares a forwarding handler for each of ``Configuration/requests``.
    /// - Parameter handlers: The proxy's handler table.
    public nonisolated func registerHandlers(_ handlers: inout RequestHandlers<RemoteService>) {
        for type in self.configuration.requests {
            Self.forward(type, over: self.connection, in: &handlers)
        }
    }

    private static func forward<R: ServiceRequest>(
        _ type: R.Type,
        over connection: RemoteConnection,
        in handlers: inout RequestHandlers<RemoteService>
    ) {
        handlers.forward(type) { request in
            try await connection.send(request)
        }
    }

    /// Makes the gRPC client and starts the task that runs its connections. The first
    /// connection is made on the first call or health check.
    /// - Parameter environment: The proxy's environment; its clock measures callers' deadlines.
    /// - Throws: When the client cannot be made for the address, or the proxy was started
    ///   before.
    public func start(_ environment: ServiceEnvironment) async throws {
        guard case .idle = self.state else {
            throw RPCError(code: .failedPrecondition, message: "\(Remote.name)'s proxy was started before")
        }
        let client = try self.connection.start(clock: environment.clock)
        let logger = environment.logger
        let address = self.configuration.address
        // Unstructured: the connections run for the proxy's whole life, which spans two calls
        // from the host (`start`, `stop`). This actor owns the task: `stop()` cancels it and
        // waits for it.
        self.state = .running(
            Task {
                do {
                    try await client.runConnections()
                } catch {
                    logger.error("the gRPC connections to \(address) ended: \(error)")
                }
            }
        )
    }

    /// Shuts the gRPC client down, cancels the task that runs its connections and waits for it.
    /// Calls still in flight then fail with `noHealthyInstance` or `cancelled`; the host stops a
    /// service only after draining its calls.
    public func stop() async throws {
        guard case .running(let task) = self.state else {
            self.state = .stopped
            return
        }
        self.state = .stopped
        self.connection.stop()
        task.cancel()
        await task.value
    }

    /// Asks the remote host whether an instance of ``name`` serves there, waiting at most
    /// ``Configuration/healthTimeout``; does not wait for a connection.
    /// - Returns: ``/Keel/HealthReport/healthy`` when one serves; not ready, with the reason,
    ///   when none does or the remote host does not answer in time.
    public func health() async -> HealthReport {
        await self.connection.health()
    }

    /// Waits until the remote host answers, up to `timeout`, and returns the service's health as
    /// ``health()`` reports it: for a caller that starts before its peer, or that waits for a
    /// remote host to come back after a restart, without polling.
    ///
    /// The wait ends as soon as the client connects (it retries on its own, with the backoff of
    /// ``Configuration/transport``) and the remote host answers. A call that fails as unavailable
    /// (the connection broke under it, as when the remote host restarts) is made again after a
    /// 50 ms pause, while time is left. Cancelling the calling task ends the wait at once. Run
    /// ``/Keel/ServiceHost/checkHealth()`` afterwards to bring the proxy back into rotation before
    /// the next periodic check.
    /// - Parameter timeout: The longest to wait.
    /// - Returns: The health report.
    public nonisolated func waitUntilReachable(timeout: Duration) async -> HealthReport {
        await self.connection.waitUntilReachable(timeout: timeout)
    }
}
