/// A durable map from string keys to byte values in one namespace, written in atomic batches.
///
/// Every write is a ``KeyValueBatch``: its puts and deletes become visible and durable together
/// or not at all. Reads see every batch whose ``commit(_:)`` has returned. ``EventStoreKeyValueStore``
/// keeps a namespace in an ``EventStore`` stream; projections keep their read model and checkpoint
/// in one through ``ProjectionStore``.
///
/// ```swift
/// var batch = KeyValueBatch()
/// batch.put(Array("ada@example.com".utf8), forKey: "user/42")
/// batch.delete("user/41")
/// try await keyValueStore.commit(batch)
/// let email = await keyValueStore.value(forKey: "user/42")
/// ```
///
/// Every method may be called from any task, concurrently.
public protocol KeyValueStore: Sendable {
    /// The namespace this store holds: stores with different namespaces never see each other's
    /// keys.
    var namespace: String { get }

    /// The value stored under `key`, or `nil` when there is none.
    /// - Parameter key: The key.
    /// - Returns: The value.
    /// - Throws: ``KeyValueStoreError``: ``KeyValueStoreError/Code/corrupted`` when the stored
    ///   value is damaged (a store never returns bytes other than those committed),
    ///   ``KeyValueStoreError/Code/storeFailed`` when reading it fails,
    ///   ``KeyValueStoreError/Code/closed`` when it reads a ``StateStore`` that was closed. A store
    ///   that holds its values in memory throws nothing else.
    func value(forKey key: String) async throws(KeyValueStoreError) -> [UInt8]?

    /// The keys that start with `prefix`, in ascending order; an empty prefix lists every key.
    /// - Parameter prefix: The prefix.
    /// - Returns: The keys.
    func keys(withPrefix prefix: String) async -> [String]

    /// Writes `batch` atomically and durably: when this returns, every operation in it is
    /// visible to reads and survives a restart; when it throws, none is.
    ///
    /// Operations apply in order, so a later put or delete of a key wins over an earlier one.
    /// An empty batch returns at once.
    /// - Parameter batch: The writes.
    /// - Throws: ``KeyValueStoreError``.
    func commit(_ batch: KeyValueBatch) async throws(KeyValueStoreError)
}

extension KeyValueStore {
    /// Stores `value` under `key`, durably; a batch of one put.
    /// - Parameters:
    ///   - value: The value.
    ///   - key: The key.
    /// - Throws: ``KeyValueStoreError``.
    public func put(_ value: [UInt8], forKey key: String) async throws(KeyValueStoreError) {
        var batch = KeyValueBatch()
        batch.put(value, forKey: key)
        try await self.commit(batch)
    }

    /// Removes `key` and its value, durably; a batch of one delete. Deleting a missing key is not
    /// an error.
    /// - Parameter key: The key.
    /// - Throws: ``KeyValueStoreError``.
    public func delete(_ key: String) async throws(KeyValueStoreError) {
        var batch = KeyValueBatch()
        batch.delete(key)
        try await self.commit(batch)
    }
}
