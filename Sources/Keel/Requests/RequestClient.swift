import KeelCore

/// Sends typed requests to the services of a host.
///
/// A service gets its client from its ``ServiceEnvironment``; that client reaches only the
/// services the service declared in ``ServiceActor/dependencies``. The host's own
/// ``ServiceHost/client`` reaches every service, for calls from outside.
///
/// ```swift
/// let user = try await environment.requests.send(GetUser(id: 7), timeout: .milliseconds(200))
/// ```
///
/// **Delivery.** Without a deadline or a route policy, the handler runs in the caller's task as a
/// direct call on the handling service's actor: no task, queue or continuation is created, and the
/// call moves onto the actor and back as a direct call does.
/// What it costs besides: the route, resolved once per client and request type once the host runs
/// (no lock and no dictionary per call); the work tracking for graceful shutdown and the
/// cancellation check (a few atomic operations); a new trace context bound as a task-local around
/// the handler, which alone costs more than a direct actor call (the binding takes the task's
/// status lock, and adds two executor checks that find the task where it already is). With a
/// telemetry that records spans (``/KeelCore/Telemetry/recordsSpans``), the call starts a span and
/// runs the handler with the span bound as well (``/KeelCore/TelemetrySpan/withCurrent(_:)``), on
/// the same path as a route policy; nothing of that is paid when no span is recorded. With a
/// deadline, the call runs in a child task raced against the deadline on the host's clock; with a
/// route policy, inside the policy.
///
/// **Deadlines.** The effective deadline is the earlier of the one given and the one inherited from
/// the caller's ``/KeelCore/TraceContext``; the handler, and every request it sends on, inherits it.
/// When it passes, the handler's task is cancelled and the call fails with
/// ``RequestError/Code-swift.struct/deadlineExceeded``. A handler that ignores cancellation delays
/// that error until it returns (structured concurrency: the call never outlives its work).
///
/// **Cancellation.** Cancelling the caller cancels the handler's work.
public struct RequestClient: Sendable {
    /// The client's routes, each resolved once, and the router that delivers its calls.
    @usableFromInline let routes: ClientRoutes

    /// The calling service, or `nil` for the host's own client.
    public var caller: ServiceName? { self.routes.caller }

    var router: RequestRouter { self.routes.router }

    init(router: RequestRouter, caller: ServiceName?, allowed: [ServiceName]?) {
        self.routes = ClientRoutes(router: router, caller: caller, allowed: allowed)
    }

    /// Sends a request and returns its typed response.
    /// - Parameters:
    ///   - request: The request.
    ///   - deadline: A deadline for this call; the inherited one applies too.
    /// - Returns: The handler's response.
    /// - Throws: A ``RequestError`` saying what went wrong.
    @inlinable
    public func send<R: ServiceRequest>(
        _ request: R,
        deadline: Deadline? = nil
    ) async throws(RequestError) -> R.Response {
        // A non-generic prelude and epilogue around a small generic core, so that the caller's
        // module specializes the core for `R`.
        let routes = self.routes
        let call = try routes.begin(R.self, deadline: deadline)
        defer { routes.end(call) }
        guard call.index >= 0, let erased = call.running.handlers[call.index] else {
            return try await routes.dispatch(request, call: call)
        }
        // The route is keyed by `ObjectIdentifier(R.self)`, so its handlers are `BoundHandler<R>`.
        let handler = unsafeDowncast(erased, to: BoundHandler<R>.self)
        do {
            // A call with a span takes the slow path (``RequestRouter/begin``), which binds it.
            return try await Self.call(handler, with: request, boundTo: call.context)
        } catch {
            throw routes.failure(call, handlerError: error)
        }
    }

    /// Calls `handler` with `context` bound as ``/KeelCore/TraceContext/current``.
    ///
    /// The explicit `isolation` keeps the binding's closure on the caller's executor, so that the
    /// handler returns straight to the caller; a closure inferred as nonisolated would return
    /// through the generic executor, one more hop for a caller on an actor.
    @inlinable
    static func call<R: ServiceRequest>(
        _ handler: BoundHandler<R>,
        with request: R,
        boundTo context: TraceContext,
        isolation: isolated (any Actor)? = #isolation
    ) async throws -> R.Response {
        try await TraceContext.$current.withValue(
            context,
            operation: {
                _ = isolation
                return try await handler.call(request)
            },
            isolation: isolation
        )
    }

    /// Sends a request that must finish within `timeout` from now on the host's clock.
    /// - Parameters:
    ///   - request: The request.
    ///   - timeout: The time allowed.
    /// - Returns: The handler's response.
    /// - Throws: A ``RequestError`` saying what went wrong.
    public func send<R: ServiceRequest>(_ request: R, timeout: Duration) async throws(RequestError) -> R.Response {
        try await self.send(request, deadline: .after(timeout, onAny: self.router.clock))
    }
}
