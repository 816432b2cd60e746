/// Resilience strategies composed in order and run as one.
///
/// The first strategy is the outermost: it sees every attempt the ones after it make, and their
/// rejections. Build a pipeline with the result builder:
///
/// ```swift
/// let pipeline = ResiliencePipeline {
///     breaker                                   // fail fast while the gateway is down
///     Bulkhead(name: "gateway", configuration: .init(maxConcurrent: 8, maxQueued: 16))
/// }
/// let receipt = try await pipeline.execute { try await gateway.charge(order) }
/// ```
///
/// The recommended order, outermost first, is the one the strategies' articles explain:
/// fallback, total timeout, retry, circuit breaker, rate limiter, bulkhead, timeout per attempt.
/// A retry outside the breaker lets the breaker see every attempt and reject the retries once it
/// opens; a bulkhead inside the breaker keeps rejected calls from taking permits.
///
/// A pipeline is itself a ``ResilienceStrategy``, so pipelines nest. It holds no state of its own:
/// share the strategies (a breaker's state is its memory of recent calls) and make pipelines freely.
public struct ResiliencePipeline: ResilienceStrategy {
    /// The strategies, outermost first.
    public let strategies: [any ResilienceStrategy]

    /// Creates a pipeline from strategies, outermost first.
    /// - Parameter strategies: The strategies.
    public init(_ strategies: [any ResilienceStrategy]) {
        self.strategies = strategies
    }

    /// Creates a pipeline from the strategies the builder lists, outermost first.
    /// - Parameter build: The strategies, one per line; `if`, `if`/`else` and `for` are allowed.
    public init(@ResiliencePipelineBuilder _ build: () -> [any ResilienceStrategy]) {
        self.strategies = build()
    }

    /// Shuts down every strategy of the pipeline, outermost first (see
    /// ``ResilienceStrategy/shutdown()``).
    public func shutdown() async {
        for strategy in self.strategies { await strategy.shutdown() }
    }

    /// Runs `operation` through every strategy, outermost first.
    ///
    /// Each strategy's operation is the rest of the pipeline, so a retry re-runs the strategies
    /// inside it, and a rejection by an inner strategy is an error the outer ones see. With no
    /// strategies, runs `operation` once.
    /// - Parameter operation: The call to guard.
    /// - Returns: What an attempt of `operation` returned.
    /// - Throws: What the last attempt threw, or a strategy's rejection.
    public func execute<T: Sendable>(_ operation: @escaping @Sendable () async throws -> T) async throws -> T {
        guard !self.strategies.isEmpty else { return try await operation() }
        return try await Self.execute(self.strategies, from: 0, operation)
    }

    /// Runs `operation` through the strategies from `index` on; `index` is a valid index.
    private static func execute<T: Sendable>(
        _ strategies: [any ResilienceStrategy],
        from index: Int,
        _ operation: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        let next = index + 1
        if next == strategies.count {
            return try await strategies[index].execute(operation)
        }
        return try await strategies[index].execute { try await Self.execute(strategies, from: next, operation) }
    }
}

/// Builds the list of strategies of a ``ResiliencePipeline``.
@resultBuilder
public enum ResiliencePipelineBuilder {
    /// One strategy.
    /// - Parameter strategy: The strategy.
    /// - Returns: A list of one.
    public static func buildExpression(_ strategy: any ResilienceStrategy) -> [any ResilienceStrategy] {
        [strategy]
    }

    /// A list of strategies, from a `for` loop.
    /// - Parameter strategies: The strategies.
    /// - Returns: The same list.
    public static func buildExpression(_ strategies: [any ResilienceStrategy]) -> [any ResilienceStrategy] {
        strategies
    }

    /// The strategies of a block, in order.
    /// - Parameter parts: Each line's strategies.
    /// - Returns: All of them, in order.
    public static func buildBlock(_ parts: [any ResilienceStrategy]...) -> [any ResilienceStrategy] {
        parts.flatMap { $0 }
    }

    /// The strategies of an `if` without `else`; none when the condition is false.
    /// - Parameter part: The strategies, if the condition held.
    /// - Returns: The strategies, or none.
    public static func buildOptional(_ part: [any ResilienceStrategy]?) -> [any ResilienceStrategy] {
        part ?? []
    }

    /// The strategies of the `if` branch.
    /// - Parameter first: The branch's strategies.
    /// - Returns: The same list.
    public static func buildEither(first: [any ResilienceStrategy]) -> [any ResilienceStrategy] {
        first
    }

    /// The strategies of the `else` branch.
    /// - Parameter second: The branch's strategies.
    /// - Returns: The same list.
    public static func buildEither(second: [any ResilienceStrategy]) -> [any ResilienceStrategy] {
        second
    }

    /// The strategies of every iteration of a `for` loop, in order.
    /// - Parameter parts: Each iteration's strategies.
    /// - Returns: All of them, in order.
    public static func buildArray(_ parts: [[any ResilienceStrategy]]) -> [any ResilienceStrategy] {
        parts.flatMap { $0 }
    }
}
