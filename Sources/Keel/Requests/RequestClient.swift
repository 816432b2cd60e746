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
/// **Delivery.** Without a deadline, the handler runs in the caller's task as a direct call on the
/// handling service's actor: no task, queue or continuation is created. With a deadline, the call
/// runs in a child task raced against the deadline on the host's clock.
///
/// **Deadlines.** The effective deadline is the earlier of the one given and the one inherited from
/// the caller's ``/KeelCore/TraceContext``; the handler, and every request it sends on, inherits it.
/// When it passes, the handler's task is cancelled and the call fails with
/// ``RequestError/Code-swift.struct/deadlineExceeded``. A handler that ignores cancellation delays
/// that error until it returns (structured concurrency: the call never outlives its work).
///
/// **Cancellation.** Cancelling the caller cancels the handler's work.
public struct RequestClient: Sendable {
    @usableFromInline let router: RequestRouter
    /// The calling service, or `nil` for the host's own client.
    public let caller: ServiceName?
    @usableFromInline let allowed: [ServiceName]?

    init(router: RequestRouter, caller: ServiceName?, allowed: [ServiceName]?) {
        self.router = router
        self.caller = caller
        self.allowed = allowed
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
        let call = try self.router.begin(R.self, deadline: deadline, caller: self.caller, allowed: self.allowed)
        defer { self.router.end(call) }
        guard let erased = call.handler else {
            return try await self.router.dispatch(request, call: call, caller: self.caller)
        }
        // The route is keyed by `ObjectIdentifier(R.self)`, so its handlers are `BoundHandler<R>`.
        let handler = unsafeDowncast(erased, to: BoundHandler<R>.self)
        do {
            return try await TraceContext.$current.withValue(call.context) {
                try await handler.call(request)
            }
        } catch {
            throw self.router.failure(call, handlerError: error)
        }
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
