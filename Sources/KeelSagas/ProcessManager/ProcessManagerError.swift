/// Why a process manager could not handle a message, keep its state or carry out an effect.
///
/// A handler that throws, a stored state that no longer decodes or a store that refuses a commit
/// never loses the message: the event's durable subscription retries it and then parks it as a
/// failed publication (``/Keel/DurableSubscription/resubmit(position:)`` delivers it again once the
/// cause is fixed), and a timeout stays pending and fires again on the next start. An effect that
/// cannot be delivered is parked as a failed effect
/// (``ProcessManagerRunner/failedEffects()``). ``correlationKey`` names the process instance
/// concerned, where there is one; ``underlying`` carries the cause.
public struct ProcessManagerError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure this is. New codes may be added; switch with a `default`.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case invalidCorrelationKey, undeclaredEffect, unknownEffectType, stateUndecodable, recordCorrupt
            case handlerFailed, encodingFailed, storageFailed, notRunning, alreadyRunning, invalidArgument
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// An event's correlation key is empty: it cannot name a process instance.
        public static let invalidCorrelationKey = Code(.invalidCorrelationKey)
        /// A handler sent a command or published an event of a type that the process manager does
        /// not declare in ``ProcessManager/registerHandlers(_:)`` (``ProcessHandlers/sends(_:)``,
        /// ``ProcessHandlers/publishes(_:)``): an effect of an undeclared type could not be sent
        /// again after a restart.
        public static let undeclaredEffect = Code(.undeclaredEffect)
        /// A stored effect names a command or event type that the process manager no longer
        /// declares. The effect is parked as failed, not dropped.
        public static let unknownEffectType = Code(.unknownEffectType)
        /// The stored state of an instance does not decode as the process manager's
        /// ``ProcessManager/State`` (a schema change without a migration, or damage). The message
        /// that needed it is retried and then parked, never applied to an empty state.
        public static let stateUndecodable = Code(.stateUndecodable)
        /// An instance's bookkeeping record (its timeouts and counters), a pending timeout or a
        /// stored effect does not decode.
        public static let recordCorrupt = Code(.recordCorrupt)
        /// The process manager's handler threw; ``ProcessManagerError/underlying`` is its error.
        /// Nothing the handler did was committed.
        public static let handlerFailed = Code(.handlerFailed)
        /// A state, command or event did not encode; nothing was committed.
        public static let encodingFailed = Code(.encodingFailed)
        /// The service's key-value store failed to read or commit; ``ProcessManagerError/underlying``
        /// is the store's error. A failed commit wrote nothing.
        public static let storageFailed = Code(.storageFailed)
        /// The runner is not running: not started yet, or stopped.
        public static let notRunning = Code(.notRunning)
        /// ``ProcessManagerRunner/start(in:)`` was called on a runner that was already started.
        public static let alreadyRunning = Code(.alreadyRunning)
        /// An argument is invalid, such as an empty timeout name or one starting with `$`.
        public static let invalidArgument = Code(.invalidArgument)

        /// The code's name.
        public var description: String { self.base.rawValue }
    }

    /// What kind of failure this is.
    public var code: Code
    /// A human-readable explanation.
    public var message: String
    /// The process instance concerned, where there is one.
    public var correlationKey: String?
    /// The cause, where there is one.
    public var underlying: (any Error)?

    /// Creates an error.
    /// - Parameters:
    ///   - code: What kind of failure.
    ///   - message: An explanation.
    ///   - correlationKey: The process instance concerned.
    ///   - underlying: The cause.
    public init(code: Code, message: String, correlationKey: String? = nil, underlying: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.correlationKey = correlationKey
        self.underlying = underlying
    }

    /// `ProcessManagerError(code) [key]: message (cause: …)`.
    public var description: String {
        var text = "ProcessManagerError(\(self.code))"
        if let correlationKey { text += " [\(correlationKey)]" }
        text += ": \(self.message)"
        if let underlying { text += " (cause: \(underlying))" }
        return text
    }
}
