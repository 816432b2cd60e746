/// Turns events into a read model: the query side of CQRS.
///
/// A projection is a pure reaction to events. ``apply(_:to:)`` reads what it needs from the read
/// model through the transaction and records puts and deletes in it; a ``ProjectionRunner``
/// feeds it every event of the store in global order and commits the writes of a page of
/// events together with the new checkpoint, atomically. So `apply` must not write anywhere else
/// (that write would not be rolled back with the transaction) and may be called more than once
/// for an event whose handling failed or whose page was not committed.
///
/// The read model of the example answers "which users have an email address at this domain". Its
/// values are `Codable` (``ReadModelTransaction/set(_:forKey:)``), and it names the user by the id
/// the ``AggregateRepository`` recorded on each event (``RecordedEvent/aggregateID``):
///
/// ```swift
/// struct UsersByEmailDomain: Projection {
///     let name = "users-by-email-domain"
///     let serializer: EventSerializer
///
///     func apply(_ event: RecordedEvent, to transaction: inout ReadModelTransaction) async throws {
///         guard let userID = event.aggregateID else { return }
///         switch event.type {
///         case UserRegistered.eventType:
///             let registered = try serializer.decode(event, as: UserRegistered.self)
///             let entry = DirectoryEntry(name: registered.name, email: registered.email)
///             try transaction.set(entry, forKey: "user/\(userID)")
///             transaction.put([], forKey: "domain/\(domain(of: registered.email))/\(userID)")
///         case UserEmailChanged.eventType:
///             let changed = try serializer.decode(event, as: UserEmailChanged.self)
///             guard var entry = try await transaction.value(DirectoryEntry.self, forKey: "user/\(userID)") else {
///                 return
///             }
///             transaction.delete("domain/\(domain(of: entry.email))/\(userID)")
///             entry.email = changed.email
///             try transaction.set(entry, forKey: "user/\(userID)")
///             transaction.put([], forKey: "domain/\(domain(of: changed.email))/\(userID)")
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
