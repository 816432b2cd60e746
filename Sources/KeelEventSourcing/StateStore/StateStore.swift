/// Where services keep the state that is not event-sourced: read models, projection checkpoints,
/// settings. Namespaces of key-value entries, written in atomic batches, beside the event log
/// and not in it.
///
/// A state store holds any number of namespaces; ``namespace(_:)`` hands out one as a
/// ``KeyValueStore``. A commit may write to several namespaces at once
/// (``commit(_:)``), all or nothing, so that a read model and its checkpoint, or two services'
/// journals, never disagree after a crash.
///
/// ``FileStateStore`` keeps state in a directory of its own, with the same crash and corruption
/// guarantees as ``FileEventStore``, and reclaims the space of overwritten entries;
/// ``InMemoryStateStore`` is its twin for tests.
///
/// ```swift
/// let state = try FileStateStore(directory: ".keel/data/state")
/// let settings = state.namespace("settings")
/// try await settings.put(Array("dark".utf8), forKey: "theme")
/// ```
///
/// Every method may be called from any task, concurrently. Reads see every commit that has
/// returned.
public protocol StateStore: Sendable {
    /// The value under `key` in `namespace`, or `nil` when there is none.
    ///
    /// Does not suspend; a store that keeps values on disk (``FileStateStore``) reads them on the
    /// calling thread.
    /// - Parameters:
    ///   - key: The key.
    ///   - namespace: The namespace.
    /// - Returns: The value.
    /// - Throws: ``KeyValueStoreError``: ``KeyValueStoreError/Code/corrupted`` when the stored
    ///   value is damaged (a store never returns bytes other than those committed),
    ///   ``KeyValueStoreError/Code/storeFailed`` when reading it fails,
    ///   ``KeyValueStoreError/Code/closed`` after the store closed.
    func value(forKey key: String, in namespace: String) throws(KeyValueStoreError) -> [UInt8]?

    /// The keys of `namespace` that start with `prefix`, in ascending order; an empty prefix lists
    /// every key.
    /// - Parameters:
    ///   - prefix: The prefix.
    ///   - namespace: The namespace.
    /// - Returns: The keys.
    func keys(withPrefix prefix: String, in namespace: String) -> [String]

    /// The namespaces that hold at least one key, in ascending order.
    /// - Returns: The namespaces.
    func namespaces() -> [String]

    /// Writes `changes` atomically and durably: when this returns, every operation of every
    /// namespace in it is visible to reads and survives a restart; when it throws, none is.
    ///
    /// Once called, a commit completes whatever happens to the calling task, so that its caller
    /// learns whether it landed.
    /// - Parameter changes: The writes, namespace by namespace.
    /// - Throws: ``KeyValueStoreError``: ``KeyValueStoreError/Code/closed`` after the store
    ///   closed, ``KeyValueStoreError/Code/tooLarge`` for changes larger than one record of the
    ///   store, ``KeyValueStoreError/Code/storeFailed`` when the disk refuses.
    func commit(_ changes: StateChanges) async throws(KeyValueStoreError)
}

extension StateStore {
    /// One namespace of this store, as a ``KeyValueStore``.
    /// - Parameter name: The namespace; not empty.
    /// - Returns: The namespace.
    public func namespace(_ name: String) -> StateNamespace {
        precondition(!name.isEmpty, "a state namespace must not be empty")
        return StateNamespace(store: self, namespace: name)
    }

    /// Writes `batch` to `namespace`, atomically and durably; see ``commit(_:)``.
    /// - Parameters:
    ///   - batch: The writes.
    ///   - namespace: The namespace.
    /// - Throws: ``KeyValueStoreError``.
    public func commit(_ batch: KeyValueBatch, in namespace: String) async throws(KeyValueStoreError) {
        var changes = StateChanges()
        changes.append(batch, in: namespace)
        try await self.commit(changes)
    }
}

/// Writes to one or more namespaces of a ``StateStore``, committed together.
///
/// ```swift
/// var changes = StateChanges()
/// changes.append(readModelWrites, in: "orders-by-customer")
/// changes.append(checkpointWrite, in: "checkpoints")
/// try await state.commit(changes)
/// ```
public struct StateChanges: Sendable, Hashable {
    /// The batches, namespace by namespace, in the order they were added; one namespace appears
    /// once.
    public var batches: [(namespace: String, batch: KeyValueBatch)] {
        self.order.map { ($0, self.byNamespace[$0]!) }
    }

    private var order: [String] = []
    private var byNamespace: [String: KeyValueBatch] = [:]

    /// No writes.
    public init() {}

    /// Whether no namespace is written.
    public var isEmpty: Bool { self.byNamespace.values.allSatisfy(\.isEmpty) }

    /// Adds `batch`'s operations to those of `namespace`, after any added before.
    /// - Parameters:
    ///   - batch: The writes.
    ///   - namespace: The namespace; not empty.
    public mutating func append(_ batch: KeyValueBatch, in namespace: String) {
        precondition(!namespace.isEmpty, "a state namespace must not be empty")
        if self.byNamespace[namespace] == nil {
            self.order.append(namespace)
            self.byNamespace[namespace] = batch
        } else {
            self.byNamespace[namespace]!.append(contentsOf: batch)
        }
    }

    /// Two sets of changes are equal when they write the same operations to the same namespaces
    /// in the same order.
    public static func == (lhs: StateChanges, rhs: StateChanges) -> Bool {
        lhs.order == rhs.order && lhs.byNamespace == rhs.byNamespace
    }

    /// Hashes the namespaces and their operations.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(self.order)
        for namespace in self.order { hasher.combine(self.byNamespace[namespace]) }
    }
}

/// One namespace of a ``StateStore``: a ``KeyValueStore`` whose keys no other namespace sees.
///
/// Cheap to make and to copy; every copy reads and writes the same entries.
public struct StateNamespace: KeyValueStore {
    /// The store that holds the namespace.
    public let store: any StateStore
    /// The namespace.
    public let namespace: String

    init(store: any StateStore, namespace: String) {
        self.store = store
        self.namespace = namespace
    }

    /// The value under `key`; see ``KeyValueStore/value(forKey:)``.
    /// - Parameter key: The key.
    /// - Returns: The value, or `nil`.
    /// - Throws: ``KeyValueStoreError``, as ``StateStore/value(forKey:in:)`` does.
    public func value(forKey key: String) async throws(KeyValueStoreError) -> [UInt8]? {
        try self.store.value(forKey: key, in: self.namespace)
    }

    /// The keys starting with `prefix`, sorted; see ``KeyValueStore/keys(withPrefix:)``.
    /// - Parameter prefix: The prefix.
    /// - Returns: The keys.
    public func keys(withPrefix prefix: String) async -> [String] {
        self.store.keys(withPrefix: prefix, in: self.namespace)
    }

    /// Writes `batch` atomically and durably; see ``StateStore/commit(_:)``.
    /// - Parameter batch: The writes.
    /// - Throws: ``KeyValueStoreError``.
    public func commit(_ batch: KeyValueBatch) async throws(KeyValueStoreError) {
        try await self.store.commit(batch, in: self.namespace)
    }
}
