import Keel
import KeelCore
import KeelEventSourcing

/// What a process manager's handler records while it handles one message: the commands to send,
/// the events to publish, the timeouts to schedule or cancel, and whether the instance is complete.
///
/// Nothing recorded here happens while the handler runs. When it returns, the runner commits the
/// new state with everything recorded in one atomic batch, and only then sends the commands and
/// publishes the events, in the order they were recorded, at least once (after a crash, again):
/// see ``ProcessManagerRunner``. When the handler throws, nothing recorded happens.
///
/// ```swift
/// handlers.on(PaymentProcessed.self, correlatedBy: \.orderID) { event, state, context in
///     guard var process = state, process.step == .charging else { return }
///     process.step = .reserving
///     state = process
///     context.cancelTimeout("payment")
///     try context.send(ReserveInventory(orderID: event.orderID, quantity: process.quantity))
/// }
/// ```
public struct ProcessContext: Sendable {
    /// The correlation key of the instance being handled.
    public let correlationKey: String
    /// The id of the message being handled: the event's id, or the timeout's
    /// ``ProcessTimeout/id``.
    public let messageID: String
    /// The host's wall-clock time when the handler was called, in nanoseconds since
    /// 1970-01-01 00:00:00 UTC; the time a timeout's due time counts from.
    public let now: Int64

    /// The process manager's name.
    let process: String
    /// The command and event types the process manager declares, and how to encode them.
    let declarations: EffectDeclarations
    let codec: any EventCodec
    /// What the handler recorded.
    private(set) var effects: [OutboxEntry] = []
    /// The instance's pending timeouts by name, as the handler leaves them.
    private(set) var timeouts: [String: ProcessTimeout]
    /// Whether the handler completed the instance.
    private(set) var isCompleted = false
    /// How many effects and schedulings the handler recorded: each one's place, for its key.
    private var nextIndex = 0

    init(
        process: String,
        correlationKey: String,
        messageID: String,
        now: Int64,
        timeouts: [String: ProcessTimeout],
        declarations: EffectDeclarations,
        codec: any EventCodec
    ) {
        self.process = process
        self.correlationKey = correlationKey
        self.messageID = messageID
        self.now = now
        self.timeouts = timeouts
        self.declarations = declarations
        self.codec = codec
    }

    /// The instance's pending timeouts, by due time, including those this handler scheduled.
    public var pendingTimeouts: [ProcessTimeout] {
        visibleTimeouts(self.timeouts)
    }

    /// Whether a handler (this one or an earlier one) completed the instance.
    public var isComplete: Bool { self.isCompleted }

    /// Records a command to send once the handler's changes are committed.
    ///
    /// The runner sends it through the service's ``/Keel/RequestClient`` (so its target must be one
    /// of the service's declared dependencies), with the effect's idempotency key as the request's
    /// ``/KeelCore/TraceContext/causationID`` and the correlation key as its correlation id. It is
    /// sent at least once: again after a crash that came before its delivery was recorded, and
    /// again after a failed attempt (``ProcessManagerRunner/Configuration/deliveryAttempts``). Make
    /// its handler idempotent, by the causation id or by a key of the command's own (an order id).
    /// The response is not given back to the process manager: let the receiver publish the
    /// outcome as an event the process manager handles.
    /// - Parameter command: The command, of a type declared with ``ProcessHandlers/sends(_:)``.
    /// - Throws: ``ProcessManagerError`` with ``ProcessManagerError/Code/undeclaredEffect`` when
    ///   `R` is not declared, or ``ProcessManagerError/Code/encodingFailed`` when the command does
    ///   not encode.
    public mutating func send<R: ServiceRequest>(_ command: R) throws(ProcessManagerError) {
        guard self.declarations.commands.contains(R.name) else {
            throw ProcessManagerError(
                code: .undeclaredEffect,
                message: "\(self.process) sends \(R.name), which it does not declare with `sends(_:)`",
                correlationKey: self.correlationKey
            )
        }
        try self.record(.command, type: R.name, value: command)
    }

    /// Records an event to publish durably once the handler's changes are committed.
    ///
    /// The runner publishes it with ``/Keel/ServiceEnvironment/publishDurably(_:)`` (so the service
    /// must declare its type in ``/Keel/ServiceActor/publishes``), at least once. Every
    /// publication of it carries the same event id, derived from the effect's idempotency key, so
    /// a subscriber that deduplicates by event id (as process managers do) sees one event.
    /// - Parameter event: The event, of a type declared with ``ProcessHandlers/publishes(_:)``.
    /// - Throws: ``ProcessManagerError`` with ``ProcessManagerError/Code/undeclaredEffect`` when
    ///   `E` is not declared, or ``ProcessManagerError/Code/encodingFailed`` when the event does
    ///   not encode.
    public mutating func publish<E: DomainEvent>(_ event: E) throws(ProcessManagerError) {
        guard self.declarations.publications.contains(E.eventType) else {
            throw ProcessManagerError(
                code: .undeclaredEffect,
                message: "\(self.process) publishes \(E.eventType), which it does not declare with `publishes(_:)`",
                correlationKey: self.correlationKey
            )
        }
        try self.record(.publication, type: E.eventType, value: event)
    }

    /// Schedules the timeout `name` to come due `delay` from ``now`` on the host's wall clock,
    /// replacing a pending timeout of the same name.
    ///
    /// The timeout is stored with the state when the handler's changes commit; it fires once, by
    /// calling ``ProcessManager/handleTimeout(_:state:context:)`` at its due time (a restart
    /// re-arms it; one that came due while the service was down fires as soon as it starts).
    /// - Parameters:
    ///   - name: The timeout's name: not empty, not starting with `$` (reserved for the runner).
    ///   - delay: How long from now; a negative or zero delay fires as soon as the change commits.
    /// - Throws: ``ProcessManagerError`` with ``ProcessManagerError/Code/invalidArgument`` for an
    ///   invalid name.
    public mutating func schedule(_ name: String, after delay: Duration) throws(ProcessManagerError) {
        guard !name.isEmpty, !name.hasPrefix("$") else {
            throw ProcessManagerError(
                code: .invalidArgument,
                message: "a timeout's name must not be empty or start with `$`, got \"\(name)\"",
                correlationKey: self.correlationKey
            )
        }
        self.scheduleTimeout(name, after: delay)
    }

    /// Cancels the pending timeout `name`, if there is one, when the handler's changes commit.
    /// - Parameter name: The timeout's name.
    public mutating func cancelTimeout(_ name: String) {
        guard !name.hasPrefix("$") else { return }
        self.timeouts[name] = nil
    }

    /// Completes the instance when the handler's changes commit: its pending timeouts are
    /// cancelled, later events for its correlation key are ignored (and recorded as ignored in the
    /// log), and it is deleted after ``ProcessManagerRunner/Configuration/completedRetention``. The
    /// effects recorded by this handler are still delivered.
    public mutating func complete() {
        self.isCompleted = true
        self.timeouts = [:]
    }

    /// Schedules a timeout, reserved names included.
    mutating func scheduleTimeout(_ name: String, after delay: Duration) {
        let due = self.now.addingReportingOverflow(delay.clampedNanoseconds)
        let dueTime = due.overflow ? (delay < .zero ? Int64.min : Int64.max) : due.partialValue
        self.timeouts[name] = ProcessTimeout(name: name, dueTime: dueTime, id: self.nextKey())
    }

    /// Removes the timeout that is firing: it is handled, unless the handler schedules it again.
    mutating func consumeTimeout(_ name: String) {
        self.timeouts[name] = nil
    }

    private mutating func record(
        _ kind: ProcessEffect.Kind,
        type: String,
        value: some Encodable
    )
        throws(ProcessManagerError)
    {
        let payload: [UInt8]
        do {
            payload = try self.codec.encode(value)
        } catch {
            throw ProcessManagerError(
                code: .encodingFailed,
                message: "the \(kind) \(type) does not encode",
                correlationKey: self.correlationKey,
                underlying: error
            )
        }
        self.effects.append(
            OutboxEntry(
                kind: kind == .command ? .command : .publication,
                type: type,
                correlationKey: self.correlationKey,
                idempotencyKey: self.nextKey(),
                trace: TraceContext.current,
                payload: payload
            )
        )
    }

    /// `<process>/<correlation key>/<message id>/<index>`, and the next index.
    private mutating func nextKey() -> String {
        defer { self.nextIndex += 1 }
        return "\(self.process)/\(self.correlationKey)/\(self.messageID)/\(self.nextIndex)"
    }
}
