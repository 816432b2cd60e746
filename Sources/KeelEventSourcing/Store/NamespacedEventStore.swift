/// One namespace's view of a shared ``EventStore``: its own streams, and nothing else.
///
/// Every stream name is stored with the namespace in front (`inventory/stock-7` for the stream
/// `stock-7` of namespace `inventory`), and reads give it back without. Reads of the global log
/// (``readAll(from:limit:)``, and so ``EventStore/subscribe(from:pageSize:)``) return only this
/// namespace's events, at their global positions — positions have gaps where other namespaces
/// wrote. A namespace can neither read nor write another's streams through its view, and the view
/// does not give the shared store away.
///
/// A host gives each service such a view of its store, so that services share one durable log
/// (one `fsync` for all of them under group commit) without sharing data.
///
/// Reading the global log through a view reads the shared log and skips other namespaces'
/// events: its cost grows with the whole log, not with this namespace's share of it.
public struct NamespacedEventStore: EventStore {
    /// The namespace, such as a service's name.
    public let namespace: String
    /// The shared store. Not public: a view must not lead to other namespaces.
    let base: any EventStore
    private let prefix: String

    /// Makes a view of `base` for `namespace`.
    /// - Parameters:
    ///   - namespace: The namespace; must not be empty or contain `/`.
    ///   - base: The shared store.
    public init(namespace: String, base: any EventStore) {
        precondition(!namespace.isEmpty && !namespace.contains("/"), "invalid namespace \"\(namespace)\"")
        self.namespace = namespace
        self.base = base
        self.prefix = namespace + "/"
    }

    private func qualified(_ stream: StreamID) throws(EventStoreError) -> StreamID {
        guard !stream.name.isEmpty else {
            throw EventStoreError(code: .invalidArgument, message: "the stream name is empty")
        }
        return StreamID(self.prefix + stream.name)
    }

    private func local(_ event: RecordedEvent) -> RecordedEvent? {
        guard event.stream.name.hasPrefix(self.prefix) else { return nil }
        var event = event
        event.stream = StreamID(String(event.stream.name.dropFirst(self.prefix.count)))
        return event
    }

    /// Appends to this namespace's `stream`; see ``EventStore/append(_:to:expecting:)``.
    /// - Parameters:
    ///   - events: The events.
    ///   - stream: The stream, without the namespace.
    ///   - expected: What the stream's last version must be.
    /// - Returns: Where the events landed, at global positions.
    /// - Throws: ``EventStoreError``; a conflict names the stream without the namespace.
    @discardableResult
    public func append(
        _ events: [EventData],
        to stream: StreamID,
        expecting expected: ExpectedVersion
    ) async throws(EventStoreError) -> AppendResult {
        do {
            return try await self.base.append(events, to: try self.qualified(stream), expecting: expected)
        } catch {
            throw self.localized(error, stream: stream)
        }
    }

    /// Reads this namespace's `stream`; see ``EventStore/readStream(_:from:direction:limit:)``.
    /// - Parameters:
    ///   - stream: The stream, without the namespace.
    ///   - version: The first version to return.
    ///   - direction: Forwards or backwards.
    ///   - limit: The most events to return.
    /// - Returns: The events, with stream names without the namespace.
    /// - Throws: ``EventStoreError``.
    public func readStream(
        _ stream: StreamID,
        from version: UInt64,
        direction: ReadDirection,
        limit: Int
    ) async throws(EventStoreError) -> [RecordedEvent] {
        do {
            let events = try await self.base.readStream(
                try self.qualified(stream),
                from: version,
                direction: direction,
                limit: limit
            )
            return events.compactMap(self.local)
        } catch {
            throw self.localized(error, stream: stream)
        }
    }

    /// Reads this namespace's events in global order, from `position`; see
    /// ``EventStore/readAll(from:limit:)``. Positions skip other namespaces' events.
    /// - Parameters:
    ///   - position: The first global position to consider.
    ///   - limit: The most events to return.
    /// - Returns: This namespace's events.
    /// - Throws: ``EventStoreError``.
    public func readAll(from position: UInt64, limit: Int) async throws(EventStoreError) -> [RecordedEvent] {
        guard limit >= 1 else {
            throw EventStoreError(code: .invalidArgument, message: "limit \(limit) is below 1")
        }
        return try await self.base.collect(from: position, limit: limit) { self.local($0) }
    }

    /// The last version of this namespace's `stream`.
    /// - Parameter stream: The stream, without the namespace.
    /// - Returns: The version, or `nil`.
    public func streamVersion(_ stream: StreamID) async throws(EventStoreError) -> UInt64? {
        try await self.base.streamVersion(try self.qualified(stream))
    }

    /// The shared store's head position (positions are global).
    /// - Returns: The next global position.
    public func headPosition() async throws(EventStoreError) -> UInt64 {
        try await self.base.headPosition()
    }

    /// Soft-deletes this namespace's `stream`.
    /// - Parameters:
    ///   - stream: The stream, without the namespace.
    ///   - expected: What the stream's last version must be.
    /// - Throws: ``EventStoreError``.
    public func deleteStream(_ stream: StreamID, expecting expected: ExpectedVersion) async throws(EventStoreError) {
        do {
            try await self.base.deleteStream(try self.qualified(stream), expecting: expected)
        } catch {
            throw self.localized(error, stream: stream)
        }
    }

    /// Replaces the metadata of this namespace's `stream`.
    /// - Parameters:
    ///   - metadata: The metadata.
    ///   - stream: The stream, without the namespace.
    /// - Throws: ``EventStoreError``.
    public func setStreamMetadata(_ metadata: StreamMetadata, for stream: StreamID) async throws(EventStoreError) {
        try await self.base.setStreamMetadata(metadata, for: try self.qualified(stream))
    }

    /// The metadata of this namespace's `stream`.
    /// - Parameter stream: The stream, without the namespace.
    /// - Returns: The metadata.
    public func streamMetadata(for stream: StreamID) async throws(EventStoreError) -> StreamMetadata {
        try await self.base.streamMetadata(for: try self.qualified(stream))
    }

    /// Waits for the shared store's head; see ``EventStore/waitForHead(beyond:)``.
    /// - Parameter head: The head position to wait beyond.
    public func waitForHead(beyond head: UInt64) async {
        await self.base.waitForHead(beyond: head)
    }

    /// The error with the stream named as this namespace knows it.
    private func localized(_ error: EventStoreError, stream: StreamID) -> EventStoreError {
        var error = error
        if error.stream != nil { error.stream = stream }
        return error
    }
}
