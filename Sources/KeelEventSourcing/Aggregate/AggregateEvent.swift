/// The events of one ``Aggregate``: the set of ``DomainEvent`` types its stream holds, as one Swift
/// type, so that `apply(_:)` can switch over it exhaustively and a command cannot emit an event of
/// another aggregate.
///
/// Usually an enum with one case per event type. It converts a decoded `any DomainEvent` into a
/// case, and a case back into the ``DomainEvent`` to encode:
///
/// ```swift
/// enum UserEvent: AggregateEvent {
///     case registered(UserRegistered)
///     case emailChanged(UserEmailChanged)
///
///     init?(_ event: any DomainEvent) {
///         switch event {
///         case let event as UserRegistered: self = .registered(event)
///         case let event as UserEmailChanged: self = .emailChanged(event)
///         default: return nil
///         }
///     }
///
///     var domainEvent: any DomainEvent {
///         switch self {
///         case .registered(let event): event
///         case .emailChanged(let event): event
///         }
///     }
/// }
/// ```
///
/// An aggregate with a single event type can use that ``DomainEvent`` type itself: a
/// ``DomainEvent`` that conforms to `AggregateEvent` gets both requirements for free.
///
/// An ``AggregateRepository`` decodes the events of a stream with its ``EventSerializer``'s
/// registry, so register every ``DomainEvent`` type of the aggregate (and its upcasters) there.
public protocol AggregateEvent: Sendable {
    /// Wraps a decoded event, or returns `nil` when it is not one of this aggregate's events.
    /// - Parameter event: An event decoded from the aggregate's stream.
    init?(_ event: any DomainEvent)

    /// The ``DomainEvent`` to encode and append.
    var domainEvent: any DomainEvent { get }
}

extension AggregateEvent where Self: DomainEvent {
    /// Casts `event` to this type.
    /// - Parameter event: An event decoded from the aggregate's stream.
    public init?(_ event: any DomainEvent) {
        guard let event = event as? Self else { return nil }
        self = event
    }

    /// The event itself.
    public var domainEvent: any DomainEvent { self }
}
