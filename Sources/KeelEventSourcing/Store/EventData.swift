/// An event to append: its type, schema version, metadata and encoded payload.
///
/// Stores keep the payload as opaque bytes; an event codec (or your own code) turns typed events
/// into `EventData` and back.
public struct EventData: Sendable, Hashable {
    /// The stable name of the event's type, such as `user.registered`.
    public var type: String
    /// The version of the payload's schema, from 1; upcasters migrate older versions.
    public var schemaVersion: Int
    /// The event's id, time and trace.
    public var metadata: EventMetadata
    /// The encoded event.
    public var payload: [UInt8]

    /// Creates an event to append.
    /// - Parameters:
    ///   - type: The stable type name; must not be empty.
    ///   - schemaVersion: The payload's schema version, at least 1.
    ///   - metadata: The event's id, time and trace.
    ///   - payload: The encoded event.
    public init(type: String, schemaVersion: Int = 1, metadata: EventMetadata, payload: [UInt8]) {
        self.type = type
        self.schemaVersion = schemaVersion
        self.metadata = metadata
        self.payload = payload
    }
}

/// An event as the store holds it: what was appended, plus where it landed.
public struct RecordedEvent: Sendable, Hashable {
    /// The stream it belongs to.
    public var stream: StreamID
    /// Its version in the stream, from 0.
    public var version: UInt64
    /// Its position in the store's global order, from 0; every event in the store has a distinct
    /// position, and positions grow in append order.
    public var position: UInt64
    /// The stable name of its type.
    public var type: String
    /// The version of its payload's schema.
    public var schemaVersion: Int
    /// Its id, time and trace.
    public var metadata: EventMetadata
    /// The encoded event.
    public var payload: [UInt8]

    /// Creates a recorded event (stores do; users read them).
    /// - Parameters:
    ///   - stream: The stream.
    ///   - version: The version in the stream.
    ///   - position: The global position.
    ///   - data: What was appended.
    public init(stream: StreamID, version: UInt64, position: UInt64, data: EventData) {
        self.stream = stream
        self.version = version
        self.position = position
        self.type = data.type
        self.schemaVersion = data.schemaVersion
        self.metadata = data.metadata
        self.payload = data.payload
    }

    /// The id of the aggregate the event belongs to, as its appender recorded it
    /// (``EventMetadata/aggregateID``): set on every event an ``AggregateRepository`` appends,
    /// whatever view of the store reads it; `nil` for other events and for events appended
    /// before Keel recorded it.
    ///
    /// ```swift
    /// func apply(_ event: RecordedEvent, to transaction: inout ReadModelTransaction) async throws {
    ///     guard event.type == UserRegistered.eventType, let userID = event.aggregateID else { return }
    ///     let registered = try serializer.decode(event, as: UserRegistered.self)
    ///     try transaction.set(registered.email, forKey: "user/\(userID)")
    /// }
    /// ```
    public var aggregateID: String? { self.metadata.aggregateID }

    /// What was appended, without the stream, version and position.
    public var data: EventData {
        EventData(type: self.type, schemaVersion: self.schemaVersion, metadata: self.metadata, payload: self.payload)
    }
}

/// Where an append landed.
public struct AppendResult: Sendable, Hashable {
    /// The stream's last version after the append; `nil` when the stream still holds no events
    /// (an empty append to a new stream).
    public var streamVersion: UInt64?
    /// The global positions the appended events received, in order; empty for an empty append.
    public var positions: Range<UInt64>

    /// Creates a result.
    /// - Parameters:
    ///   - streamVersion: The stream's last version.
    ///   - positions: The global positions written.
    public init(streamVersion: UInt64?, positions: Range<UInt64>) {
        self.streamVersion = streamVersion
        self.positions = positions
    }
}

/// Which way to read a stream.
public enum ReadDirection: Sendable, Hashable {
    /// From the given version towards the newest event.
    case forwards
    /// From the given version towards the first event.
    case backwards
}

/// Per-stream settings that bound what reads return.
///
/// Both limits hide events from ``EventStore/readStream(_:from:direction:limit:)`` (and so from
/// aggregates and stream subscriptions); they stay in the global log, where
/// ``EventStore/readAll(from:limit:)`` still returns them.
public struct StreamMetadata: Sendable, Hashable, Codable {
    /// Reads return at most the newest `maxCount` events; `nil`: no bound.
    public var maxCount: Int?
    /// Reads skip every version below this one; `nil`: none skipped.
    public var truncateBefore: UInt64?

    /// Creates stream metadata.
    /// - Parameters:
    ///   - maxCount: The most events reads return, at least 1.
    ///   - truncateBefore: The first version reads return.
    public init(maxCount: Int? = nil, truncateBefore: UInt64? = nil) {
        self.maxCount = maxCount
        self.truncateBefore = truncateBefore
    }

    /// The first version a read may return when the stream's last version is `last`.
    /// - Parameter last: The stream's last version.
    /// - Returns: The lowest visible version.
    public func firstVisibleVersion(last: UInt64) -> UInt64 {
        var first = self.truncateBefore ?? 0
        if let maxCount = self.maxCount, maxCount > 0, last + 1 > UInt64(maxCount) {
            first = max(first, last + 1 - UInt64(maxCount))
        }
        return first
    }
}
