import Keel
import KeelCore
import KeelEventSourcing

/// What a process manager declares in ``ProcessManager/registerHandlers(_:)``: the events it
/// reacts to, each with its correlation key and handler, and the types of the commands it sends
/// and of the events it publishes.
///
/// ```swift
/// func registerHandlers(_ handlers: inout ProcessHandlers<Self>) {
///     handlers.sends(ChargePayment.self)
///     handlers.sends(RefundPayment.self)
///     handlers.publishes(OrderCancelled.self)
///     handlers.on(OrderCreated.self, correlatedBy: \.orderID) { event, state, context in
///         state = State(orderID: event.orderID, amount: event.amount, step: .charging)
///         try context.send(ChargePayment(orderID: event.orderID, amount: event.amount))
///     }
/// }
/// ```
///
/// The command and event types are declared so that an effect stored in the outbox can be decoded
/// and delivered after a restart, when nothing but its type's name is left of it.
public struct ProcessHandlers<Manager: ProcessManager>: Sendable {
    /// The events handled, in the order declared.
    var routes: [EventRoute<Manager>] = []
    /// The effects' types and how to deliver them.
    var effects = EffectDeclarations()

    init() {}

    /// Declares that the process manager reacts to events of type `E`, delivered by a durable
    /// subscription of the runner's service (at least once, from every service that declares `E`
    /// in ``/Keel/ServiceActor/publishes``).
    ///
    /// For each event, the runner derives the correlation key, waits for the instance's turn
    /// (messages of one instance are handled one at a time, those of different instances
    /// concurrently), skips the event if the instance has handled it already (by event id) or has
    /// completed, and calls `handler` with the instance's state (`nil` for an instance not started
    /// yet). The handler changes the state and records effects in the context; the runner commits
    /// both, and the event's id, atomically.
    /// - Parameters:
    ///   - type: The event type; declare each type once.
    ///   - correlationKey: Derives the instance's key from an event: not empty.
    ///   - handler: Decides; it does no I/O (see ``ProcessManager``). When it throws, nothing is
    ///     committed, and the event is retried and then parked by its durable subscription.
    public mutating func on<E: DomainEvent>(
        _ type: E.Type,
        correlatedBy correlationKey: @escaping @Sendable (E) -> String,
        _ handler: @escaping @Sendable (E, inout Manager.State?, inout ProcessContext) throws -> Void
    ) {
        precondition(
            !self.routes.contains { $0.eventType == E.eventType },
            "\(Manager.name) declares a handler for \(E.eventType) twice"
        )
        self.routes.append(
            EventRoute(eventType: E.eventType) { runner, environment, configuration in
                try await environment.subscribeDurably(
                    to: E.self,
                    name: "process-\(Manager.name)-\(E.eventType)",
                    configuration: configuration
                ) { event, recorded in
                    try await runner.handleEvent(
                        correlationKey: correlationKey(event),
                        eventID: recorded.metadata.id.description
                    ) { state, context in
                        try handler(event, &state, &context)
                    }
                }
            }
        )
    }

    /// Declares that the process manager sends commands of type `R`
    /// (``ProcessContext/send(_:)``).
    /// - Parameter type: The command type; ``/Keel/ServiceRequest/name`` names it in the outbox.
    public mutating func sends<R: ServiceRequest>(_ type: R.Type) {
        self.effects.commands.insert(R.name)
        self.effects.deliver[EffectDeclarations.key(.command, R.name)] = { payload, _, codec, environment, timeout in
            let command = try codec.decode(R.self, from: payload)
            if let timeout {
                _ = try await environment.requests.send(command, timeout: timeout)
            } else {
                _ = try await environment.requests.send(command)
            }
        }
    }

    /// Declares that the process manager publishes events of type `E` durably
    /// (``ProcessContext/publish(_:)``). The service must declare `E` in
    /// ``/Keel/ServiceActor/publishes`` as well.
    /// - Parameter type: The event type; ``/KeelEventSourcing/DomainEvent/eventType`` names it in
    ///   the outbox.
    public mutating func publishes<E: DomainEvent>(_ type: E.Type) {
        self.effects.publications.insert(E.eventType)
        self.effects.deliver[EffectDeclarations.key(.publication, E.eventType)] = {
            payload,
            key,
            codec,
            environment,
            _ in
            let event = try codec.decode(E.self, from: payload)
            try await environment.publishDurably(event, id: EffectDeclarations.eventID(for: key))
        }
    }
}

/// One event type a process manager handles, and how to subscribe to it.
struct EventRoute<Manager: ProcessManager>: Sendable {
    /// The event's type name.
    var eventType: String
    /// Subscribes the runner durably to the event type in the environment's service.
    var subscribe:
        @Sendable (ProcessManagerRunner<Manager>, ServiceEnvironment, ProjectionRunner.Configuration) async throws ->
            DurableSubscription
}

/// The command and event types a process manager may record, and how to deliver each.
struct EffectDeclarations: Sendable {
    /// Delivers a stored effect: decodes its payload and sends or publishes it, within the trace
    /// context the runner binds (whose causation id is the effect's idempotency key). Given the
    /// payload, the idempotency key, the codec, the service's environment and the command timeout.
    typealias Delivery =
        @Sendable ([UInt8], String, any EventCodec, ServiceEnvironment, Duration?) async throws -> Void

    var commands: Set<String> = []
    var publications: Set<String> = []
    var deliver: [String: Delivery] = [:]

    static func key(_ kind: OutboxEntry.Kind, _ type: String) -> String {
        "\(kind.rawValue):\(type)"
    }

    /// A published effect's event id: two 64-bit FNV-1a hashes of its idempotency key, so that
    /// every publication of the effect has the same id.
    static func eventID(for key: String) -> EventID {
        func fnv1a(_ seed: UInt64) -> UInt64 {
            var hash = seed
            for byte in key.utf8 {
                hash ^= UInt64(byte)
                hash = hash &* 0x0000_0100_0000_01b3
            }
            return hash
        }
        return EventID(high: fnv1a(0xcbf2_9ce4_8422_2325), low: fnv1a(0x6c62_272e_07bb_0142))
    }
}
