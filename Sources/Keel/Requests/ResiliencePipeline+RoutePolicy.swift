import KeelCore
import KeelResilience
import Synchronization

extension ResiliencePipeline: RoutePolicy {
    /// Runs one request's attempts through the pipeline: the route hook of request channels.
    ///
    /// Each attempt picks a serving instance and calls its handler. A handler's failure reaches
    /// the strategies as the handler's own error, not wrapped, so that they classify it by its
    /// type (`.lists(record: [GatewayError.self])` on a breaker, a retry predicate `error is
    /// GatewayError`); if it leaves the pipeline unchanged, the caller gets it back as
    /// ``RequestError`` with code ``RequestError/Code-swift.struct/handlerFailed``. A strategy's own
    /// rejection reaches the caller as ``RequestError/Code-swift.struct/circuitOpen``,
    /// ``RequestError/Code-swift.struct/bulkheadFull``, ``RequestError/Code-swift.struct/rateLimited``
    /// or ``RequestError/Code-swift.struct/rejected``, with that rejection as its cause. Other
    /// request errors of an attempt (no healthy instance, a deadline) reach the strategies as they are.
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
        // The latest handler failure, to give back to the caller as the request error it was.
        let handlerFailure = Lock<RequestError?>(nil)
        do {
            return try await self.execute { () async throws -> Response in
                do {
                    return try await operation()
                } catch let error as RequestError where error.code == .handlerFailed {
                    guard let underlying = error.underlying else { throw error }
                    handlerFailure.withLock { $0 = error }
                    throw underlying
                }
            }
        } catch {
            if let failure = handlerFailure.withLock({ $0 }), let underlying = failure.underlying,
                ObjectIdentifier(type(of: underlying)) == ObjectIdentifier(type(of: error))
            {
                throw failure
            }
            throw error
        }
    }
}
