/// Turns events into a read model: the query side of CQRS.
///
/// A projection is a pure reaction to events. ``apply(_:to:)`` reads what it needs from the read
/// model through the transaction and records puts and deletes in it; a ``ProjectionRunner``
/// feeds it every event of the store in global order and commits the writes of a page of
/// events together with the new checkpoint, atomically. So `apply` must not write anywhere else
/// (that write would not be rolled back with the transaction) and may be called more than once
/// for an event whose handling failed or whose page was not committed.
///
/// The read model of the example answers "which users have an email address at this domain":
///
/// ```swift
/// struct UsersByEmailDomain: Projection {
///     let name = "users-by-email-domain"
///     let serializer: EventSerializer
///
///     func apply(_ event: RecordedEvent, to transaction: inout ReadModelTransaction) async throws {
///         switch event.type {
///         case UserRegistered.eventType:
///             let registered = try serializer.decode(event, as: UserRegistered.self)
///             transaction.put(Array(registered.email.utf8), forKey: "user/\(registered.userID)")
///             transaction.put([], forKey: "domain/\(domain(of: registered.email))/\(registered.userID)")
///         case UserEmailChanged.eventType:
///             let changed = try serializer.decode(event, as: UserEmailChanged.self)
///             if let old = try await transaction.value(forKey: "user/\(changed.userID)") {
///                 transaction.delete("domain/\(domain(of: String(decoding: old, as: UTF8.self)))/\(changed.userID)")
///             }
///             transaction.put(Array(changed.newEmail.utf8), forKey: "user/\(changed.userID)")
///             transaction.put([], forKey: "domain/\(domain(of: changed.newEmail))/\(changed.userID)")
///         default:
///             break
///         }
///     }
/// }
/// ```
public protocol Projection: Sendable {
    /// The projection's stable name, such as `users-by-email-domain`; it names its checkpoint
    /// and read model in logs and errors.
    var name: String { get }

    /// Records in `transaction` what `event` changes in the read model.
    ///
    /// Called by the runner, on the runner's actor, one event at a time in global order. Throw
    /// to reject the event: the runner discards the transaction's writes and retries or parks
    /// the event as its ``ProjectionRunner/Configuration`` says. A `CancellationError` stops
    /// the runner without parking anything.
    /// - Parameters:
    ///   - event: The event.
    ///   - transaction: The read model's writes for this event.
    /// - Throws: Any error, to reject the event.
    func apply(_ event: RecordedEvent, to transaction: inout ReadModelTransaction) async throws
}
