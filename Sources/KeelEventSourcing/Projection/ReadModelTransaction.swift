/// The writes one event makes to a projection's read model, and reads that see them.
///
/// A ``Projection`` receives one per event. Reads return the transaction's own writes first,
/// then the writes of earlier events of the same uncommitted page, then those of the page before
/// it while its commit is in flight, then the committed read model, so a projection always reads
/// the state as of the event before. Writes are recorded,
/// not applied: the ``ProjectionRunner`` commits them with the checkpoint, or discards them when
/// the projection throws.
///
/// Values are bytes (``put(_:forKey:)``, ``value(forKey:)``) or `Codable` values, encoded with the
/// ``ProjectionStore/codec`` (JSON by default):
///
/// ```swift
/// struct UserCard: Codable { var name: String; var email: String }
///
/// try transaction.set(UserCard(name: "Ada", email: "ada@example.com"), forKey: "user/ada")
/// if var card = try await transaction.value(UserCard.self, forKey: "user/ada") {
///     card.email = "ada@example.org"
///     try transaction.set(card, forKey: "user/ada")
/// }
/// ```
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

    /// The read model's value under `key`, as of this event's writes so far, decoded as `type`
    /// with the ``ProjectionStore/codec``.
    /// - Parameters:
    ///   - type: The type to decode.
    ///   - key: A read-model key.
    /// - Returns: The value, or `nil` when there is none.
    /// - Throws: ``KeyValueStoreError`` with ``KeyValueStoreError/Code/decodingFailed`` when the
    ///   bytes under `key` do not decode as `type` (``KeyValueStoreError/key`` names the key), or
    ///   what ``value(forKey:)`` throws. Thrown from ``Projection/apply(_:to:)``, it rejects the
    ///   event like any other error.
    public func value<Value: Decodable>(
        _ type: Value.Type,
        forKey key: String
    ) async throws(KeyValueStoreError) -> Value? {
        guard let bytes = try await self.value(forKey: key) else { return nil }
        return try self.store.codec.decodeValue(
            type,
            from: bytes,
            key: key,
            namespace: self.store.keyValueStore.namespace
        )
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

    /// Records a put of `value`, encoded with the ``ProjectionStore/codec`` (JSON with sorted
    /// keys by default), under `key`.
    ///
    /// Encodes at once, so a value that does not encode fails here and records nothing.
    /// - Parameters:
    ///   - value: The value.
    ///   - key: A read-model key.
    /// - Throws: ``KeyValueStoreError`` with ``KeyValueStoreError/Code/encodingFailed`` when the
    ///   value does not encode.
    public mutating func set(_ value: some Encodable, forKey key: String) throws(KeyValueStoreError) {
        let bytes = try self.store.codec.encodeValue(value, key: key, namespace: self.store.keyValueStore.namespace)
        self.put(bytes, forKey: key)
    }

    /// Records a delete of `key`.
    /// - Parameter key: A read-model key.
    public mutating func delete(_ key: String) {
        self.writes[key] = .some(nil)
        self.batch.delete(key)
    }
}
