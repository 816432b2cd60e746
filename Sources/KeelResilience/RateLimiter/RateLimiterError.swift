/// Why a ``RateLimiter`` refused to grant permits.
///
/// Cancellation is not a `RateLimiterError`: a waiter whose task is cancelled throws
/// `CancellationError`, so that breakers and retries upstream never count it as a failure.
///
/// ```swift
/// do {
///     try await limiter.run { try await gateway.charge(order) }
/// } catch let error as RateLimiterError where error.code == .rateLimited || error.code == .queueFull {
///     // answer "429 Too Many Requests", perhaps with error.retryAfter
/// }
/// ```
public struct RateLimiterError: Error, Sendable, CustomStringConvertible {
    /// Why the permits were refused. The set may grow: match the codes you handle and keep a
    /// default.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case rateLimited = "rate limited"
            case exceedsCapacity = "exceeds capacity"
            case queueFull = "queue full"
        }

        private let base: Base

        private init(_ base: Base) {
            self.base = base
        }

        /// The permits are not available now and would not be within `maxWait`.
        public static let rateLimited = Code(.rateLimited)
        /// More permits were asked for than the limiter ever holds at once, so they could never be
        /// granted.
        public static let exceedsCapacity = Code(.exceedsCapacity)
        /// The permits are not available now, and ``RateLimiter/Configuration/maxQueued`` callers
        /// already wait for theirs, so this one may not join them.
        public static let queueFull = Code(.queueFull)

        /// The code in words, such as `rate limited`.
        public var description: String {
            self.base.rawValue
        }
    }

    /// Why the permits were refused.
    public var code: Code
    /// The name of the limiter that refused.
    public var limiter: String
    /// How long the caller would have had to wait, when the limiter worked it out (it does for
    /// ``Code/rateLimited`` when `maxWait` is positive, never for ``Code/queueFull``); a hint for
    /// a `Retry-After` reply.
    public var retryAfter: Duration?
    /// A sentence for people.
    public var message: String

    /// Creates an error.
    /// - Parameters:
    ///   - code: Why the permits were refused.
    ///   - limiter: The name of the limiter.
    ///   - retryAfter: How long the caller would have had to wait, if known.
    ///   - message: A sentence for people.
    public init(code: Code, limiter: String, retryAfter: Duration? = nil, message: String) {
        self.code = code
        self.limiter = limiter
        self.retryAfter = retryAfter
        self.message = message
    }

    /// `rate limiter "name": code: message`.
    public var description: String {
        "rate limiter \"\(self.limiter)\": \(self.code): \(self.message)"
    }
}
