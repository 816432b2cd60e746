extension CircuitBreaker: ResilienceStrategy {
    /// Runs `operation` under the breaker; the same as ``run(_:)``.
    /// - Parameter operation: The call to guard.
    /// - Returns: What `operation` returned.
    /// - Throws: ``CircuitBreakerError`` when the breaker rejects the call, or what `operation`
    ///   threw.
    public nonisolated func execute<T: Sendable>(
        _ operation: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        try await self.run(operation)
    }
}

extension Bulkhead: ResilienceStrategy {
    /// Runs `operation` holding a permit; the same as ``run(_:)``.
    /// - Parameter operation: The call to guard.
    /// - Returns: What `operation` returned.
    /// - Throws: ``BulkheadError`` when no permit could be had, `CancellationError` when the caller
    ///   was cancelled while waiting, or what `operation` threw.
    public func execute<T: Sendable>(_ operation: @escaping @Sendable () async throws -> T) async throws -> T {
        try await self.run(operation)
    }
}
