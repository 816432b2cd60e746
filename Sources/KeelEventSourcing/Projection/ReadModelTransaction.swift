/// The writes one event makes to a projection's read model, and reads that see them.
///
/// A ``Projection`` receives one per event. Reads return the transaction's own writes first,
/// then the writes of earlier events of the same uncommitted page, then those of the page before
/// it while its commit is in flight, then the committed read model, so a projection always reads
/// the state as of the event before. Writes are recorded,
/// not applied: the ``ProjectionRunner`` commits them with the checkpoint, or discards them when
/// the projection throws.
public struct ReadModelTransaction: Sendable {
    let store: ProjectionStore
    /// The uncommitted writes of earlier events of the page (`nil`: deleted).
    let earlier: [String: [UInt8]?]
    /// The writes of the previous page, whose commit may be in flight (`nil`: deleted).
    let committing: [String: [UInt8]?]
    /// This event's writes (`nil`: deleted).
    private(set) var writes: [String: [UInt8]?] = [:]
    /// This event's writes, in order.
    public private(set) var batch = KeyValueBatch()

    init(store: ProjectionStore, earlier: [String: [UInt8]?], committing: [String: [UInt8]?] = [:]) {
        self.store = store
        self.earlier = earlier
        self.committing = committing
    }

    /// The read model's value under `key`, as of this event's writes so far.
    /// - Parameter key: A read-model key.
    /// - Returns: The value, or `nil`.
    /// - Throws: ``KeyValueStoreError`` when the read model's store fails to read the value (see
    ///   ``KeyValueStore/value(forKey:)``).
    public func value(forKey key: String) async throws(KeyValueStoreError) -> [UInt8]? {
        if let write = self.writes[key] { return write }
        if let write = self.earlier[key] { return write }
        if let write = self.committing[key] { return write }
        return try await self.store.value(forKey: key)
    }

    /// The read-model keys starting with `prefix`, as of this event's writes so far, sorted.
    /// - Parameter prefix: The prefix.
    /// - Returns: The keys.
    public func keys(withPrefix prefix: String) async -> [String] {
        var keys = Set(await self.store.keys(withPrefix: prefix))
        for (key, value) in self.committing where key.hasPrefix(prefix) {
            if value == nil { keys.remove(key) } else { keys.insert(key) }
        }
        for (key, value) in self.earlier where key.hasPrefix(prefix) {
            if value == nil { keys.remove(key) } else { keys.insert(key) }
        }
        for (key, value) in self.writes where key.hasPrefix(prefix) {
            if value == nil { keys.remove(key) } else { keys.insert(key) }
        }
        return keys.sorted()
    }

    /// Records a put of `value` under `key`.
    /// - Parameters:
    ///   - value: The value.
    ///   - key: A read-model key.
    public mutating func put(_ value: [UInt8], forKey key: String) {
        self.writes[key] = .some(value)
        self.batch.put(value, forKey: key)
    }

    /// Records a delete of `key`.
    /// - Parameter key: A read-model key.
    public mutating func delete(_ key: String) {
        self.writes[key] = .some(nil)
        self.batch.delete(key)
    }
}
