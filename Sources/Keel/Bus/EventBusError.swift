/// Why the event bus refused an operation.
public struct EventBusError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of failure. New codes may be added; switch with a `default`.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case shuttingDown, cancelled
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// The bus is shutting down or shut down: it takes no new events or subscriptions. While
        /// a host drains, handlers that are already running may still publish.
        public static let shuttingDown = Code(.shuttingDown)
        /// The publisher was cancelled while it waited for room in a subscriber's mailbox. The
        /// event was not given to that subscriber; subscribers before it have it, and later ones
        /// got it only if they had room at once.
        public static let cancelled = Code(.cancelled)

        /// The code's name.
        public var description: String { self.base.rawValue }
    }

    /// What kind of failure.
    public var code: Code
    /// The topic concerned.
    public var topic: String
    /// An explanation.
    public var message: String

    /// Creates an error.
    /// - Parameters:
    ///   - code: What kind of failure.
    ///   - topic: The topic concerned.
    ///   - message: An explanation.
    public init(code: Code, topic: String, message: String) {
        self.code = code
        self.topic = topic
        self.message = message
    }

    /// `EventBusError(code) topic: message`.
    public var description: String { "EventBusError(\(self.code)) \(self.topic): \(self.message)" }
}
