/// A process manager: the coordinator of a choreography, which keeps durable state per business
/// process (one *instance* per correlation key, such as an order id), reacts to the events of the
/// services taking part, and answers with commands, events and timeouts.
///
/// A process manager is a value that declares what it reacts to and decides what to do; a
/// ``ProcessManagerRunner`` does the rest: it receives the events through durable subscriptions
/// (at least once, across restarts), loads the instance's state, calls the handler, and commits the
/// new state, the record that the event was handled, the pending timeouts and the effects to carry
/// out in one atomic batch of the service's key-value storage. Only then does it send the commands
/// and publish the events, from that outbox, again after a crash until they are delivered.
///
/// ```swift
/// struct OrderFulfilment: ProcessManager {
///     struct State: Codable, Sendable {
///         var orderID: String
///         var amount: Int
///         var step: Step
///         enum Step: String, Codable, Sendable { case charging, reserving, refunding }
///     }
///
///     static let name = "order-fulfilment"
///
///     func registerHandlers(_ handlers: inout ProcessHandlers<Self>) {
///         handlers.sends(ChargePayment.self)
///         handlers.publishes(OrderConfirmed.self)
///         handlers.on(OrderCreated.self, correlatedBy: \.orderID) { event, state, context in
///             guard state == nil else { return }
///             state = State(orderID: event.orderID, amount: event.amount, step: .charging)
///             try context.send(ChargePayment(orderID: event.orderID, amount: event.amount))
///             try context.schedule("payment", after: .seconds(30))
///         }
///         // … PaymentProcessed, PaymentFailed, InventoryReserved, …
///     }
///
///     func handleTimeout(_ timeout: ProcessTimeout, state: inout State?, context: inout ProcessContext) throws {
///         // the payment did not answer in time: cancel the order
///     }
/// }
/// ```
///
/// **Handlers decide; they do no I/O.** A handler is synchronous: it reads the event and the
/// state, changes the state and records effects in its ``ProcessContext``. It may run again for the
/// same event only when its first run was not committed, and then nothing of the first run
/// happened. Everything that leaves the process manager (commands, events) goes through the
/// context, so that it is committed with the state and delivered at least once.
///
/// **Duplicates.** An event already handled for an instance (the same event id) is skipped: the
/// state does not change and no effect is recorded twice. A timeout that was cancelled or
/// rescheduled before it fired does not fire.
public protocol ProcessManager: Sendable {
    /// The state of one instance, kept durably between messages: encoded with the runner's codec
    /// (JSON by default). Change it as you would change stored data: new fields optional or with
    /// defaults, so that instances in flight still decode.
    associatedtype State: Codable & Sendable

    /// The process manager's name: unique within its service, stable across versions. It names the
    /// key-value namespace of its instances (`process-<name>`) and its durable subscriptions
    /// (`process-<name>-<event type>`), and begins the idempotency keys of its effects.
    static var name: String { get }

    /// Declares the events the process manager reacts to (with their correlation keys and
    /// handlers), the commands it sends and the events it publishes.
    ///
    /// Called once, by ``ProcessManagerRunner/init(_:configuration:)``.
    /// - Parameter handlers: The declarations to add to.
    func registerHandlers(_ handlers: inout ProcessHandlers<Self>)

    /// Reacts to one of the instance's timeouts (scheduled with
    /// ``ProcessContext/schedule(_:after:)``) coming due.
    ///
    /// Runs like an event handler: under the instance's turn, with its state, and what it records
    /// is committed in one batch. It runs once per scheduled timeout, at its due time or, when the
    /// service was down then, as soon as it starts again; again only when its first run was not
    /// committed. A timeout that was cancelled, rescheduled or whose instance completed does not
    /// fire. The default does nothing.
    /// - Parameters:
    ///   - timeout: The timeout that came due.
    ///   - state: The instance's state.
    ///   - context: Where the handler records its effects.
    /// - Throws: Anything: nothing is committed and the timeout fires again (see
    ///   ``ProcessManagerRunner/Configuration/timeoutAttempts``).
    func handleTimeout(_ timeout: ProcessTimeout, state: inout State?, context: inout ProcessContext) throws
}

extension ProcessManager {
    /// Does nothing: a process manager without timeouts needs no handler for them.
    /// - Parameters:
    ///   - timeout: The timeout that came due.
    ///   - state: The instance's state.
    ///   - context: Where the handler records its effects.
    public func handleTimeout(_ timeout: ProcessTimeout, state: inout State?, context: inout ProcessContext) throws {}
}
