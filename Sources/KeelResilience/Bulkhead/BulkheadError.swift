/// Why a bulkhead, a memory bulkhead or a resource pool refused an operation.
///
/// Every refusal names the bulkhead it came from, so that a log line or a metric says which
/// workload was shed. Cancellation is not a `BulkheadError`: a waiter whose task is cancelled
/// throws `CancellationError`, so that breakers and retries upstream never count it as a failure.
///
/// ```swift
/// do {
///     try await bulkhead.run { try await gateway.charge(order) }
/// } catch let error as BulkheadError where error.code == .queueFull {
///     // shed: answer "busy" at once
/// }
/// ```
public struct BulkheadError: Error, Sendable, CustomStringConvertible {
    /// What went wrong. The set may grow: match the codes you handle and keep a default.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case queueFull = "queue full"
            case waitTimedOut = "wait timed out"
            case exceedsCapacity = "exceeds capacity"
            case overBudget = "over budget"
            case unknownPartition = "unknown partition"
            case tooManyKeys = "too many keys"
        }

        private let base: Base

        private init(_ base: Base) {
            self.base = base
        }

        /// Every permit was taken and `maxQueued` waiters were already waiting.
        public static let queueFull = Code(.queueFull)
        /// The operation waited `maxWait` for a permit without getting one.
        public static let waitTimedOut = Code(.waitTimedOut)
        /// The request is larger than the whole capacity (for example a lease of more bytes than
        /// the budget), so it could never be granted.
        public static let exceedsCapacity = Code(.exceedsCapacity)
        /// A memory lease did not fit in what is left of the budget, and waiting is not allowed or
        /// the queue is full.
        public static let overBudget = Code(.overBudget)
        /// The partition asked for was not configured.
        public static let unknownPartition = Code(.unknownPartition)
        /// A keyed bulkhead holds its maximum number of keys and every one of them is busy.
        public static let tooManyKeys = Code(.tooManyKeys)

        /// The code in words, such as `queue full`.
        public var description: String {
            self.base.rawValue
        }
    }

    /// What went wrong.
    public var code: Code
    /// The name of the bulkhead (or pool, or partition) that refused.
    public var bulkhead: String
    /// A sentence for people, with the numbers that explain the refusal.
    public var message: String
    /// The error behind this one, if any.
    public var cause: (any Error)?

    /// Creates an error.
    /// - Parameters:
    ///   - code: What went wrong.
    ///   - bulkhead: The name of the bulkhead that refused.
    ///   - message: A sentence for people.
    ///   - cause: The error behind this one.
    public init(code: Code, bulkhead: String, message: String, cause: (any Error)? = nil) {
        self.code = code
        self.bulkhead = bulkhead
        self.message = message
        self.cause = cause
    }

    /// `bulkhead "name": code: message`, and the cause if there is one.
    public var description: String {
        var text = "bulkhead \"\(self.bulkhead)\": \(self.code): \(self.message)"
        if let cause = self.cause {
            text += " (cause: \(cause))"
        }
        return text
    }
}
