/// Why a request failed.
///
/// Every failure of ``RequestClient/send(_:deadline:)`` is a `RequestError` whose ``code`` says
/// what happened; ``underlying`` carries the cause where there is one (the handler's error, the
/// policy's rejection).
public struct RequestError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure this is. New codes may be added; switch with a `default`.
    public struct Code: Hashable, Sendable, CustomStringConvertible, CaseIterable {
        private enum Base: String, Hashable, Sendable, CaseIterable {
            case noHandler, undeclaredDependency, noHealthyInstance, deadlineExceeded
            case handlerFailed, shuttingDown, cancelled, rejected
            case circuitOpen, bulkheadFull, rateLimited, invalidDeadline
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// Every code this version of Keel has, for a mapping that must cover them all (such as a
        /// wire format that carries codes by name).
        public static var allCases: [Code] { Base.allCases.map(Code.init) }

        /// The code whose ``description`` is `name`.
        /// - Parameter name: A code's name, such as `noHealthyInstance`.
        /// - Returns: `nil` for a name that no code of this version has (a newer version's code).
        public init?(name: String) {
            guard let base = Base(rawValue: name) else { return nil }
            self.base = base
        }

        /// No registered service handles this request type.
        public static let noHandler = Code(.noHandler)
        /// The calling service did not declare the handling service as a dependency.
        public static let undeclaredDependency = Code(.undeclaredDependency)
        /// The handling service has no live and ready instance.
        public static let noHealthyInstance = Code(.noHealthyInstance)
        /// The call's deadline passed before it finished, or a timeout in the route's policy ran
        /// out (then ``RequestError/underlying`` is the timeout's error).
        public static let deadlineExceeded = Code(.deadlineExceeded)
        /// The handler threw; ``RequestError/underlying`` is what it threw.
        public static let handlerFailed = Code(.handlerFailed)
        /// The call's deadline (its own or the one it inherited) was made on a clock of another
        /// kind than the host's — a `ContinuousClock` deadline on a host driven by a test clock,
        /// or the reverse — so the host cannot measure it; the call did not run. Make deadlines
        /// with `RequestClient.send(_:timeout:)` or on the clock the host was given.
        public static let invalidDeadline = Code(.invalidDeadline)
        /// The host is shutting down and takes no new requests.
        public static let shuttingDown = Code(.shuttingDown)
        /// The caller's task was cancelled.
        public static let cancelled = Code(.cancelled)
        /// The route's policy refused the call for a reason of its own (not one of the three
        /// below: a custom policy, a hedge or a fallback that gave up…); ``RequestError/underlying``
        /// is the policy's error.
        public static let rejected = Code(.rejected)
        /// A circuit breaker in the route's policy is open (or forced open, or its half-open
        /// probes are all taken) and refused the call without running it;
        /// ``RequestError/underlying`` is the `CircuitBreakerError`.
        public static let circuitOpen = Code(.circuitOpen)
        /// A bulkhead in the route's policy is full (its queue too, or the wait ran out);
        /// ``RequestError/underlying`` is the `BulkheadError`.
        public static let bulkheadFull = Code(.bulkheadFull)
        /// A rate limiter in the route's policy refused the call; ``RequestError/underlying`` is
        /// the `RateLimiterError`.
        public static let rateLimited = Code(.rateLimited)

        /// The code's name.
        public var description: String { self.base.rawValue }
    }

    /// What kind of failure this is.
    public var code: Code
    /// The request type's name.
    public var request: String
    /// The service the request was routed to, when known.
    public var service: ServiceName?
    /// A human-readable explanation.
    public var message: String
    /// The cause, where there is one.
    public var underlying: (any Error)?

    /// Creates an error.
    /// - Parameters:
    ///   - code: What kind of failure.
    ///   - request: The request type's name.
    ///   - service: The target service.
    ///   - message: An explanation.
    ///   - underlying: The cause.
    public init(
        code: Code,
        request: String,
        service: ServiceName? = nil,
        message: String,
        underlying: (any Error)? = nil
    ) {
        self.code = code
        self.request = request
        self.service = service
        self.message = message
        self.underlying = underlying
    }

    /// `RequestError(code) request → service: message (cause)`.
    public var description: String {
        var text = "RequestError(\(self.code)) \(self.request)"
        if let service { text += " → \(service)" }
        text += ": \(self.message)"
        if let underlying { text += " (cause: \(underlying))" }
        return text
    }
}
