/// The error a ``CircuitBreaker`` throws when it rejects a call without running it.
///
/// A rejection never runs the operation and never suspends. Errors thrown by the operation itself
/// pass through the breaker unchanged; only rejections are `CircuitBreakerError`s.
///
/// ```swift
/// do {
///     let quote = try await breaker.run { try await gateway.quote(order) }
/// } catch let error as CircuitBreakerError where error.code == .open {
///     // Fail fast; `error.remainingOpenDuration` says when to try again.
/// }
/// ```
public struct CircuitBreakerError: Error, Sendable, CustomStringConvertible {
    /// Why a call was rejected. The set may grow.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: Hashable, Sendable {
            case open
            case halfOpenFull
            case forcedOpen
        }

        private let base: Base

        private init(_ base: Base) {
            self.base = base
        }

        /// The breaker is open: too many recent calls failed or were slow.
        public static let open = Code(.open)
        /// The breaker is half-open and all its probe permits are taken.
        public static let halfOpenFull = Code(.halfOpenFull)
        /// The breaker was forced open by ``CircuitBreaker/forceOpen()``.
        public static let forcedOpen = Code(.forcedOpen)

        /// The code's name.
        public var description: String {
            switch self.base {
            case .open: "open"
            case .halfOpenFull: "halfOpenFull"
            case .forcedOpen: "forcedOpen"
            }
        }
    }

    /// Why the call was rejected.
    public var code: Code
    /// The name of the breaker that rejected the call.
    public var breakerName: String
    /// For ``Code/open``, how long the breaker stays open, measured on its clock at the rejection;
    /// `nil` where it is not meaningful (half-open, forced open) and where the breaker rejected
    /// without reading its clock (open, with ``CircuitBreaker/Configuration/HalfOpenTransition/automatic``).
    public var remainingOpenDuration: Duration?
    /// An underlying cause, if any; rejections made by the breaker itself have none.
    public var cause: (any Error)?

    /// Creates an error.
    /// - Parameters:
    ///   - code: Why the call was rejected.
    ///   - breakerName: The breaker's name.
    ///   - remainingOpenDuration: How long the breaker stays open, if known.
    ///   - cause: An underlying cause.
    public init(
        code: Code,
        breakerName: String,
        remainingOpenDuration: Duration? = nil,
        cause: (any Error)? = nil
    ) {
        self.code = code
        self.breakerName = breakerName
        self.remainingOpenDuration = remainingOpenDuration
        self.cause = cause
    }

    /// A sentence saying what happened. Built on demand, so a rejection costs no string work.
    public var message: String {
        switch self.code {
        case .open:
            if let remaining = self.remainingOpenDuration {
                return "circuit breaker '\(self.breakerName)' is open for another \(remaining)"
            }
            return "circuit breaker '\(self.breakerName)' is open"
        case .halfOpenFull:
            return "circuit breaker '\(self.breakerName)' is half-open and all probe permits are taken"
        case .forcedOpen:
            return "circuit breaker '\(self.breakerName)' is forced open"
        default:
            return "circuit breaker '\(self.breakerName)' rejected the call (\(self.code))"
        }
    }

    /// The code and the message.
    public var description: String {
        var text = "CircuitBreakerError.\(self.code): \(self.message)"
        if let cause = self.cause {
            text += " (cause: \(cause))"
        }
        return text
    }
}
