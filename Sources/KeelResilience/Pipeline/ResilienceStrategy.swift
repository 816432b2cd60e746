/// A strategy that guards one call: a circuit breaker, a bulkhead, a retry, a timeout, a rate
/// limiter, a fallback, a hedge.
///
/// Strategies compose in a ``ResiliencePipeline``, outermost first: each one's `operation` is the
/// rest of the pipeline.
///
/// `operation` is escaping and `Sendable` so that a strategy may run it in child tasks (a timeout
/// races it against the clock, a hedge starts a second attempt); a strategy never lets it outlive
/// its own `execute` call.
public protocol ResilienceStrategy: Sendable {
    /// Runs `operation` under the strategy.
    /// - Parameter operation: The call to guard; it may be run zero, one or several times.
    /// - Returns: What an attempt of `operation` returned.
    /// - Throws: What `operation` threw, or the strategy's own rejection.
    func execute<T: Sendable>(_ operation: @escaping @Sendable () async throws -> T) async throws -> T

    /// Ends the tasks the strategy keeps (a circuit breaker's open timer and event streams) and
    /// waits for them. The strategy keeps guarding calls afterwards, without those tasks.
    ///
    /// A Keel `ServiceHost` calls it on every policy it was given when it shuts down. Calling
    /// it more than once does nothing more. The default does nothing: most strategies keep no
    /// task.
    func shutdown() async
}

extension ResilienceStrategy {
    /// Does nothing: the strategy keeps no task.
    public func shutdown() async {}
}
