import Foundation
import KeelCore

/// A message published on the ``EventBus``: an immutable fact with a dotted topic.
///
/// ```swift
/// struct OrderCreated: Event {
///     static let topic = "order.created"
///     var orderID: Int
/// }
/// ```
///
/// Topics are dot-separated segments (`order.created`, `inventory.stock.low`); subscribers match
/// them by type or by pattern (see ``TopicPattern``). An event may compute a more specific topic
/// per value by implementing ``topic-swift.property``. Events are `Codable` as well as `Sendable`
/// so that a subscription can later be served from another process or from the event store.
public protocol Event: Sendable, Codable {
    /// The topic of events of this type.
    static var topic: String { get }

    /// The topic of this event; defaults to the type's ``topic-swift.type.property``.
    var topic: String { get }
}

extension Event {
    /// The type's topic.
    public var topic: String { Self.topic }
}

/// A 128-bit event identifier drawn from the host's ``/KeelCore/RandomSource``, rendered in the
/// 8-4-4-4-12 hex form of a UUID.
public struct EventID: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The high 64 bits.
    public var high: UInt64
    /// The low 64 bits.
    public var low: UInt64

    /// Creates an id from its halves.
    /// - Parameters:
    ///   - high: The high 64 bits.
    ///   - low: The low 64 bits.
    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// Draws a fresh id.
    /// - Parameter random: The source.
    /// - Returns: The id.
    public static func random(using random: RandomSource) -> EventID {
        EventID(high: random.next(), low: random.next())
    }

    /// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
    public var description: String {
        hex([self.high, self.low], dashes: [8, 12, 16, 20])
    }
}

/// What travels with every event: who published it, when, and the trace it belongs to.
///
/// The subscriber's handler runs with a ``/KeelCore/TraceContext`` made from the envelope: the same
/// trace and correlation ids, a new span whose parent is ``spanID``, and ``id`` as causation.
public struct EventEnvelope: Sendable, Hashable, Codable {
    /// The event's unique id.
    public var id: EventID
    /// When it was published (wall-clock time from the host's configuration).
    public var time: Date
    /// The service that published it, or `nil` when published from outside any service.
    public var source: ServiceName?
    /// The event's topic.
    public var topic: String
    /// The event's type name.
    public var eventType: String
    /// The business operation it belongs to.
    public var correlationID: String
    /// The id of the message that caused it, if any.
    public var causationID: String?
    /// The trace it belongs to.
    public var traceID: TraceID
    /// The publisher's span.
    public var spanID: SpanID

    /// Creates an envelope.
    /// - Parameters:
    ///   - id: The event id.
    ///   - time: The publication time.
    ///   - source: The publishing service.
    ///   - topic: The topic.
    ///   - eventType: The type name.
    ///   - correlationID: The correlation id.
    ///   - causationID: The causation id.
    ///   - traceID: The trace id.
    ///   - spanID: The publisher's span id.
    public init(
        id: EventID,
        time: Date,
        source: ServiceName?,
        topic: String,
        eventType: String,
        correlationID: String,
        causationID: String?,
        traceID: TraceID,
        spanID: SpanID
    ) {
        self.id = id
        self.time = time
        self.source = source
        self.topic = topic
        self.eventType = eventType
        self.correlationID = correlationID
        self.causationID = causationID
        self.traceID = traceID
        self.spanID = spanID
    }

    /// The context a handler of this event runs with: same trace and correlation, a new span
    /// whose parent is the publisher's span, and this event's id as causation.
    /// - Parameter random: The source of the new span id.
    /// - Returns: The handler's context.
    public func makeHandlerContext(using random: RandomSource) -> TraceContext {
        self.makeHandlerContext(using: random, causationID: self.id.description)
    }

    /// The handler context with the event id's text already made (once per event, not once per
    /// subscriber).
    func makeHandlerContext(using random: RandomSource, causationID: String) -> TraceContext {
        var context = TraceContext(
            traceID: self.traceID,
            spanID: .random(using: random),
            parentSpanID: self.spanID,
            correlationID: self.correlationID,
            causationID: causationID
        )
        context.isInHandler = true
        return context
    }
}
