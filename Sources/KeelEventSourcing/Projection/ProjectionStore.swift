import Foundation

/// A projection's read model, checkpoint and parked events, kept in one ``KeyValueStore`` so that
/// they are always committed together.
///
/// Read-model keys, the checkpoint and the parked events live under separate prefixes of the
/// store's namespace; give each projection a namespace of its own. ``commit(_:checkpoint:)``
/// writes a batch of read-model writes and the new checkpoint as one atomic
/// ``KeyValueStore/commit(_:)``: after a crash the read model holds exactly the events before
/// the checkpoint, never more and never fewer.
///
/// Values are bytes (``value(forKey:)``), or typed `Codable` values (``value(_:forKey:)``,
/// ``values(_:withPrefix:)``) that the projection wrote with
/// ``ReadModelTransaction/set(_:forKey:)`` and the store's ``codec``.
///
/// ```swift
/// let state = try FileStateStore(directory: "data/state")
/// let projectionStore = ProjectionStore(keyValueStore: state.namespace("users-by-email-domain"))
/// let users = await projectionStore.keys(withPrefix: "domain/example.com/")
/// let ada = try await projectionStore.value(UserCard.self, forKey: "user/ada")
/// ```
public struct ProjectionStore: Sendable {
    private static let modelPrefix = "m/"
    private static let checkpointKey = "c"
    /// `d/`, from when parked events were called dead letters: kept so that stores written then
    /// still read.
    private static let parkedEventPrefix = "d/"

    /// The store that holds everything.
    public let keyValueStore: any KeyValueStore
    /// How typed read-model values are encoded and decoded: JSON with sorted keys by default.
    public let codec: any EventCodec

    /// Makes a projection store over `keyValueStore`, which it uses alone.
    /// - Parameters:
    ///   - keyValueStore: The store, with a namespace of the projection's own.
    ///   - codec: How typed read-model values are encoded and decoded; JSON with sorted keys by
    ///     default. Change it only together with a rebuild: values already stored keep their old
    ///     encoding.
    public init(keyValueStore: any KeyValueStore, codec: any EventCodec = JSONEventCodec()) {
        self.keyValueStore = keyValueStore
        self.codec = codec
    }

    /// The position of the first event the read model does not include: 0 for an empty read
    /// model, `p + 1` after the event at position `p`.
    /// - Returns: The checkpoint.
    /// - Throws: ``KeyValueStoreError`` with ``KeyValueStoreError/Code/corrupted`` when the
    ///   stored checkpoint is not 8 bytes.
    public func checkpoint() async throws(KeyValueStoreError) -> UInt64 {
        guard let bytes = try await self.keyValueStore.value(forKey: Self.checkpointKey) else { return 0 }
        guard bytes.count == 8 else {
            throw KeyValueStoreError(
                code: .corrupted,
                namespace: self.keyValueStore.namespace,
                message: "the checkpoint is \(bytes.count) bytes, not 8"
            )
        }
        return bytes.reversed().reduce(0) { $0 << 8 | UInt64($1) }
    }

    /// The read model's value under `key`.
    /// - Parameter key: A read-model key.
    /// - Returns: The value, or `nil`.
    /// - Throws: ``KeyValueStoreError`` when the store fails to read the value (see
    ///   ``KeyValueStore/value(forKey:)``).
    public func value(forKey key: String) async throws(KeyValueStoreError) -> [UInt8]? {
        try await self.keyValueStore.value(forKey: Self.modelPrefix + key)
    }

    /// The read model's value under `key`, decoded as `type` with the store's ``codec``.
    ///
    /// Reads what the projection wrote with ``ReadModelTransaction/set(_:forKey:)``; suspends
    /// while the store reads.
    /// - Parameters:
    ///   - type: The type to decode.
    ///   - key: A read-model key.
    /// - Returns: The value, or `nil` when there is none.
    /// - Throws: ``KeyValueStoreError`` with ``KeyValueStoreError/Code/decodingFailed`` when the
    ///   stored bytes do not decode as `type` (``KeyValueStoreError/key`` names the key), or what
    ///   ``value(forKey:)`` throws.
    public func value<Value: Decodable>(
        _ type: Value.Type,
        forKey key: String
    ) async throws(KeyValueStoreError) -> Value? {
        guard let bytes = try await self.value(forKey: key) else { return nil }
        return try self.codec.decodeValue(type, from: bytes, key: key, namespace: self.keyValueStore.namespace)
    }

    /// The read model's entries whose keys start with `prefix`, sorted by key, each value decoded
    /// as `type` with the store's ``codec``.
    ///
    /// ```swift
    /// for (key, order) in try await projectionStore.values(OrderSummary.self, withPrefix: "customer/ada/") {
    ///     print(key, order.totalCents)
    /// }
    /// ```
    /// - Parameters:
    ///   - type: The type to decode.
    ///   - prefix: The prefix; empty lists every read-model key.
    /// - Returns: The keys, without the store's internal prefix, and their values. A key deleted
    ///   between the listing and its read is left out.
    /// - Throws: ``KeyValueStoreError`` with ``KeyValueStoreError/Code/decodingFailed`` for the
    ///   first value that does not decode as `type`, or what ``value(forKey:)`` throws.
    public func values<Value: Decodable>(
        _ type: Value.Type,
        withPrefix prefix: String
    ) async throws(KeyValueStoreError) -> [(key: String, value: Value)] {
        var entries: [(key: String, value: Value)] = []
        for key in await self.keys(withPrefix: prefix) {
            guard let value = try await self.value(type, forKey: key) else { continue }
            entries.append((key, value))
        }
        return entries
    }

    /// The read-model keys that start with `prefix`, sorted.
    /// - Parameter prefix: The prefix; empty lists every read-model key.
    /// - Returns: The keys, without the store's internal prefix.
    public func keys(withPrefix prefix: String) async -> [String] {
        await self.keyValueStore.keys(withPrefix: Self.modelPrefix + prefix).map {
            String($0.dropFirst(Self.modelPrefix.count))
        }
    }

    /// The parked events, by position.
    /// - Returns: The parked events.
    /// - Throws: ``KeyValueStoreError`` with ``KeyValueStoreError/Code/corrupted`` for an
    ///   unreadable entry.
    public func parkedEvents() async throws(KeyValueStoreError) -> [ParkedEvent] {
        var parked: [ParkedEvent] = []
        for key in await self.keyValueStore.keys(withPrefix: Self.parkedEventPrefix) {
            guard let bytes = try await self.keyValueStore.value(forKey: key) else { continue }
            do {
                parked.append(try JSONDecoder().decode(ParkedEvent.self, from: Data(bytes)))
            } catch {
                throw KeyValueStoreError(
                    code: .corrupted,
                    namespace: self.keyValueStore.namespace,
                    message: "parked event \(key) is unreadable",
                    cause: error
                )
            }
        }
        return parked
    }

    /// Commits read-model `writes` and the new `checkpoint` in one atomic batch.
    /// - Parameters:
    ///   - writes: Writes with read-model keys.
    ///   - checkpoint: The first position the read model does not include.
    /// - Throws: ``KeyValueStoreError``; then neither the writes nor the checkpoint are stored.
    public func commit(_ writes: KeyValueBatch, checkpoint: UInt64) async throws(KeyValueStoreError) {
        try await self.commit(writes, checkpoint: checkpoint, parking: [], removing: [])
    }

    /// Commits, in one atomic batch, read-model `writes`, the checkpoint (when given), dead
    /// events to park (or replace) and positions whose parked events to remove.
    func commit(
        _ writes: KeyValueBatch,
        checkpoint: UInt64?,
        parking: [ParkedEvent],
        removing: [UInt64]
    ) async throws(KeyValueStoreError) {
        var batch = KeyValueBatch()
        for operation in writes.operations {
            switch operation {
            case .put(let key, let value): batch.put(value, forKey: Self.modelPrefix + key)
            case .delete(let key): batch.delete(Self.modelPrefix + key)
            case .deleteAll(let prefix): batch.deleteAll(withPrefix: Self.modelPrefix + prefix)
            }
        }
        for event in parking {
            // A Codable struct of strings and integers always encodes.
            let bytes = (try? JSONEncoder().encode(event)).map { Array($0) } ?? []
            batch.put(bytes, forKey: Self.parkedEventKey(event.position))
        }
        for position in removing {
            batch.delete(Self.parkedEventKey(position))
        }
        if let checkpoint {
            batch.put((0..<8).map { UInt8(truncatingIfNeeded: checkpoint >> (8 * $0)) }, forKey: Self.checkpointKey)
        }
        try await self.keyValueStore.commit(batch)
    }

    /// Deletes the read model, the checkpoint and the parked events in one atomic batch: the
    /// state before the first event.
    /// - Throws: ``KeyValueStoreError``; then nothing is deleted.
    public func reset() async throws(KeyValueStoreError) {
        // Prefix deletes: the store drops the keys without listing them, and the commit records
        // three operations however large the read model is.
        var batch = KeyValueBatch()
        batch.deleteAll(withPrefix: Self.modelPrefix)
        batch.deleteAll(withPrefix: Self.parkedEventPrefix)
        batch.delete(Self.checkpointKey)
        try await self.keyValueStore.commit(batch)
    }

    /// Zero-padded so that parked events sort by position.
    private static func parkedEventKey(_ position: UInt64) -> String {
        let digits = String(position)
        return parkedEventPrefix + String(repeating: "0", count: 20 - digits.count) + digits
    }
}
