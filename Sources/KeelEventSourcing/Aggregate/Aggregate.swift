/// An event-sourced domain object: a value rebuilt by applying its stream's events in order, that
/// decides on commands by emitting new events under its invariants.
///
/// An aggregate is the unit of consistency of an event-sourced model. Its events live in one
/// stream, `"\(category)-\(id)"`; an ``AggregateRepository`` loads it (from the latest snapshot
/// plus the events after it, or from every event), runs a command on it, and appends what the
/// command emitted only if nobody else appended to the stream meanwhile.
///
/// The aggregate value is its own state. `apply(_:)` only changes state and never fails: an event
/// is a fact that already happened. Commands are ordinary methods that check the invariants
/// against the current state and return the events to append, or throw your domain error:
///
/// ```swift
/// struct User: Aggregate {
///     static let category = "user"
///
///     var email: String?
///
///     init() {}
///
///     mutating func apply(_ event: UserEvent) {
///         switch event {
///         case .registered(let registered): self.email = registered.email
///         case .emailChanged(let changed): self.email = changed.email
///         }
///     }
///
///     func register(email: String) throws(UserError) -> [UserEvent] {
///         guard self.email == nil else { throw .alreadyRegistered }
///         return [.registered(UserRegistered(email: email))]
///     }
///
///     func changeEmail(to email: String) throws(UserError) -> [UserEvent] {
///         guard let current = self.email else { throw .notRegistered }
///         return [.emailChanged(UserEmailChanged(previous: current, email: email))]
///     }
/// }
///
/// let saved = try await users.execute("42") { user in try user.register(email: "ada@example.com") }
/// ```
///
/// The aggregate is `Codable` so that a repository can store snapshots of it in a
/// ``SnapshotEnvelope``; raise ``snapshotSchemaVersion`` whenever its encoded shape changes, and
/// snapshots written before are ignored (the state is rebuilt from the events) instead of misread.
/// Conformers with only synthesized `Codable` need no code for this.
///
/// Keep `apply(_:)` and commands pure and synchronous: a repository may run a command more than
/// once (see ``ConflictRetry``), and replays `apply(_:)` on every load.
public protocol Aggregate: Codable, Sendable {
    /// The events of this aggregate: usually an enum with one case per ``DomainEvent`` type.
    associatedtype Event: AggregateEvent

    /// The first part of the aggregate's stream names, such as `user` for `user-42`; not empty,
    /// and without `-`, so that ``StreamID/category`` gives it back.
    static var category: String { get }

    /// The version of the aggregate's encoded shape in snapshots, from 1; defaults to 1.
    ///
    /// Raise it whenever a change to the type makes snapshots written before it undecodable or
    /// wrong (a field added, removed, renamed or reinterpreted). Snapshots of another version are
    /// ignored on load.
    static var snapshotSchemaVersion: Int { get }

    /// The state before the first event: an aggregate that does not exist yet.
    init()

    /// Changes the state by one event that happened.
    ///
    /// Runs synchronously, once per event on every load that replays it; must not fail, and must
    /// depend only on the state and the event.
    /// - Parameter event: The event.
    mutating func apply(_ event: Event)
}

extension Aggregate {
    /// Version 1: the first snapshot shape of an aggregate.
    public static var snapshotSchemaVersion: Int { 1 }

    /// Applies `events` in order.
    /// - Parameter events: The events.
    public mutating func apply(_ events: some Sequence<Event>) {
        for event in events {
            self.apply(event)
        }
    }
}
