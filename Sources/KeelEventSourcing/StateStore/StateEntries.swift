/// The entries of a state store's namespaces, in memory, and the bytes they take in a snapshot:
/// what ``FileStateStore``, its recovery and ``InMemoryStateStore`` all keep.
struct StateEntries: Sendable {
    /// Namespace, then key. A namespace with no key left is removed.
    private(set) var namespaces: [String: [String: [UInt8]]] = [:]
    /// The live entries' size in a snapshot (see ``StateFile/entrySize(namespace:key:value:)``).
    private(set) var liveBytes = 0

    /// The entries, over every namespace.
    var count: Int { self.namespaces.values.reduce(0) { $0 + $1.count } }

    func value(forKey key: String, in namespace: String) -> [UInt8]? {
        self.namespaces[namespace]?[key]
    }

    /// The keys of `namespace`, unsorted (callers filter and sort them outside their lock).
    func keys(in namespace: String) -> [String] {
        self.namespaces[namespace].map { Array($0.keys) } ?? []
    }

    /// Applies `operations` to `namespace`, in order.
    mutating func apply(_ operations: [KeyValueBatch.Operation], in namespace: String) {
        guard !operations.isEmpty else { return }
        var map = self.namespaces.removeValue(forKey: namespace) ?? [:]
        for operation in operations {
            switch operation {
            case .put(let key, let value):
                if let old = map.updateValue(value, forKey: key) {
                    self.liveBytes -= StateFile.entrySize(namespace: namespace, key: key, value: old)
                }
                self.liveBytes += StateFile.entrySize(namespace: namespace, key: key, value: value)
            case .delete(let key):
                if let old = map.removeValue(forKey: key) {
                    self.liveBytes -= StateFile.entrySize(namespace: namespace, key: key, value: old)
                }
            case .deleteAll(let prefix):
                // The survivors are copied rather than the deleted keys removed one by one: a
                // prefix delete usually drops most of a namespace (a read model's reset).
                var kept: [String: [UInt8]] = [:]
                for (key, value) in map {
                    if key.hasPrefix(prefix) {
                        self.liveBytes -= StateFile.entrySize(namespace: namespace, key: key, value: value)
                    } else {
                        kept[key] = value
                    }
                }
                map = kept
            }
        }
        if !map.isEmpty { self.namespaces[namespace] = map }
    }

    /// Applies `changes`, namespace by namespace.
    mutating func apply(_ changes: StateChanges) {
        for (namespace, batch) in changes.batches {
            self.apply(batch.operations, in: namespace)
        }
    }
}
