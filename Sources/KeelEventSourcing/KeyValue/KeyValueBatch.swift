/// Puts and deletes that a ``KeyValueStore`` writes atomically, in order.
///
/// ```swift
/// var batch = KeyValueBatch()
/// batch.put(Array("example.com".utf8), forKey: "user/42/domain")
/// batch.delete("user/41/domain")
/// try await keyValueStore.commit(batch)
/// ```
public struct KeyValueBatch: Sendable, Hashable {
    /// One write.
    public enum Operation: Sendable, Hashable {
        /// Store `value` under `key`, replacing any value there.
        case put(key: String, value: [UInt8])
        /// Remove `key` and its value.
        case delete(key: String)
        /// Remove every key that starts with `prefix` (every key, for an empty prefix), as of this
        /// point in the batch: puts earlier in the batch are removed too, later ones stay.
        case deleteAll(prefix: String)

        /// The key the operation writes; for ``deleteAll(prefix:)``, the prefix.
        public var key: String {
            switch self {
            case .put(let key, _): key
            case .delete(let key): key
            case .deleteAll(let prefix): prefix
            }
        }
    }

    /// The writes, in the order they apply.
    public private(set) var operations: [Operation]

    /// Makes an empty batch.
    public init() {
        self.operations = []
    }

    /// Makes a batch of `operations`.
    /// - Parameter operations: The writes, in order.
    public init(_ operations: [Operation]) {
        self.operations = operations
    }

    /// Whether the batch writes nothing.
    public var isEmpty: Bool { self.operations.isEmpty }

    /// Adds a put of `value` under `key`.
    /// - Parameters:
    ///   - value: The value.
    ///   - key: The key.
    public mutating func put(_ value: [UInt8], forKey key: String) {
        self.operations.append(.put(key: key, value: value))
    }

    /// Adds a delete of `key`.
    /// - Parameter key: The key.
    public mutating func delete(_ key: String) {
        self.operations.append(.delete(key: key))
    }

    /// Adds a delete of every key that starts with `prefix`, and of every key for an empty prefix.
    ///
    /// The keys go in one operation, however many there are: a store records the prefix, not each
    /// key, and never lists the keys to its caller.
    /// - Parameter prefix: The prefix.
    public mutating func deleteAll(withPrefix prefix: String) {
        self.operations.append(.deleteAll(prefix: prefix))
    }

    /// Adds the operations of `other` after this batch's.
    /// - Parameter other: Another batch.
    public mutating func append(contentsOf other: KeyValueBatch) {
        self.operations.append(contentsOf: other.operations)
    }

    /// Applies the operations, in order, to `entries`.
    func apply(to entries: inout [String: [UInt8]]) {
        for operation in self.operations {
            switch operation {
            case .put(let key, let value): entries[key] = value
            case .delete(let key): entries[key] = nil
            case .deleteAll(let prefix):
                if prefix.isEmpty {
                    entries.removeAll()
                } else {
                    entries = entries.filter { !$0.key.hasPrefix(prefix) }
                }
            }
        }
    }
}
