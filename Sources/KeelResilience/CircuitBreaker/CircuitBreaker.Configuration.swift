import KeelCore

extension CircuitBreaker {
    /// How a ``CircuitBreaker`` decides to open, how long it stays open and how it probes.
    ///
    /// Every property has a default; change the ones you need. Any combination of the three
    /// failure policies may be active at once (consecutive failures, failure rate, slow-call
    /// rate); the breaker opens when any of them trips. A configuration is a plain `Sendable`
    /// value: it is copied into the breaker when the breaker is made and never changes after.
    ///
    /// Invariants, checked with `precondition` when a breaker is made:
    /// - `failureRateThreshold` and `slowCallRateThreshold`, when set, are in `0 < x <= 1`;
    /// - `consecutiveFailureThreshold`, when set, is at least 1;
    /// - `minimumNumberOfCalls` is at least 1;
    /// - `permittedCallsInHalfOpen` is at least 1;
    /// - `slowCallDurationThreshold` and `maximumTimeInHalfOpen`, when set, are positive;
    /// - `afterMaximumTimeInHalfOpen` is `open` or `closed`;
    /// - the window and the open duration satisfy their own documented invariants.
    ///
    /// ```swift
    /// var configuration = CircuitBreaker.Configuration()
    /// configuration.window = .lastDuration(.seconds(30), buckets: 10)
    /// configuration.minimumNumberOfCalls = 20
    /// configuration.failureRateThreshold = 0.5
    /// configuration.openDuration = .exponential(initial: .seconds(5), maximum: .seconds(120))
    /// ```
    public struct Configuration: Sendable {
        /// Open when this fraction of the calls in the window failed (`0 < x <= 1`), once the
        /// window holds at least ``minimumNumberOfCalls``; `nil` turns the failure-rate policy off.
        /// In half-open it also judges the probes: the breaker re-opens as soon as failed probes
        /// reach this fraction of ``permittedCallsInHalfOpen``, and closes when all probes have
        /// completed below it. With `nil`, a single failed probe re-opens the breaker. Default `0.5`.
        public var failureRateThreshold: Double? = 0.5

        /// Open after this many failures in a row, whatever the window says; `nil` (the default)
        /// turns the policy off. A success resets the count.
        public var consecutiveFailureThreshold: Int? = nil

        /// A call that takes at least this long is slow; `nil` (the default) turns slow-call
        /// detection off, and with it the two clock reads per call that it needs.
        public var slowCallDurationThreshold: Duration? = nil

        /// Open when this fraction of the calls in the window were slow (`0 < x <= 1`), once the
        /// window holds at least ``minimumNumberOfCalls``. Used only with
        /// ``slowCallDurationThreshold``. Default `1.0` (every call slow).
        public var slowCallRateThreshold: Double = 1.0

        /// Which recent calls the rates are computed over. Default: the last 100 calls.
        public var window: Window = .lastCalls(100)

        /// The rates are not evaluated before the window holds this many calls. Default 20.
        ///
        /// A count-based window smaller than this could never hold that many, so the breaker
        /// uses the window's size instead: with `.lastCalls(2)`, the rates are evaluated over the
        /// last 2 calls. ``CircuitBreakerMetrics`` reports the same.
        public var minimumNumberOfCalls: Int = 20

        /// The calls the window must hold before the rates are evaluated: ``minimumNumberOfCalls``,
        /// or a smaller count-based window's size.
        var effectiveMinimumNumberOfCalls: Int {
            switch self.window.base {
            case .count(let size): min(self.minimumNumberOfCalls, size)
            case .time: self.minimumNumberOfCalls
            }
        }

        /// How long the breaker stays open each time it opens. Default: a fixed 30 seconds.
        public var openDuration: OpenDuration = .fixed(.seconds(30))

        /// How many probe calls half-open admits; the rest are rejected at once with
        /// ``CircuitBreakerError/Code/halfOpenFull``. Default 5.
        public var permittedCallsInHalfOpen: Int = 5

        /// If set, a breaker still half-open after this long (because probes are slow or never
        /// come) leaves half-open as ``afterMaximumTimeInHalfOpen`` says. Default `nil`:
        /// half-open lasts until the probes decide.
        public var maximumTimeInHalfOpen: Duration? = nil

        /// Where a breaker goes when ``maximumTimeInHalfOpen`` runs out before its probes decide:
        /// ``CircuitBreaker/State/open`` (the default: too few probes came back to trust the
        /// dependency) or ``CircuitBreaker/State/closed`` (for a dependency that is called too
        /// rarely for probes to complete in time, where staying shut would starve it of calls).
        /// Any other state is a programming error.
        public var afterMaximumTimeInHalfOpen: CircuitBreaker.State = .open

        /// When the breaker leaves the open state. Default ``HalfOpenTransition/onNextCall``.
        public var halfOpenTransition: HalfOpenTransition = .onNextCall

        /// Which thrown errors count as failures. Default: ``ErrorClassification/allButRejections``,
        /// every error except the refusals of other strategies in the same pipeline (a full
        /// bulkhead, a rate limit, another breaker), which say nothing about the dependency's
        /// health. `CancellationError` does not count, whatever the classification says, unless
        /// the caller's deadline had passed (see ``countsDeadlineExceededAsFailure``).
        public var errorClassification: ErrorClassification = .allButRejections

        /// Whether an attempt that ends cancelled after the caller's deadline has passed (the
        /// deadline of the current `TraceContext`, read on the breaker's clock) counts as a
        /// failure. Default `true`: a dependency that is always too slow for its callers'
        /// deadlines is unhealthy for them, and the request channel cancels such an attempt when
        /// the deadline fires, so counting it as a cancellation would never open the breaker.
        /// `false` treats it as any other cancellation: not counted. A caller that gives up
        /// before its deadline (task cancelled, deadline not passed) never counts either way.
        public var countsDeadlineExceededAsFailure: Bool = true

        /// Whether a returned value counts as a failure (for example a response with status
        /// 503); `nil` (the default): every returned value is a success. Called on the caller's
        /// task, once per completed call, outside any lock.
        public var isFailureResult: (@Sendable (any Sendable) -> Bool)? = nil

        /// Creates the default configuration.
        public init() {}

        /// Checks the documented invariants.
        func validate() {
            if let threshold = self.failureRateThreshold {
                precondition(
                    threshold > 0 && threshold <= 1,
                    "failureRateThreshold must be in (0, 1], got \(threshold)"
                )
            }
            if let threshold = self.consecutiveFailureThreshold {
                precondition(threshold >= 1, "consecutiveFailureThreshold must be at least 1, got \(threshold)")
            }
            if let threshold = self.slowCallDurationThreshold {
                precondition(threshold > .zero, "slowCallDurationThreshold must be positive, got \(threshold)")
            }
            precondition(
                self.slowCallRateThreshold > 0 && self.slowCallRateThreshold <= 1,
                "slowCallRateThreshold must be in (0, 1], got \(self.slowCallRateThreshold)"
            )
            precondition(self.minimumNumberOfCalls >= 1, "minimumNumberOfCalls must be at least 1")
            precondition(self.permittedCallsInHalfOpen >= 1, "permittedCallsInHalfOpen must be at least 1")
            precondition(
                self.afterMaximumTimeInHalfOpen == .open || self.afterMaximumTimeInHalfOpen == .closed,
                "afterMaximumTimeInHalfOpen must be open or closed, got \(self.afterMaximumTimeInHalfOpen)"
            )
            if let maximum = self.maximumTimeInHalfOpen {
                precondition(maximum > .zero, "maximumTimeInHalfOpen must be positive, got \(maximum)")
            }
            self.window.validate()
            self.openDuration.validate()
        }
    }
}

extension CircuitBreaker.Configuration {
    /// The sliding window of recent calls that failure and slow-call rates are computed over.
    public struct Window: Sendable, Hashable {
        enum Base: Hashable, Sendable {
            case count(Int)
            case time(Duration, buckets: Int)
        }

        let base: Base

        /// The last `count` recorded calls (count-based). Invariant: `count >= 1`.
        /// - Parameter count: How many calls the window holds.
        /// - Returns: The window.
        public static func lastCalls(_ count: Int) -> Window {
            Window(base: .count(count))
        }

        /// The calls recorded in the last `duration` (time-based), kept in buckets of
        /// `duration / buckets` each: a call leaves the window when its whole bucket is at least
        /// `duration` old, so it counts for at least `duration` and less than
        /// `duration + duration / buckets` after it was recorded (with `.lastDuration(.seconds(60))`,
        /// a call counts for 60 to 66 seconds). Memory is fixed whatever the call rate. Invariants: `duration > 0`,
        /// `buckets >= 1`, and a bucket at least one nanosecond long.
        /// - Parameters:
        ///   - duration: How far back the window reaches.
        ///   - buckets: How finely it is divided; default 10.
        /// - Returns: The window.
        public static func lastDuration(_ duration: Duration, buckets: Int = 10) -> Window {
            Window(base: .time(duration, buckets: buckets))
        }

        func validate() {
            switch self.base {
            case .count(let count):
                precondition(count >= 1, "a count-based window holds at least one call, got \(count)")
            case .time(let duration, let buckets):
                precondition(duration > .zero, "a time-based window must be positive, got \(duration)")
                precondition(buckets >= 1, "a time-based window has at least one bucket, got \(buckets)")
                precondition(duration / buckets >= .nanoseconds(1), "a bucket must last at least 1 ns")
            }
        }
    }

    /// How long the breaker stays open.
    ///
    /// With backoff, each opening that follows another without a successful close in between
    /// lasts longer; a close (half-open probes passing) or a reset starts again from the initial
    /// duration. The schedule is a pure function of the number of openings and a random draw.
    public struct OpenDuration: Sendable, Hashable {
        enum Base: Hashable, Sendable {
            case fixed(Duration)
            case exponential(initial: Duration, multiplier: Double, maximum: Duration, jitter: Double)
        }

        let base: Base

        /// The same duration every time. Invariant: `duration > 0`.
        /// - Parameter duration: How long to stay open.
        /// - Returns: The open duration.
        public static func fixed(_ duration: Duration) -> OpenDuration {
            OpenDuration(base: .fixed(duration))
        }

        /// `initial × multiplierⁿ` for the n-th consecutive opening (n from 0), capped at
        /// `maximum`, then spread by up to `±jitter × duration` with a draw from the breaker's
        /// `RandomSource` (and capped again). Invariants: `initial > 0`, `maximum >= initial`,
        /// `multiplier >= 1`, `0 <= jitter <= 1`.
        /// - Parameters:
        ///   - initial: The first opening's duration.
        ///   - multiplier: The growth per opening; default 2.
        ///   - maximum: The cap.
        ///   - jitter: The relative spread; default 0 (no jitter).
        /// - Returns: The open duration.
        public static func exponential(
            initial: Duration,
            multiplier: Double = 2,
            maximum: Duration,
            jitter: Double = 0
        ) -> OpenDuration {
            OpenDuration(base: .exponential(initial: initial, multiplier: multiplier, maximum: maximum, jitter: jitter))
        }

        func validate() {
            switch self.base {
            case .fixed(let duration):
                precondition(duration > .zero, "the open duration must be positive, got \(duration)")
            case .exponential(let initial, let multiplier, let maximum, let jitter):
                precondition(initial > .zero, "the initial open duration must be positive, got \(initial)")
                precondition(maximum >= initial, "the maximum open duration must be at least the initial one")
                precondition(multiplier >= 1, "the multiplier must be at least 1, got \(multiplier)")
                precondition(jitter >= 0 && jitter <= 1, "the jitter must be in [0, 1], got \(jitter)")
            }
        }

        /// The duration of the opening that follows `openings` earlier consecutive openings.
        /// - Parameters:
        ///   - openings: Earlier openings without a close in between (0 for the first).
        ///   - unitRandom: A draw in `0..<1`, used only with jitter.
        /// - Returns: The duration, positive.
        func duration(afterOpenings openings: Int, unitRandom: () -> Double) -> Duration {
            switch self.base {
            case .fixed(let duration):
                return duration
            case .exponential(let initial, let multiplier, let maximum, let jitter):
                let maximumSeconds = maximum.seconds
                var seconds = initial.seconds
                for _ in 0..<min(openings, 64) where seconds < maximumSeconds {
                    seconds *= multiplier
                }
                seconds = min(seconds, maximumSeconds)
                if jitter > 0 {
                    seconds *= 1 + jitter * (2 * unitRandom() - 1)
                    seconds = min(seconds, maximumSeconds)
                }
                return max(.seconds(seconds), .nanoseconds(1))
            }
        }
    }

    /// When an open breaker becomes half-open.
    public struct HalfOpenTransition: Sendable, Hashable {
        enum Base: Hashable, Sendable {
            case onNextCall
            case automatic
        }

        let base: Base

        /// Lazily: the first call after the open duration ends moves the breaker to half-open and
        /// is its first probe. No task, no timer; ``CircuitBreaker/state`` reads `open` until then.
        public static let onNextCall = HalfOpenTransition(base: .onNextCall)

        /// On the clock: a timer task owned by the breaker moves it to half-open when the open
        /// duration ends, so the state and the events change without any call. The breaker owns
        /// the task; call ``CircuitBreaker/shutdown()`` when done with the breaker.
        public static let automatic = HalfOpenTransition(base: .automatic)
    }

    /// Which thrown errors count as failures, and which are ignored.
    ///
    /// The breaker classifies an error in this order: `CancellationError` is not a failure (it
    /// is treated as ignored) unless the caller's deadline had passed
    /// (``CircuitBreaker/Configuration/countsDeadlineExceededAsFailure``); an ignored error is neither a failure nor a success and gives back
    /// its half-open permit; a recorded error is a failure; any other error counts as a success
    /// (the remote side answered, if with an error of the caller's making). Classification runs on
    /// the caller's task, outside any lock.
    public struct ErrorClassification: Sendable {
        let isIgnored: @Sendable (any Error) -> Bool
        let isRecorded: @Sendable (any Error) -> Bool

        /// Every error is a failure (except `CancellationError`).
        public static let all = ErrorClassification(isIgnored: { _ in false }, isRecorded: { _ in true })

        /// Every error is a failure, except `CancellationError` and the rejections of KeelResilience
        /// strategies (``BulkheadError``, ``RateLimiterError``, ``CircuitBreakerError``), which are
        /// ignored: they come from local load or another breaker, not from the guarded dependency.
        public static let allButRejections = ErrorClassification(
            isIgnored: { error in
                error is BulkheadError || error is RateLimiterError || error is CircuitBreakerError
            },
            isRecorded: { _ in true }
        )

        /// A predicate decides: `true` is a failure, `false` a success.
        /// - Parameter isFailure: The predicate, called once per thrown error.
        /// - Returns: The classification.
        public static func predicate(_ isFailure: @escaping @Sendable (any Error) -> Bool) -> ErrorClassification {
            ErrorClassification(isIgnored: { _ in false }, isRecorded: isFailure)
        }

        /// Lists of error types. An error whose dynamic type is in `ignore` is ignored; otherwise,
        /// with `record` `nil` every error is a failure, else only those whose type is listed.
        /// - Parameters:
        ///   - record: Error types that count as failures, or `nil` for all.
        ///   - ignore: Error types that are ignored.
        /// - Returns: The classification.
        public static func lists(
            record: [any Error.Type]? = nil,
            ignore: [any Error.Type] = []
        ) -> ErrorClassification {
            let ignored = ignore.map { ObjectIdentifier($0) }
            let recorded = record?.map { ObjectIdentifier($0) }
            return ErrorClassification(
                isIgnored: { error in ignored.contains(ObjectIdentifier(type(of: error))) },
                isRecorded: { error in recorded?.contains(ObjectIdentifier(type(of: error))) ?? true }
            )
        }

        /// Full control: one predicate for ignored errors and one for failures.
        /// - Parameters:
        ///   - isIgnored: Whether an error is ignored; checked first.
        ///   - isFailure: Whether a not-ignored error is a failure.
        /// - Returns: The classification.
        public static func custom(
            isIgnored: @escaping @Sendable (any Error) -> Bool,
            isFailure: @escaping @Sendable (any Error) -> Bool
        ) -> ErrorClassification {
            ErrorClassification(isIgnored: isIgnored, isRecorded: isFailure)
        }
    }
}

extension Duration {
    /// The duration in seconds, as a `Double`.
    fileprivate var seconds: Double {
        let components = self.components
        return Double(components.seconds) + Double(components.attoseconds) * 1e-18
    }
}
