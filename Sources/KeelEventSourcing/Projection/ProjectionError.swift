/// Why a ``ProjectionRunner`` stopped or refused a call.
public struct ProjectionError: Error, Sendable, CustomStringConvertible {
    /// What went wrong. The set may grow: match the codes you handle and keep a default.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case handlerFailed = "handler failed"
            case storage
            case eventStore = "event store"
            case notRunning = "not running"
            case alreadyRunning = "already running"
            case stopped
            case parkedEventNotFound = "parked event not found"
        }

        private let base: Base

        private init(_ base: Base) {
            self.base = base
        }

        /// The projection threw for an event on every attempt and the policy is
        /// ``ProjectionRunner/PoisonEventPolicy/stop``; ``ProjectionError/position`` names it.
        public static let handlerFailed = Code(.handlerFailed)
        /// The read model's ``KeyValueStore`` failed to read or commit.
        public static let storage = Code(.storage)
        /// The ``EventStore`` failed a read.
        public static let eventStore = Code(.eventStore)
        /// The runner is not running, so a position it has not reached will not be reached.
        public static let notRunning = Code(.notRunning)
        /// ``ProjectionRunner/run()`` was called while the runner was already running.
        public static let alreadyRunning = Code(.alreadyRunning)
        /// The runner stopped while the caller waited.
        public static let stopped = Code(.stopped)
        /// No event is parked at the position.
        public static let parkedEventNotFound = Code(.parkedEventNotFound)

        /// The code in words.
        public var description: String { self.base.rawValue }
    }

    /// What went wrong.
    public var code: Code
    /// The projection's name.
    public var projection: String
    /// The event's position, when one event is concerned.
    public var position: UInt64?
    /// A sentence for people.
    public var message: String
    /// The error behind this one, if any.
    public var cause: (any Error)?

    /// Creates an error.
    /// - Parameters:
    ///   - code: What went wrong.
    ///   - projection: The projection's name.
    ///   - position: The event's position.
    ///   - message: A sentence for people.
    ///   - cause: The error behind this one.
    public init(
        code: Code,
        projection: String,
        position: UInt64? = nil,
        message: String,
        cause: (any Error)? = nil
    ) {
        self.code = code
        self.projection = projection
        self.position = position
        self.message = message
        self.cause = cause
    }

    /// `projection name: code: message`, with the position and the cause when there are.
    public var description: String {
        var text = "projection \(self.projection): \(self.code)"
        if let position = self.position {
            text += " (position \(position))"
        }
        text += ": \(self.message)"
        if let cause = self.cause {
            text += " (cause: \(cause))"
        }
        return text
    }
}
