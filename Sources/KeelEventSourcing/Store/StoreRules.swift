/// The argument checks and read arithmetic every store in this module shares, so that the
/// in-memory and file stores accept and return exactly the same things.
enum StoreRules {
    static func validate(_ events: [EventData], stream: StreamID) throws(EventStoreError) {
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

    static func validate(_ metadata: StreamMetadata, stream: StreamID) throws(EventStoreError) {
        if let maxCount = metadata.maxCount, maxCount < 1 {
            throw EventStoreError(code: .invalidArgument, stream: stream, message: "maxCount \(maxCount) is below 1")
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
        guard first <= last else { return [] }
        let count = UInt64(limit)
        switch direction {
        case .forwards:
            let start = max(version, first)
            guard start <= last else { return [] }
            let end = last - start + 1 > count ? start + count - 1 : last
            return Array(start...end)
        case .backwards:
            guard version >= first else { return [] }
            let start = min(version, last)
            let end = start - first + 1 > count ? start - (count - 1) : first
            return Array((end...start).reversed())
        }
    }
}
