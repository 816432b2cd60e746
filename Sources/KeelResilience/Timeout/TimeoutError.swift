/// Why a ``Timeout`` ended an operation.
///
/// The code says which limit fired: the timeout's own duration, or an earlier deadline inherited
/// from ``/KeelCore/TraceContext/current``. Either way the operation was cancelled and has
/// returned before this error is thrown. A caller's own cancellation is never a `TimeoutError`:
/// it is `CancellationError`.
///
/// ```swift
/// do {
///     try await timeout.execute { try await gateway.charge(order) }
/// } catch let error as TimeoutError {
///     log.warning("charge gave up after \(error.timeout)")
/// }
/// ```
public struct TimeoutError: Error, Sendable, CustomStringConvertible {
    /// Which limit fired. The set may grow: match the codes you handle and keep a default.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case timedOut = "timed out"
            case deadlineExceeded = "deadline exceeded"
        }

        private let base: Base

        private init(_ base: Base) {
            self.base = base
        }

        /// The timeout's own duration elapsed.
        public static let timedOut = Code(.timedOut)
        /// The deadline inherited from the trace context came first (or had already passed).
        public static let deadlineExceeded = Code(.deadlineExceeded)

        /// The code in words, such as `timed out`.
        public var description: String {
            self.base.rawValue
        }
    }

    /// Which limit fired.
    public var code: Code
    /// The time the operation was given: the effective timeout, the earlier of the configured
    /// duration and the time left until the inherited deadline (`.zero` if it had passed).
    public var timeout: Duration
    /// The name of the timeout that fired.
    public var name: String
    /// A sentence for people.
    public var message: String

    /// Creates an error.
    /// - Parameters:
    ///   - code: Which limit fired.
    ///   - timeout: The time the operation was given.
    ///   - name: The name of the timeout.
    ///   - message: A sentence for people.
    public init(code: Code, timeout: Duration, name: String, message: String) {
        self.code = code
        self.timeout = timeout
        self.name = name
        self.message = message
    }

    /// `timeout "name": code after duration: message`.
    public var description: String {
        "timeout \"\(self.name)\": \(self.code) after \(self.timeout): \(self.message)"
    }
}
