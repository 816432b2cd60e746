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
    public var correlationID: String {
        get { self.correlation.text }
        set { self.correlation = LazyID(newValue) }
    }
    /// The id of the message that caused it, if any.
    public var causationID: String? {
        get { self.causation?.text }
        set { self.causation = newValue.map(LazyID.init) }
    }
    /// The correlation id, formatted only when read.
    var correlation: LazyID
    /// The causation id, formatted only when read.
    var causation: LazyID?
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
        self.init(
            id: id,
            time: time,
            source: source,
            topic: topic,
            eventType: eventType,
            correlation: LazyID(correlationID),
            causation: causationID.map(LazyID.init),
            traceID: traceID,
            spanID: spanID
        )
    }

    /// Creates an envelope whose ids are kept unformatted.
    init(
        id: EventID,
        time: Date,
        source: ServiceName?,
        topic: String,
        eventType: String,
        correlation: LazyID,
        causation: LazyID?,
        traceID: TraceID,
        spanID: SpanID
    ) {
        self.id = id
        self.time = time
        self.source = source
        self.topic = topic
        self.eventType = eventType
        self.correlation = correlation
        self.causation = causation
        self.traceID = traceID
        self.spanID = spanID
    }

    private enum CodingKeys: String, CodingKey {
        case id, time, source, topic, eventType, correlationID, causationID, traceID, spanID
    }

    /// Decodes an envelope.
    /// - Parameter decoder: The decoder.
    /// - Throws: When a field is missing or malformed.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            id: try container.decode(EventID.self, forKey: .id),
            time: try container.decode(Date.self, forKey: .time),
            source: try container.decodeIfPresent(ServiceName.self, forKey: .source),
            topic: try container.decode(String.self, forKey: .topic),
            eventType: try container.decode(String.self, forKey: .eventType),
            correlationID: try container.decode(String.self, forKey: .correlationID),
            causationID: try container.decodeIfPresent(String.self, forKey: .causationID),
            traceID: try container.decode(TraceID.self, forKey: .traceID),
            spanID: try container.decode(SpanID.self, forKey: .spanID)
        )
    }

    /// Encodes the envelope.
    /// - Parameter encoder: The encoder.
    /// - Throws: What the encoder throws.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(self.id, forKey: .id)
        try container.encode(self.time, forKey: .time)
        try container.encodeIfPresent(self.source, forKey: .source)
        try container.encode(self.topic, forKey: .topic)
        try container.encode(self.eventType, forKey: .eventType)
        try container.encode(self.correlationID, forKey: .correlationID)
        try container.encodeIfPresent(self.causationID, forKey: .causationID)
        try container.encode(self.traceID, forKey: .traceID)
        try container.encode(self.spanID, forKey: .spanID)
    }

    /// The context a handler of this event runs with: same trace and correlation, a new span
    /// whose parent is the publisher's span, and this event's id as causation.
    /// - Parameter random: The source of the new span id.
    /// - Returns: The handler's context.
    public func makeHandlerContext(using random: RandomSource) -> TraceContext {
        var context = TraceContext(
            traceID: self.traceID,
            spanID: .random(using: random),
            parentSpanID: self.spanID,
            correlation: self.correlation,
            causation: LazyID(.uuid(self.id.high, self.id.low))
        )
        context.isInHandler = true
        return context
    }
}
