import KeelCore

/// Runs an operation again when it fails, after a backoff delay, within a number of attempts, the
/// caller's deadline and a budget shared with other calls.
///
/// An attempt that throws an error the configuration retries (or returns a value it retries) is
/// followed, after the next delay of ``Configuration/backoff``, by another attempt, until one
/// succeeds or the retry stops. It stops, and throws the last error (or returns the last value),
/// when:
/// - ``Configuration/maxAttempts`` attempts were made;
/// - the error is `CancellationError`, or the calling task is cancelled;
/// - the next delay would end at or after the deadline of ``/KeelCore/TraceContext/current``
///   (there would be no time left for the attempt, so it does not sleep in vain);
/// - the ``Configuration/budget`` refuses the retry. Exhausting the budget is not an error of
///   its own: the caller sees the failure that would have been retried, and the refusal is counted
///   in the metric `keel.retry.stopped` with `reason` = `budget` and in the budget's
///   ``RetryBudget/snapshot``.
///
/// ```swift
/// let retry = Retry(
///     name: "gateway",
///     configuration: .init(maxAttempts: 4, backoff: .decorrelatedJitter(base: .milliseconds(50), maximum: .seconds(2)))
/// )
/// let receipt = try await retry.run { try await gateway.charge(order) }
/// ```
///
/// Retry only idempotent operations: an attempt that timed out may still have taken effect.
///
/// ## Concurrency contract
/// `Retry` is `Sendable` and holds no per-call state: share one instance among callers.
/// ``run(_:)`` runs the attempts one after another on the calling task, in the caller's isolation,
/// and suspends between them on the injected clock. Cancelling the calling task ends a backoff
/// sleep at once with `CancellationError`, and no further attempt starts. Jitter is drawn from the
/// injected ``/KeelCore/RandomSource``.
///
/// Metrics (dimension `retry` = ``name``): `keel.retry.calls`, `keel.retry.retries`, and
/// `keel.retry.stopped` with `reason` = `attempts`, `budget` or `deadline`.
public final class Retry: ResilienceStrategy {
    /// The retry's name, used as the `retry` dimension of its metrics.
    public let name: String
    /// The attempts, backoff, predicates and budget it was made with.
    public let configuration: Configuration

    private let clock: any Clock<Duration>
    private let random: RandomSource
    private let instruments: RetryInstruments?

    /// Creates a retry strategy.
    /// - Parameters:
    ///   - name: A name for metrics.
    ///   - configuration: Attempts, backoff, predicates and budget; checked with `precondition`.
    ///   - clock: The clock the backoff sleeps on and the deadline is read from;
    ///     `ContinuousClock` by default, a `TestClock` in tests.
    ///   - random: Where jitter is drawn from; seed it to repeat a schedule. By default a new
    ///     source seeded from the system's generator.
    ///   - telemetry: Where metrics go; handlers are made here, once.
    public init(
        name: String = "retry",
        configuration: Configuration = Configuration(),
        clock: any Clock<Duration> = ContinuousClock(),
        random: RandomSource = RandomSource(),
        telemetry: any Telemetry = NoOpTelemetry()
    ) {
        configuration.validate()
        self.name = name
        self.configuration = configuration
        self.clock = clock
        self.random = random
        self.instruments = RetryInstruments.make(telemetry, name: name)
    }

    /// Runs `operation`, and runs it again after a backoff delay while the configuration allows.
    ///
    /// Attempts run one at a time on the calling task; between them the call suspends on the
    /// clock. The call counts once in the ``Configuration/budget``; every retry takes one from it.
    /// - Parameter operation: The work to attempt; it may run up to
    ///   ``Configuration/maxAttempts`` times.
    /// - Returns: The first value that is not retried, or the last value when the retry stops.
    /// - Throws: The last error when the retry stops (attempts, deadline, budget, cancellation, or
    ///   an error that is not retried); `CancellationError` when the task is cancelled during a
    ///   backoff sleep.
    public func run<T: Sendable>(_ operation: () async throws -> T) async throws -> T {
        self.configuration.budget?.recordCall()
        self.instruments?.calls.increment(by: 1)
        // Made at the first retry: a call that succeeds at once does not pay for it.
        var delays: Backoff.Delays?
        var attempt = 1
        while true {
            let outcome: Result<T, any Error>
            do {
                let value = try await operation()
                // The common case returns here, without wrapping the value.
                guard let shouldRetryResult = self.configuration.shouldRetryResult, shouldRetryResult(value) else {
                    return value
                }
                outcome = .success(value)
            } catch {
                guard !(error is CancellationError) && self.configuration.shouldRetryError(error) else { throw error }
                outcome = .failure(error)
            }
            if delays == nil {
                delays = self.configuration.backoff.makeDelays(using: self.random)
            }
            guard let delay = self.permitRetry(after: attempt, delays: &delays!) else {
                return try outcome.get()
            }
            if delay > .zero {
                try await self.clock.sleep(for: delay)
            }
            attempt += 1
        }
    }

    /// Runs `operation` under the retry strategy: the ``ResilienceStrategy`` form of ``run(_:)``.
    /// - Parameter operation: The work to attempt.
    /// - Returns: What ``run(_:)`` returns.
    /// - Throws: What ``run(_:)`` throws.
    public func execute<T: Sendable>(_ operation: @escaping @Sendable () async throws -> T) async throws -> T {
        try await self.run(operation)
    }

    /// The delay before the next attempt, or `nil` when the retry stops here.
    private func permitRetry(after attempt: Int, delays: inout Backoff.Delays) -> Duration? {
        if attempt >= self.configuration.maxAttempts {
            self.instruments?.stoppedByAttempts.increment(by: 1)
            return nil
        }
        if Task.isCancelled {
            return nil
        }
        let delay = delays.next() ?? .zero
        if let remaining = TraceContext.current?.deadline?.remaining(onAny: self.clock), delay >= remaining {
            self.instruments?.stoppedByDeadline.increment(by: 1)
            return nil
        }
        if let budget = self.configuration.budget, !budget.tryRetry() {
            self.instruments?.stoppedByBudget.increment(by: 1)
            return nil
        }
        self.instruments?.retries.increment(by: 1)
        return delay
    }
}

/// The metric handlers of one retry strategy, made once; `nil` with a telemetry that records no
/// metrics (``NoOpTelemetry``).
struct RetryInstruments: Sendable {
    let calls: any TelemetryCounter
    let retries: any TelemetryCounter
    let stoppedByAttempts: any TelemetryCounter
    let stoppedByBudget: any TelemetryCounter
    let stoppedByDeadline: any TelemetryCounter

    static func make(_ telemetry: any Telemetry, name: String) -> RetryInstruments? {
        if !telemetry.recordsMetrics { return nil }
        let dimensions = [("retry", name)]
        func stopped(_ reason: String) -> any TelemetryCounter {
            telemetry.makeCounter(label: "keel.retry.stopped", dimensions: dimensions + [("reason", reason)])
        }
        return RetryInstruments(
            calls: telemetry.makeCounter(label: "keel.retry.calls", dimensions: dimensions),
            retries: telemetry.makeCounter(label: "keel.retry.retries", dimensions: dimensions),
            stoppedByAttempts: stopped("attempts"),
            stoppedByBudget: stopped("budget"),
            stoppedByDeadline: stopped("deadline")
        )
    }
}
