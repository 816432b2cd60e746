/// Something that happened in a ``CircuitBreaker``: a state transition or a call's outcome.
///
/// Events are plain `Sendable` values delivered through ``CircuitBreakerEvents``.
public struct CircuitBreakerEvent: Sendable, CustomStringConvertible {
    /// What kind of event this is. The set may grow.
    public struct Kind: Hashable, Sendable, CustomStringConvertible {
        private enum Base: Hashable, Sendable {
            case stateTransition
            case success
            case failure
            case ignoredError
            case notPermitted
            case slowCall
            case reset
            case failureRateExceeded
            case slowCallRateExceeded
        }

        private let base: Base

        private init(_ base: Base) {
            self.base = base
        }

        /// The state changed from ``CircuitBreakerEvent/fromState`` to ``CircuitBreakerEvent/toState``.
        public static let stateTransition = Kind(.stateTransition)
        /// A call succeeded (including errors classified as successes).
        public static let success = Kind(.success)
        /// A call failed: a recorded error or a result classified as a failure.
        public static let failure = Kind(.failure)
        /// A call ended with an ignored error or with cancellation; it did not count.
        public static let ignoredError = Kind(.ignoredError)
        /// A call was rejected without running.
        public static let notPermitted = Kind(.notPermitted)
        /// A call took at least the slow-call threshold (published besides its success or failure).
        public static let slowCall = Kind(.slowCall)
        /// The breaker was reset (published besides the transition to closed, if any).
        public static let reset = Kind(.reset)
        /// The failure rate reached its threshold (``CircuitBreakerEvent/rate``), in the window of a
        /// closed breaker or among the probes of a half-open one; published just before the
        /// transition to open it causes.
        public static let failureRateExceeded = Kind(.failureRateExceeded)
        /// The slow-call rate reached its threshold (``CircuitBreakerEvent/rate``); published just
        /// before the transition to open it causes.
        public static let slowCallRateExceeded = Kind(.slowCallRateExceeded)

        /// The kind's name.
        public var description: String {
            switch self.base {
            case .stateTransition: "stateTransition"
            case .success: "success"
            case .failure: "failure"
            case .ignoredError: "ignoredError"
            case .notPermitted: "notPermitted"
            case .slowCall: "slowCall"
            case .reset: "reset"
            case .failureRateExceeded: "failureRateExceeded"
            case .slowCallRateExceeded: "slowCallRateExceeded"
            }
        }
    }

    /// What happened.
    public var kind: Kind
    /// The name of the breaker.
    public var breakerName: String
    /// For a transition, the state left.
    public var fromState: CircuitBreaker.State?
    /// For a transition, the state entered.
    public var toState: CircuitBreaker.State?
    /// For a call's outcome, how long the call took, if the breaker measured it (with slow-call
    /// detection on); for an opening, how long the breaker stays open.
    public var duration: Duration?
    /// For a failure or an ignored error, the error (`nil` for a result counted as a failure).
    public var error: (any Error)?
    /// For a rejection, why.
    public var rejection: CircuitBreakerError.Code?
    /// For ``Kind/failureRateExceeded`` and ``Kind/slowCallRateExceeded``, the rate (0 to 1).
    public var rate: Double?

    /// Creates an event.
    /// - Parameters:
    ///   - kind: What happened.
    ///   - breakerName: The breaker's name.
    ///   - fromState: For a transition, the state left.
    ///   - toState: For a transition, the state entered.
    ///   - duration: A call's duration or an opening's length.
    ///   - error: The error of a failure or an ignored error.
    ///   - rejection: Why a call was rejected.
    ///   - rate: The rate that reached its threshold.
    public init(
        kind: Kind,
        breakerName: String,
        fromState: CircuitBreaker.State? = nil,
        toState: CircuitBreaker.State? = nil,
        duration: Duration? = nil,
        error: (any Error)? = nil,
        rejection: CircuitBreakerError.Code? = nil,
        rate: Double? = nil
    ) {
        self.kind = kind
        self.breakerName = breakerName
        self.fromState = fromState
        self.toState = toState
        self.duration = duration
        self.error = error
        self.rejection = rejection
        self.rate = rate
    }

    /// A one-line summary, such as `breaker 'payments': closed -> open`.
    public var description: String {
        if let from = self.fromState, let to = self.toState {
            return "breaker '\(self.breakerName)': \(from) -> \(to)"
        }
        var text = "breaker '\(self.breakerName)': \(self.kind)"
        if let rejection = self.rejection { text += " (\(rejection))" }
        if let rate = self.rate { text += " (\(rate))" }
        if let error = self.error { text += " (\(error))" }
        return text
    }
}
