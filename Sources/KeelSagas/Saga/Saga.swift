/// An orchestration: a unit of work across services, written as straight-line async code whose
/// steps are journaled, so that it either completes or undoes what it did.
///
/// A saga's ``run(_:saga:)`` calls its steps through the ``SagaContext`` it receives. Each step
/// is an action with an optional compensation; the runner journals every transition before it
/// counts. When a step fails or the saga is cancelled, the completed steps are compensated in
/// reverse order. After a crash, ``SagaRunner`` runs the body again: the steps the journal
/// records as completed return their recorded outputs instead of running again, so the body
/// reaches the point where it stopped and goes on from there.
///
/// ```swift
/// struct PlaceOrder: Saga {
///     static let name = "order.place"
///     let requests: RequestClient
///
///     func run(_ order: OrderDraft, saga: SagaContext) async throws -> OrderReceipt {
///         let quote = try await saga.step("validate") { _ in
///             try await requests.send(ValidateOrder(order))
///         }
///         let payment = try await saga.step("pay", .idempotent) { step in
///             try await requests.send(Charge(order.user, quote.total, key: step.idempotencyKey))
///         } compensate: { payment, _ in
///             try await requests.send(Refund(payment.id))
///         }
///         _ = try await saga.step("reserve", .idempotent) { step in
///             try await requests.send(Reserve(order.items, key: step.idempotencyKey))
///         } compensate: { reservation, _ in
///             try await requests.send(Release(reservation.id))
///         }
///         return try await saga.pivot("confirm") { _ in
///             try await requests.send(Confirm(order.id, payment: payment.id))
///         }
///     }
/// }
/// ```
///
/// ## The determinism rule
/// Recovery relies on the body calling the same steps, in the same order, with the same names,
/// each time it runs with the same input and the same recorded step outputs. Keep every decision
/// in the body a function of its input and of step outputs: read the time, draw random numbers,
/// or call other services only inside a step. Keel checks the rule on every replay: a step whose
/// name or kind differs from what the journal records at that point, or a recorded step the body
/// no longer reaches, stops the saga with ``SagaError/Code-swift.struct/nondeterminism`` (it then
/// needs an operator), rather than guessing.
public protocol Saga: Sendable {
    /// What a run starts from; journaled when the run starts, so recovery can run the body again.
    associatedtype Input: Codable & Sendable
    /// What a completed run returns; journaled when the run completes.
    associatedtype Output: Codable & Sendable

    /// The saga's type name, stable across releases: journals name it, and recovery finds the
    /// definition by it. Not empty, without `:`.
    static var name: String { get }

    /// The version of what the saga journals: its input, its steps' outputs and its output.
    /// Default 1. Raise it when one of them changes shape, and add a migration from the version
    /// before to ``migrations``, so that runs journaled by the earlier version can still be
    /// resumed (see ``SagaMigration``).
    static var version: Int { get }

    /// How payloads journaled by earlier versions of the saga are read: for each version before
    /// ``version``, the migrations of the payloads it changed. Default none.
    static var migrations: [SagaMigration] { get }

    /// The saga's body: calls its steps through `saga`, in order, and returns the output.
    ///
    /// It runs once when the saga starts, and again whenever the saga is resumed after a crash or
    /// a restart; see the determinism rule above.
    /// - Parameters:
    ///   - input: The run's input.
    ///   - saga: The run's context: its steps, parallel branches, nested sagas and timers.
    /// - Returns: The run's output.
    /// - Throws: Any error: the saga then compensates its completed steps (or, past its pivot,
    ///   needs an operator).
    func run(_ input: Input, saga: SagaContext) async throws -> Output
}

extension Saga {
    /// Version 1: the saga's journaled shapes have not changed.
    public static var version: Int { 1 }

    /// None.
    public static var migrations: [SagaMigration] { [] }
}
