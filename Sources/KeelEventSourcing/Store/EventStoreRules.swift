/// The argument checks and the read arithmetic of Keel's event stores, public so that a store of
/// yours accepts and returns exactly what Keel's own stores do (``InMemoryEventStore``,
/// ``FileEventStore``, and the PostgreSQL store of Keel's integrations package use them) and
/// passes `EventStoreConformance`'s argument checks.
///
/// ```swift
/// func append(_ events: [EventData], to stream: StreamID, expecting expected: ExpectedVersion)
///     async throws(EventStoreError) -> AppendResult {
///     try EventStoreRules.validate(events, stream: stream)
///     …
/// }
/// ```
public enum EventStoreRules {
    /// Checks an append's arguments: a stream name that is not empty, and events whose type is
    /// not empty and whose schema version is at least 1.
    /// - Parameters:
    ///   - events: The events to append.
    ///   - stream: The stream.
    /// - Throws: ``EventStoreError`` with ``EventStoreError/Code/invalidArgument`` naming what is
    ///   wrong.
    public static func validate(_ events: [EventData], stream: StreamID) throws(EventStoreError) {
        guard !stream.name.isEmpty else {
            throw EventStoreError(code: .invalidArgument, message: "the stream name is empty")
        }
        for event in events {
            guard !event.type.isEmpty else {
                throw EventStoreError(code: .invalidArgument, stream: stream, message: "an event type is empty")
            }
            guard event.schemaVersion >= 1 else {
                throw EventStoreError(
                    code: .invalidArgument,
                    stream: stream,
                    message: "event type \(event.type) has schema version \(event.schemaVersion), below 1"
                )
            }
        }
    }

    /// Checks stream metadata: a `maxCount`, when set, of at least 1.
    /// - Parameters:
    ///   - metadata: The metadata.
    ///   - stream: The stream.
    /// - Throws: ``EventStoreError`` with ``EventStoreError/Code/invalidArgument``.
    public static func validate(_ metadata: StreamMetadata, stream: StreamID) throws(EventStoreError) {
        if let maxCount = metadata.maxCount, maxCount < 1 {
            throw EventStoreError(code: .invalidArgument, stream: stream, message: "maxCount \(maxCount) is below 1")
        }
    }

    /// The versions a read of a stream returns, as a closed range: of the visible versions
    /// `first...last`, up to `limit` of them starting at `version`, forwards or backwards (a
    /// `version` beyond `last` reads backwards from `last`).
    /// - Parameters:
    ///   - first: The first visible version.
    ///   - last: The last visible version.
    ///   - version: The version the read starts at.
    ///   - direction: Forwards or backwards.
    ///   - limit: The most versions, at least 1.
    /// - Returns: The range to read (ascending; a backwards read returns it from its upper end),
    ///   or `nil` when the read returns nothing.
    public static func versionRange(
        first: UInt64,
        last: UInt64,
        from version: UInt64,
        direction: ReadDirection,
        limit: Int
    ) -> ClosedRange<UInt64>? {
        guard first <= last else { return nil }
        let count = UInt64(limit)
        switch direction {
        case .forwards:
            let start = max(version, first)
            guard start <= last else { return nil }
            let end = last - start + 1 > count ? start + count - 1 : last
            return start...end
        case .backwards:
            guard version >= first else { return nil }
            let start = min(version, last)
            let end = start - first + 1 > count ? start - (count - 1) : first
            return end...start
        }
    }

    /// The versions a read returns, in reading order.
    static func visibleVersions(
        first: UInt64,
        last: UInt64,
        from version: UInt64,
        direction: ReadDirection,
        limit: Int
    ) -> [UInt64] {
        guard let range = self.versionRange(first: first, last: last, from: version, direction: direction, limit: limit)
        else { return [] }
        switch direction {
        case .forwards: return Array(range)
        case .backwards: return Array(range.reversed())
        }
    }
}
