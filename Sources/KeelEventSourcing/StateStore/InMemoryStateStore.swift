import KeelCore
import Synchronization

/// A ``StateStore`` in memory: the twin of ``FileStateStore`` for tests, with the same
/// semantics and nothing on disk.
///
/// ```swift
/// let state = InMemoryStateStore()
/// let runner = ProjectionRunner(
///     projection: UsersByDomain(),
///     eventStore: events,
///     projectionStore: ProjectionStore(keyValueStore: state.namespace("users-by-domain"))
/// )
/// ```
public final class InMemoryStateStore: StateStore {
    private struct State {
        var entries = StateEntries()
        var isClosed = false
    }

    private let state = Lock(State())

    /// Makes an empty store.
    public init() {}

    /// The value under `key` in `namespace`; see ``StateStore/value(forKey:in:)``.
    /// - Parameters:
    ///   - key: The key.
    ///   - namespace: The namespace.
    /// - Returns: The value, or `nil`.
    /// - Throws: ``KeyValueStoreError`` with ``KeyValueStoreError/Code/closed`` after ``close()``,
    ///   as ``FileStateStore`` does.
    public func value(forKey key: String, in namespace: String) throws(KeyValueStoreError) -> [UInt8]? {
        try self.state.withLock { state throws(KeyValueStoreError) in
            guard !state.isClosed else {
                throw KeyValueStoreError(code: .closed, namespace: namespace, message: "the state store is closed")
            }
            return state.entries.value(forKey: key, in: namespace)
        }
    }

    /// The keys of `namespace` starting with `prefix`, sorted; see
    /// ``StateStore/keys(withPrefix:in:)``.
    /// - Parameters:
    ///   - prefix: The prefix.
    ///   - namespace: The namespace.
    /// - Returns: The keys.
    public func keys(withPrefix prefix: String, in namespace: String) -> [String] {
        let keys = self.state.withLock { $0.entries.keys(in: namespace) }
        return keys.filter { $0.hasPrefix(prefix) }.sorted()
    }

    /// The namespaces that hold a key, sorted.
    /// - Returns: The namespaces.
    public func namespaces() -> [String] {
        self.state.withLock { Array($0.entries.namespaces.keys) }.sorted()
    }

    /// Applies `changes` at once; see ``StateStore/commit(_:)``.
    /// - Parameter changes: The writes.
    /// - Throws: ``KeyValueStoreError`` with ``KeyValueStoreError/Code/closed`` after ``close()``.
    public func commit(_ changes: StateChanges) async throws(KeyValueStoreError) {
        let closed = self.state.withLock { state in
            guard !state.isClosed else { return true }
            state.entries.apply(changes)
            return false
        }
        if closed {
            throw KeyValueStoreError(
                code: .closed,
                namespace: changes.batches.first?.namespace ?? "",
                message: "the state store is closed"
            )
        }
    }

    /// Refuses later commits and reads of values with ``KeyValueStoreError/Code/closed``, as
    /// ``FileStateStore/close()`` does; ``keys(withPrefix:in:)`` and ``namespaces()`` go on
    /// answering.
    public func close() {
        self.state.withLock { $0.isClosed = true }
    }
}
