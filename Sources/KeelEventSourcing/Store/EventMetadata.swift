import KeelCore

/// What an event carries besides its payload: its id, when it happened, and the trace and
/// business operation it belongs to.
///
/// ``EventMetadata/init(id:time:correlationID:causationID:traceID:spanID:custom:)`` takes every
/// field; ``EventMetadata/current(id:time:)`` fills the trace fields from the task's
/// ``/KeelCore/TraceContext``, so that an event appended inside a request handler records the
/// request it came from.
public struct EventMetadata: Sendable, Hashable, Codable {
    /// The event's unique id, used to detect duplicates.
    public var id: EventID
    /// When the event happened, in nanoseconds since 1970-01-01 00:00:00 UTC (wall-clock time).
    public var time: Int64
    /// The business operation the event belongs to, if known.
    public var correlationID: String?
    /// The id of the message that caused it, if known.
    public var causationID: String?
    /// The trace it was written in, if any.
    public var traceID: TraceID?
    /// The span it was written in, if any.
    public var spanID: SpanID?
    /// Application-defined entries. Keep them small: they are stored with every event. Keys that
    /// start with `$` are Keel's (see ``aggregateID``).
    public var custom: [String: String]

    /// The key under which ``aggregateID`` is kept in ``custom``: `$aggregate-id`.
    public static let aggregateIDKey = "$aggregate-id"

    /// The id of the aggregate the event belongs to, such as `42` for an event of `user-42`;
    /// `nil` when the event was not appended for an aggregate.
    ///
    /// An ``AggregateRepository`` sets it on every event it appends, so that a projection or a
    /// durable subscriber knows the aggregate without parsing stream names (which a
    /// ``NamespacedEventStore`` prefixes, and which are a naming convention, not a contract).
    /// Events appended before Keel recorded it have none; see
    /// ``AggregateRepository/aggregateID(of:)``. It is kept in ``custom`` under
    /// ``aggregateIDKey``, so every store keeps it without a change to its format.
    public var aggregateID: String? {
        get { self.custom[Self.aggregateIDKey] }
        set { self.custom[Self.aggregateIDKey] = newValue }
    }

    /// Creates metadata.
    /// - Parameters:
    ///   - id: The event's id.
    ///   - time: Nanoseconds since the Unix epoch.
    ///   - correlationID: The business operation.
    ///   - causationID: The causing message.
    ///   - traceID: The trace.
    ///   - spanID: The span.
    ///   - custom: Application-defined entries.
    public init(
        id: EventID,
        time: Int64,
        correlationID: String? = nil,
        causationID: String? = nil,
        traceID: TraceID? = nil,
        spanID: SpanID? = nil,
        custom: [String: String] = [:]
    ) {
        self.id = id
        self.time = time
        self.correlationID = correlationID
        self.causationID = causationID
        self.traceID = traceID
        self.spanID = spanID
        self.custom = custom
    }

    /// Metadata for an event written now, in the current task's trace: the correlation id, the
    /// causation id, the trace id and the span id come from ``/KeelCore/TraceContext/current``.
    /// - Parameters:
    ///   - id: The event's id.
    ///   - time: Nanoseconds since the Unix epoch.
    /// - Returns: The metadata.
    public static func current(id: EventID, time: Int64) -> EventMetadata {
        guard let context = TraceContext.current else { return EventMetadata(id: id, time: time) }
        return EventMetadata(
            id: id,
            time: time,
            correlationID: context.correlationID,
            causationID: context.causationID,
            traceID: context.traceID,
            spanID: context.spanID
        )
    }
}
