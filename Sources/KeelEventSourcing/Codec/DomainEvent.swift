/// An event of an event-sourced domain: an immutable fact, stored in an ``EventStore`` under a
/// stable type name and a schema version.
///
/// ```swift
/// struct UserRegistered: DomainEvent {
///     static let eventType = "user.registered"
///     static let schemaVersion = 2   // v1 had no `name`; an upcaster migrates it
///
///     var email: String
///     var name: String
/// }
/// ```
///
/// An ``EventSerializer`` turns values into ``EventData`` (``eventType``, ``schemaVersion`` and
/// the payload its ``EventCodec`` encodes) and stored ``RecordedEvent``s back into values,
/// running the ``EventUpcaster``s of an ``EventTypeRegistry`` on payloads written at an older
/// schema version.
///
/// ``eventType`` is what the store keeps, forever: choose it deliberately (a dotted name such as
/// `user.registered`), and never derive it from the Swift type's name, which a refactoring may
/// change. Raise ``schemaVersion`` whenever a change to the type makes payloads written before it
/// undecodable or wrong, and register an upcaster from the previous version (see
/// <doc:SchemaEvolution>).
public protocol DomainEvent: Codable, Sendable {
    /// The stable name stored with every event of this type, such as `user.registered`; not empty.
    static var eventType: String { get }

    /// The version of this type's payload schema, from 1; defaults to 1.
    static var schemaVersion: Int { get }
}

extension DomainEvent {
    /// Version 1: the first schema of an event type.
    public static var schemaVersion: Int { 1 }
}
