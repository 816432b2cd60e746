/// A policy that wraps every call on a route: the hook for resilience strategies.
///
/// The host calls ``execute(_:operation:)`` once per request on the route, after the caller was
/// checked (handler exists, dependency declared, host accepting work) and before an instance is
/// chosen. The policy decides whether, when and how often to run `operation`; each run picks a
/// healthy instance and calls its handler. A circuit breaker, a bulkhead, a retry or a timeout is
/// a `RoutePolicy`, and a resilience pipeline composes several.
///
/// `operation` throws ``RequestError``: a handler's failure arrives as
/// ``RequestError/Code-swift.struct/handlerFailed`` with the handler's error as
/// ``RequestError/underlying``, so a policy can classify failures (a `ResiliencePipeline` unwraps
/// it for its strategies: see `ResiliencePipeline.execute(_:operation:)`). Any error the
/// policy throws that is not a `RequestError` reaches the caller as
/// ``RequestError/Code-swift.struct/circuitOpen``, ``RequestError/Code-swift.struct/bulkheadFull``
/// or ``RequestError/Code-swift.struct/rateLimited`` for a KeelResilience breaker's, bulkhead's or
/// rate limiter's refusal, ``RequestError/Code-swift.struct/deadlineExceeded`` for a
/// `TimeoutError`, and ``RequestError/Code-swift.struct/rejected`` otherwise; the policy's error is
/// the cause.
/// `operation` may be run from child tasks (hedging, timeouts); it inherits the caller's trace
/// context and deadline.
///
/// ```swift
/// struct CountingPolicy: RoutePolicy {
///     let calls: Counter
///     func execute<Response: Sendable>(
///         _ route: RouteDescriptor,
///         operation: @escaping @Sendable () async throws -> Response
///     ) async throws -> Response {
///         calls.increment()
///         return try await operation()
///     }
/// }
/// ```
///
/// Keel is built with the `NonisolatedNonsendingByDefault` upcoming feature, so `operation` is a
/// `nonisolated(nonsending)` closure. A module built without that feature spells the parameter
/// `operation: nonisolated(nonsending) @escaping @Sendable () async throws -> Response`.
public protocol RoutePolicy: Sendable {
    /// Runs `operation` under the policy.
    /// - Parameters:
    ///   - route: Which request, service and caller.
    ///   - operation: One attempt of the call.
    /// - Returns: The response of an attempt.
    /// - Throws: The attempt's error or the policy's own rejection.
    func execute<Response: Sendable>(
        _ route: RouteDescriptor,
        operation: @escaping @Sendable () async throws -> Response
    ) async throws -> Response

    /// Ends the tasks the policy keeps, such as a circuit breaker's timer, and waits for them.
    /// The host calls it once for each policy it was given (``ServiceHost/setPolicy(_:for:)``,
    /// ``ServiceHost/setPolicy(_:forService:)``) when it shuts down or fails to start, after its
    /// services have stopped. The default does nothing.
    func shutdown() async
}

extension RoutePolicy {
    /// Does nothing: the policy keeps no task.
    public func shutdown() async {}
}

/// Describes one route to a ``RoutePolicy``.
public struct RouteDescriptor: Sendable, Hashable, CustomStringConvertible {
    /// The request type's name.
    public var request: String
    /// The service that handles it.
    public var service: ServiceName
    /// The calling service, or `nil` for a call from outside the host's services.
    public var caller: ServiceName?

    /// Creates a descriptor.
    /// - Parameters:
    ///   - request: The request type's name.
    ///   - service: The handling service.
    ///   - caller: The calling service.
    public init(request: String, service: ServiceName, caller: ServiceName?) {
        self.request = request
        self.service = service
        self.caller = caller
    }

    /// `caller → service.request`.
    public var description: String {
        "\(self.caller?.description ?? "external") → \(self.service).\(self.request)"
    }
}
