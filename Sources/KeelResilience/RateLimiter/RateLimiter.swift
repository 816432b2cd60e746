import KeelCore
import Synchronization

/// Limits how often an operation may run: a token bucket, a sliding window log or a bucketed
/// sliding window, refusing at once or waiting up to a limit, first come first served.
///
/// Each call takes permits (one for ``run(_:)``, any number for ``acquire(permits:)``). When they
/// are free the call goes ahead at once. Otherwise it waits, in strict arrival order, if its permits
/// will come due within ``Configuration/maxWait``; if not, it is refused at once with
/// ``RateLimiterError/Code/rateLimited``. If ``Configuration/maxQueued`` callers already wait, it
/// is refused at once with ``RateLimiterError/Code/queueFull``. Permits are not returned when the
/// operation ends: they come back with time.
///
/// ```swift
/// let limiter = RateLimiter(
///     name: "partner-api",
///     configuration: .init(
///         algorithm: .tokenBucket(capacity: 20, refillAmount: 10, refillInterval: .seconds(1)),
///         maxWait: .milliseconds(500)
///     )
/// )
/// let quote = try await limiter.run { try await partner.quote(item) }
/// ```
///
/// ## Concurrency contract
/// `RateLimiter` is `Sendable`; share one instance among every caller it limits. Its state sits in
/// a `Mutex` around a pure state machine, never held across a suspension. A call that is granted at
/// once takes the lock once and never suspends. Waiting callers do not poll: the first in line
/// sleeps on the injected clock until its permits are due, the others park on a continuation until
/// they are granted or become first in line. Cancelling a waiting caller removes it from the queue
/// and throws `CancellationError`; it has taken nothing, so nothing is lost (if the cancellation
/// races with the grant, the permits are given back), and its place in a bounded queue is free at
/// once. The next caller in line may then be served sooner. No task is created.
public final class RateLimiter: ResilienceStrategy {
    /// The limiter's name, used in errors and as the `limiter` dimension of its metrics.
    public let name: String
    /// The algorithm, wait limit and queue bound it was made with.
    public let configuration: Configuration

    private let clock: any Clock<Duration>
    private let reader: ClockReader
    private let state: Lock<RateLimiterStateMachine>
    private let instruments: RateLimiterInstruments?

    /// Creates a rate limiter. A token bucket starts full; both sliding windows start empty.
    /// - Parameters:
    ///   - name: A name for errors and metrics.
    ///   - configuration: The algorithm, the wait limit and the queue bound; checked with
    ///     `precondition`.
    ///   - clock: The clock that refills permits and measures waits; `ContinuousClock` by default,
    ///     a `TestClock` in tests.
    ///   - telemetry: Where metrics go (`keel.ratelimiter.acquired`,
    ///     `keel.ratelimiter.rejected` with `reason` `rate_limited`, `exceeds_capacity` or
    ///     `queue_full`, `keel.ratelimiter.wait`; dimension `limiter`); handlers are made here, once.
    public init(
        name: String = "ratelimiter",
        configuration: Configuration = Configuration(),
        clock: any Clock<Duration> = ContinuousClock(),
        telemetry: any Telemetry = NoOpTelemetry()
    ) {
        configuration.validate()
        self.name = name
        self.configuration = configuration
        self.clock = clock
        self.reader = ClockReader(clock)
        self.state = Lock(RateLimiterStateMachine(algorithm: configuration.algorithm.initialState))
        self.instruments = RateLimiterInstruments.make(telemetry, name: name)
    }

    /// Takes `permits`, waiting for them in line up to ``Configuration/maxWait``.
    ///
    /// Returns at once, without suspending, when the permits are free and nobody waits. Otherwise
    /// the call either throws at once (the permits would not come due within `maxWait`, or
    /// `maxQueued` callers already wait) or suspends until its turn; waiters are served strictly in
    /// arrival order, so a large request is never overtaken by later small ones. A task already
    /// cancelled is still granted permits that are free at once.
    /// - Parameter permits: How many permits to take; at least 1.
    /// - Throws: ``RateLimiterError`` (``RateLimiterError/Code/rateLimited``,
    ///   ``RateLimiterError/Code/queueFull`` or ``RateLimiterError/Code/exceedsCapacity``) when
    ///   refused; `CancellationError` when the task is cancelled while it waits (the permits are
    ///   then not taken).
    public func acquire(permits: Int = 1) async throws {
        precondition(permits >= 1, "permits must be at least 1, got \(permits)")
        let start = self.reader.now()
        let action = self.state.withLock {
            $0.acquire(
                permits: permits,
                now: start,
                maxWait: self.configuration.maxWait,
                maxQueued: self.configuration.maxQueued
            )
        }
        switch action {
        case .granted:
            self.instruments?.acquired.increment(by: 1)
        case .exceedsCapacity:
            self.instruments?.exceedsCapacity.increment(by: 1)
            throw RateLimiterError(
                code: .exceedsCapacity,
                limiter: self.name,
                message: "asked for \(permits) permits; the limiter holds at most \(self.configuration.algorithm)"
            )
        case .rejected(let wait):
            self.instruments?.rateLimited.increment(by: 1)
            throw RateLimiterError(
                code: .rateLimited,
                limiter: self.name,
                retryAfter: wait,
                message:
                    "\(permits) permits not available within \(self.configuration.maxWait.map { "\($0)" } ?? "the limit")"
            )
        case .queueFull:
            self.instruments?.queueFull.increment(by: 1)
            throw RateLimiterError(
                code: .queueFull,
                limiter: self.name,
                message:
                    "\(permits) permits not available now and \(self.configuration.maxQueued ?? 0) callers already wait"
            )
        case .enqueued(let id, let instruction):
            try await self.wait(id: id, permits: permits, first: instruction)
            self.instruments?.acquired.increment(by: 1)
            self.instruments?.wait.record(self.reader.now() - start)
        }
    }

    /// Runs `operation` after taking one permit, waiting for it up to ``Configuration/maxWait``.
    ///
    /// The operation runs on the calling task, in the caller's isolation, exactly once if the
    /// permit is granted and never otherwise.
    /// - Parameter operation: The work to limit.
    /// - Returns: What `operation` returns.
    /// - Throws: What ``acquire(permits:)`` throws, or what `operation` throws.
    public func run<T: Sendable>(_ operation: () async throws -> T) async throws -> T {
        try await self.acquire(permits: 1)
        return try await operation()
    }

    /// Runs `operation` under the limiter: the ``ResilienceStrategy`` form of ``run(_:)``.
    /// - Parameter operation: The work to limit.
    /// - Returns: What `operation` returns.
    /// - Throws: What ``run(_:)`` throws.
    public func execute<T: Sendable>(_ operation: @escaping @Sendable () async throws -> T) async throws -> T {
        try await self.run(operation)
    }

    /// The permits that could be taken now (ignoring the queue). Takes the lock briefly.
    public var availablePermits: Int {
        let now = self.reader.now()
        return self.state.withLock { $0.available(now: now) }
    }

    /// How many callers are waiting in line. Takes the lock briefly.
    public var queuedCount: Int {
        self.state.withLock { $0.queued }
    }

    /// Waits in line until granted; on cancellation leaves the line and throws.
    private func wait(id: UInt64, permits: Int, first: RateLimiterStateMachine.Instruction?) async throws {
        try await withTaskCancellationHandler {
            var instruction = first
            while true {
                switch instruction {
                case .granted(let takenAt):
                    if Task.isCancelled {
                        // The grant raced with the cancellation: give the permits back.
                        self.state.withLock { $0.refund(permits: permits, takenAt: takenAt) }
                        throw CancellationError()
                    }
                    return
                case .sleep(let until):
                    let delay = until - self.reader.now()
                    do {
                        if delay > .zero {
                            try await self.clock.sleep(for: delay)
                        } else {
                            try Task.checkCancellation()
                        }
                    } catch {
                        self.leave(id: id)
                        throw error
                    }
                    let now = self.reader.now()
                    let (next, resumptions) = self.state.withLock { $0.headWoke(id: id, now: now) }
                    for resumption in resumptions { resumption.resume() }
                    guard let next else { throw CancellationError() }
                    instruction = next
                case nil:
                    instruction = try await withCheckedThrowingContinuation { continuation in
                        let resumption = self.state.withLock { $0.park(id: id, continuation: continuation) }
                        resumption?.resume()
                    }
                }
            }
        } onCancel: {
            self.leave(id: id)
        }
    }

    private func leave(id: UInt64) {
        let now = self.reader.now()
        let resumptions = self.state.withLock { $0.cancel(id: id, now: now) }
        for resumption in resumptions { resumption.resume() }
    }
}

/// The metric handlers of one rate limiter, made once; `nil` with a telemetry that records no
/// metrics (``NoOpTelemetry``).
struct RateLimiterInstruments: Sendable {
    let acquired: any TelemetryCounter
    let rateLimited: any TelemetryCounter
    let exceedsCapacity: any TelemetryCounter
    let queueFull: any TelemetryCounter
    let wait: any TelemetryTimer

    static func make(_ telemetry: any Telemetry, name: String) -> RateLimiterInstruments? {
        if !telemetry.recordsMetrics { return nil }
        let dimensions = [("limiter", name)]
        func rejected(_ reason: String) -> any TelemetryCounter {
            telemetry.makeCounter(
                label: "keel.ratelimiter.rejected",
                dimensions: dimensions + [("reason", reason)]
            )
        }
        return RateLimiterInstruments(
            acquired: telemetry.makeCounter(label: "keel.ratelimiter.acquired", dimensions: dimensions),
            rateLimited: rejected("rate_limited"),
            exceedsCapacity: rejected("exceeds_capacity"),
            queueFull: rejected("queue_full"),
            wait: telemetry.makeTimer(label: "keel.ratelimiter.wait", dimensions: dimensions)
        )
    }
}
