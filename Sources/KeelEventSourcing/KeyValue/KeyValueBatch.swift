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

        /// The key the operation writes.
        public var key: String {
            switch self {
            case .put(let key, _): key
            case .delete(let key): key
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
            }
        }
    }
}
