/// A command or event that a process manager's handler recorded, as the runner's outbox keeps it
/// until it is delivered (``ProcessManagerRunner/pendingEffects()``) or after its delivery failed
/// (``ProcessManagerRunner/failedEffects()``).
public struct ProcessEffect: Sendable, Hashable {
    /// What an effect does.
    public struct Kind: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case command, publication
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// A command: a request sent through the service's ``/Keel/RequestClient``.
        public static let command = Kind(.command)
        /// An event published durably (``/Keel/ServiceEnvironment/publishDurably(_:)``).
        public static let publication = Kind(.publication)

        /// `command` or `publication`.
        public var description: String { self.base.rawValue }
    }

    /// What the effect does.
    public var kind: Kind
    /// The command's ``/Keel/ServiceRequest/name`` or the event's
    /// ``/KeelEventSourcing/DomainEvent/eventType``.
    public var type: String
    /// The instance whose handler recorded it.
    public var correlationKey: String
    /// The effect's stable key: `<process>/<correlation key>/<message id>/<index>`. Every delivery
    /// of the effect carries it as the ``/KeelCore/TraceContext/causationID`` of the request or
    /// of the published event, so a receiver can recognise a delivery it has seen; a published
    /// event's id is derived from it too, so every delivery of one publication has the same event
    /// id.
    public var idempotencyKey: String
    /// How many deliveries were tried and failed.
    public var attempts: Int
    /// Why the last delivery failed, for a failed effect.
    public var failure: String?

    /// Creates an effect's description.
    /// - Parameters:
    ///   - kind: What it does.
    ///   - type: The command's or event's type name.
    ///   - correlationKey: The instance.
    ///   - idempotencyKey: Its stable key.
    ///   - attempts: The failed deliveries.
    ///   - failure: Why the last one failed.
    public init(
        kind: Kind,
        type: String,
        correlationKey: String,
        idempotencyKey: String,
        attempts: Int = 0,
        failure: String? = nil
    ) {
        self.kind = kind
        self.type = type
        self.correlationKey = correlationKey
        self.idempotencyKey = idempotencyKey
        self.attempts = attempts
        self.failure = failure
    }
}
