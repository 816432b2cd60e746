import KeelCore

/// A strategy that answers a failed call with a substitute value: a cached answer, a default, a
/// degraded result.
///
/// A fallback handles the failures it is told to handle — errors of one type
/// (``onError(_:name:where:telemetry:_:)``) or errors a predicate accepts
/// (``init(name:when:telemetry:_:)``) — by calling its fallback closure with the error and
/// returning what the closure returns. Every other failure, and every success, passes through
/// unchanged.
///
/// ```swift
/// let quotes = Fallback.onError(CircuitBreakerError.self) { _ in
///     await cache.lastKnownQuote(for: order)
/// }
/// let quote = try await quotes.run {
///     try await breaker.run { try await gateway.quote(order) }
/// }
/// ```
///
/// ## Cancellation is never handled
///
/// A `CancellationError`, and any error thrown while the calling task is cancelled, always
/// propagates: the caller has given up, and a substitute value would hide that. The fallback
/// closure is not called in either case, whatever the predicate says.
///
/// ## Concurrency contract
///
/// `Fallback` is an immutable `Sendable` value; share one among any number of concurrent calls.
/// ``run(_:)`` runs the operation once on the calling task, in the caller's isolation, and then,
/// only when the operation threw an error the fallback handles, calls the fallback closure exactly
/// once on the same task. The fallback closure may suspend and may throw; what it throws
/// propagates to the caller in place of the original error. Nothing here takes a lock, starts a
/// task or suspends except inside the operation and the fallback closure.
///
/// ## In a pipeline
///
/// ``ResilienceStrategy/execute(_:)`` is generic over the result type, but a fallback's value has
/// one type, `Value`. As a strategy, a `Fallback<Value>` therefore applies only to calls whose
/// result type is exactly `Value`; for any other result type it runs the operation and passes its
/// outcome through untouched, as if it were not there. Put a fallback in a pipeline whose calls
/// return `Value`, normally as its outermost strategy, so that it also sees rejections by breakers,
/// bulkheads and timeouts inside it.
///
/// ## Metrics
///
/// Through the `telemetry` given at construction, each with the dimension `fallback` = name:
/// - `keel.fallback.handled` (counter): failures answered by calling the fallback closure;
/// - `keel.fallback.failed` (counter): calls whose fallback closure itself threw.
public struct Fallback<Value: Sendable>: ResilienceStrategy {
    /// The fallback's name, the `fallback` dimension of its metrics.
    public let name: String

    private let shouldHandle: @Sendable (any Error) -> Bool
    private let fallback: @Sendable (any Error) async throws -> Value
    private let instruments: FallbackInstruments?

    /// Creates a fallback for the failures that `shouldHandle` accepts.
    ///
    /// - Parameters:
    ///   - name: A name for metrics, such as the call it protects.
    ///   - shouldHandle: Decides, on the calling task, whether an error is answered by the
    ///     fallback. It is never asked about `CancellationError` nor about errors thrown while the
    ///     calling task is cancelled. It must not block.
    ///   - telemetry: Where the counters go (`keel.fallback.*`); handlers are made here, once.
    ///   - fallback: Produces the substitute value from the error. Called on the calling task, at
    ///     most once per call, only after the operation failed with a handled error; it may suspend
    ///     and may throw.
    public init(
        name: String = "fallback",
        when shouldHandle: @escaping @Sendable (any Error) -> Bool,
        telemetry: any Telemetry = NoOpTelemetry(),
        _ fallback: @escaping @Sendable (any Error) async throws -> Value
    ) {
        self.name = name
        self.shouldHandle = shouldHandle
        self.fallback = fallback
        self.instruments = FallbackInstruments.make(telemetry, name: name)
    }

    /// Creates a fallback for errors of type `Failure` (optionally only those `predicate`
    /// accepts), whose closure receives the error already typed.
    ///
    /// ```swift
    /// let fallback = Fallback.onError(CircuitBreakerError.self) { error in
    ///     Quote.unavailable(retryAfter: error.remainingOpenDuration)
    /// }
    /// ```
    /// - Parameters:
    ///   - type: The error type to handle. Errors of other types pass through.
    ///   - name: A name for metrics.
    ///   - predicate: Narrows the handled errors of type `Failure`; all of them by default. Called
    ///     on the calling task; it must not block.
    ///   - telemetry: Where the counters go.
    ///   - fallback: Produces the substitute value from the typed error; called as in
    ///     ``init(name:when:telemetry:_:)``.
    /// - Returns: The fallback.
    public static func onError<Failure: Error>(
        _ type: Failure.Type,
        name: String = "fallback",
        where predicate: @escaping @Sendable (Failure) -> Bool = { _ in true },
        telemetry: any Telemetry = NoOpTelemetry(),
        _ fallback: @escaping @Sendable (Failure) async throws -> Value
    ) -> Fallback {
        Fallback(
            name: name,
            when: { error in (error as? Failure).map(predicate) ?? false },
            telemetry: telemetry
        ) { error in
            // `shouldHandle` admitted only errors of type `Failure`.
            try await fallback(error as! Failure)
        }
    }

    /// Runs `operation` and, if it throws an error this fallback handles, returns the fallback
    /// value instead.
    ///
    /// The operation runs exactly once, on the calling task. On success its value is returned
    /// as is. On a handled error the fallback closure is called once with that error and its
    /// value is returned. `CancellationError`, errors thrown while the calling task is cancelled,
    /// and errors that are not handled are rethrown unchanged without calling the fallback.
    /// - Parameter operation: The call to protect.
    /// - Returns: What `operation` returned, or the fallback value.
    /// - Throws: An error the fallback does not handle, or whatever the fallback closure throws.
    public func run(_ operation: () async throws -> Value) async throws -> Value {
        do {
            return try await operation()
        } catch {
            return try await self.handle(error)
        }
    }

    /// Runs `operation` under the fallback when `T` is `Value`; otherwise runs it unguarded.
    ///
    /// This is the ``ResilienceStrategy`` conformance that lets a fallback sit in a pipeline. When
    /// `T` is exactly `Value` it behaves as ``run(_:)``. For any other `T` (including `Value?`) it
    /// runs `operation` once and passes its value or error through unchanged: a fallback can only
    /// produce a `Value`.
    /// - Parameter operation: The rest of the pipeline.
    /// - Returns: What `operation` returned, or the fallback value.
    /// - Throws: As ``run(_:)`` when `T` is `Value`; otherwise what `operation` throws.
    public func execute<T: Sendable>(_ operation: @escaping @Sendable () async throws -> T) async throws -> T {
        guard T.self == Value.self else {
            return try await operation()
        }
        do {
            return try await operation()
        } catch {
            // `T` is `Value`, checked above.
            return try await self.handle(error) as! T
        }
    }

    /// Whether this fallback answers `error` when the calling task is not cancelled.
    /// - Parameter error: A failure of the protected call.
    /// - Returns: `false` for `CancellationError`; otherwise what the predicate says.
    public func handles(_ error: any Error) -> Bool {
        !(error is CancellationError) && self.shouldHandle(error)
    }

    /// Calls the fallback for a handled error, or rethrows it.
    private func handle(_ error: any Error) async throws -> Value {
        guard !Task.isCancelled, self.handles(error) else {
            throw error
        }
        self.instruments?.handled.increment(by: 1)
        do {
            return try await self.fallback(error)
        } catch {
            self.instruments?.failed.increment(by: 1)
            throw error
        }
    }
}
