import KeelCore

/// A strategy that cuts tail latency by racing attempts: when an attempt is slow, it starts
/// another one, and the first to succeed wins.
///
/// A call starts its first attempt at once. If no attempt has succeeded ``Configuration/delay``
/// after the latest one started, it starts another, up to ``Configuration/maxAttempts`` in all.
/// With ``Configuration/hedgeOnFailure`` a failed attempt starts the next one at once. The first
/// attempt to **succeed** wins: its value is returned and every other attempt is cancelled. When
/// every attempt fails, the call throws the error of the attempt that failed last.
///
/// Hedging multiplies the load on the dependency (every hedge is a real call) and runs the same
/// call more than once at the same time: use it only for idempotent calls, such as reads.
///
/// ```swift
/// let hedging = Hedging(
///     name: "catalog",
///     configuration: .init(maxAttempts: 2, delay: .milliseconds(80))  // about the p95 latency
/// )
/// let product = try await hedging.run { attempt in
///     try await catalog.product(id: id, replica: attempt)
/// }
/// ```
///
/// ## Concurrency contract
///
/// `Hedging` is an immutable `Sendable` value; share one among any number of concurrent calls.
/// Each call is structured: every attempt, and the timer that schedules the next one, is a child
/// task of a task group inside ``run(_:)``. **No attempt outlives the call**: before ``run(_:)``
/// returns or throws, the attempts that did not win are cancelled and awaited. An attempt that
/// ignores cancellation therefore delays the return of the call until it ends (its outcome is then
/// discarded). Attempts inherit the caller's task-locals, so they run in the caller's
/// ``/KeelCore/TraceContext`` (and its deadline), and its task priority.
///
/// Attempts run concurrently with each other, off the caller's isolation. The delay is measured on
/// the injected clock by one timer child at a time; nothing else suspends but the attempts
/// themselves.
///
/// Cancelling the caller cancels every attempt and the timer, waits for them to end, and throws
/// `CancellationError`; no attempt starts after the cancellation. A caller that is already
/// cancelled gets `CancellationError` without any attempt.
///
/// With ``Configuration/maxAttempts`` of 1 there is nothing to race: the operation runs once on
/// the calling task, without a task group.
///
/// ## Metrics
///
/// Through the `telemetry` given at construction, each with the dimension `hedging` = name:
/// - `keel.hedging.attempts` (counter): attempts started, the first of each call included;
/// - `keel.hedging.hedges` (counter, dimension `reason`: `delay` or `failure`): attempts started
///   after the first;
/// - `keel.hedging.hedge_won` (counter): calls won by an attempt other than the first;
/// - `keel.hedging.exhausted` (counter): calls in which every attempt failed.
public struct Hedging: ResilienceStrategy {
    /// The strategy's name, the `hedging` dimension of its metrics.
    public let name: String
    /// The limits it was made with.
    public let configuration: Configuration

    /// Time since the strategy was made, on its clock.
    private let now: @Sendable () -> Duration
    /// Sleeps on the strategy's clock until the given offset.
    private let sleepUntil: @Sendable (Duration) async throws -> Void
    private let instruments: HedgingInstruments?

    /// Creates a hedging strategy.
    ///
    /// Making one starts no task; each call makes its own children.
    /// - Parameters:
    ///   - name: A name for metrics, such as the call it protects.
    ///   - configuration: How many attempts, and when; checked with `precondition`.
    ///   - clock: The clock that measures ``Configuration/delay``; `ContinuousClock` by default, a
    ///     `TestClock` in tests.
    ///   - telemetry: Where the counters go (`keel.hedging.*`); handlers are made here, once.
    public init(
        name: String = "hedging",
        configuration: Configuration = Configuration(),
        clock: some Clock<Duration> = ContinuousClock(),
        telemetry: any Telemetry = NoOpTelemetry()
    ) {
        configuration.validate()
        self.name = name
        self.configuration = configuration
        let origin = clock.now
        self.now = { origin.duration(to: clock.now) }
        self.sleepUntil = { offset in try await clock.sleep(until: origin.advanced(by: offset), tolerance: nil) }
        self.instruments = HedgingInstruments.make(telemetry, name: name)
    }

    /// Runs `operation` as hedged attempts and returns the first successful result.
    ///
    /// Attempt 1 starts at once; attempt *n* + 1 starts when attempt *n* has run for
    /// ``Configuration/delay`` with no success so far, or at once when an attempt fails and
    /// ``Configuration/hedgeOnFailure`` is set — never more than ``Configuration/maxAttempts`` in
    /// all. Each attempt is a child task that receives its number, from 1; it may use it to pick a
    /// different replica.
    ///
    /// The first attempt to succeed wins, even if an attempt that started earlier would succeed
    /// later. The others are cancelled, and awaited, before this method returns. When every
    /// attempt has failed (and no more may start), it throws the error of the attempt that failed
    /// last, after the timer is cancelled and awaited.
    /// - Parameter operation: One attempt of the call; called once per attempt, concurrently, on
    ///   child tasks that inherit the caller's task-locals. It must be idempotent.
    /// - Returns: The value of the first attempt that succeeded.
    /// - Throws: `CancellationError` if the caller is cancelled; otherwise, when every attempt
    ///   failed, the error of the attempt that failed last.
    public func run<T: Sendable>(
        _ operation: @escaping @Sendable (_ attempt: Int) async throws -> T
    ) async throws -> T {
        let configuration = self.configuration
        if configuration.maxAttempts == 1 {
            self.instruments?.attempts.increment(by: 1)
            return try await operation(1)
        }
        try Task.checkCancellation()
        let instruments = self.instruments
        let now = self.now
        let sleepUntil = self.sleepUntil

        let result = await withTaskGroup(of: HedgingEvent<T>.self, returning: Result<T, any Error>.self) { group in
            // The call's state lives here, in the parent task only: children report to it through
            // the group and never touch it.
            var started = 0
            var inFlight = 0
            var lastStart = Duration.zero
            var lastError: (any Error)?

            func startAttempt(_ reason: HedgeReason) {
                let attempt = started + 1
                // Read the clock before the attempt can run, so that its start is never late.
                let startTime = now()
                let added = group.addTaskUnlessCancelled {
                    do {
                        return .finished(attempt: attempt, .success(try await operation(attempt)))
                    } catch {
                        return .finished(attempt: attempt, .failure(error))
                    }
                }
                guard added else { return }
                started = attempt
                inFlight += 1
                lastStart = startTime
                instruments?.attempts.increment(by: 1)
                switch reason {
                case .first: break
                case .delay: instruments?.hedgedAfterDelay.increment(by: 1)
                case .failure: instruments?.hedgedAfterFailure.increment(by: 1)
                }
            }

            func armTimer(until deadline: Duration) {
                _ = group.addTaskUnlessCancelled {
                    do {
                        try await sleepUntil(deadline)
                        return .timerFired
                    } catch {
                        return .timerCancelled
                    }
                }
            }

            // Cancels the losers and the timer and waits for all of them before the call ends.
            func finish(_ result: Result<T, any Error>) async -> Result<T, any Error> {
                group.cancelAll()
                await group.waitForAll()
                return result
            }

            startAttempt(.first)
            if configuration.delay == .zero {
                while started < configuration.maxAttempts, !group.isCancelled {
                    startAttempt(.delay)
                }
            } else {
                armTimer(until: lastStart + configuration.delay)
            }

            while let event = await group.next() {
                if Task.isCancelled {
                    return await finish(.failure(CancellationError()))
                }
                switch event {
                case .finished(let attempt, .success(let value)):
                    if attempt > 1 {
                        instruments?.hedgeWon.increment(by: 1)
                    }
                    return await finish(.success(value))

                case .finished(_, .failure(let error)):
                    inFlight -= 1
                    lastError = error
                    if configuration.hedgeOnFailure, !(error is CancellationError),
                        started < configuration.maxAttempts
                    {
                        // The armed timer, if any, re-arms itself from this attempt's start.
                        startAttempt(.failure)
                    }
                    if inFlight == 0 {
                        instruments?.exhausted.increment(by: 1)
                        return await finish(.failure(error))
                    }

                case .timerFired:
                    guard started < configuration.maxAttempts else { continue }
                    // An attempt started on a failure after this timer was armed moves the
                    // next hedge to `delay` after that attempt's start.
                    let due = lastStart + configuration.delay
                    if now() >= due {
                        startAttempt(.delay)
                        if started < configuration.maxAttempts {
                            armTimer(until: lastStart + configuration.delay)
                        }
                    } else {
                        armTimer(until: due)
                    }

                case .timerCancelled:
                    // Only a cancelled group cancels the timer; the check above ends the call.
                    continue
                }
            }
            // Reached only when no child could be added because the caller was cancelled.
            return .failure(lastError ?? CancellationError())
        }
        return try result.get()
    }

    /// Runs `operation` as hedged attempts: the ``ResilienceStrategy`` conformance, equivalent to
    /// ``run(_:)`` with an operation that ignores its attempt number.
    /// - Parameter operation: One attempt of the rest of the pipeline; it must be idempotent.
    /// - Returns: The value of the first attempt that succeeded.
    /// - Throws: As ``run(_:)``.
    public func execute<T: Sendable>(_ operation: @escaping @Sendable () async throws -> T) async throws -> T {
        try await self.run { _ in try await operation() }
    }
}

/// Why an attempt was started.
private enum HedgeReason {
    case first
    case delay
    case failure
}

/// What a child of a hedged call reports to the parent.
private enum HedgingEvent<T: Sendable>: Sendable {
    case finished(attempt: Int, Result<T, any Error>)
    case timerFired
    case timerCancelled
}
