import KeelResilience

extension ResiliencePipeline: RoutePolicy {
    /// Runs one request's attempts through the pipeline: the route hook of request channels.
    ///
    /// Each attempt picks a serving instance and calls its handler; a handler's failure reaches the
    /// strategies as ``RequestError`` with code ``RequestError/Code-swift.struct/handlerFailed``,
    /// and a strategy's own rejection (an open breaker, a full bulkhead) reaches the caller as
    /// ``RequestError/Code-swift.struct/rejected`` with that rejection as its cause.
    ///
    /// ```swift
    /// await host.setPolicy(ResiliencePipeline { breaker; bulkhead }, for: Charge.self)
    /// ```
    /// - Parameters:
    ///   - route: Which request, service and caller; unused by the pipeline itself.
    ///   - operation: One attempt of the call.
    /// - Returns: The response of an attempt.
    /// - Throws: The attempt's error or a strategy's rejection.
    public func execute<Response: Sendable>(
        _ route: RouteDescriptor,
        operation: @escaping @Sendable () async throws -> Response
    ) async throws -> Response {
        try await self.execute(operation)
    }
}
