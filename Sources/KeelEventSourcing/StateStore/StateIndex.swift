/// What a ``FileStateStore`` keeps in memory: per namespace and key, where the value lies in the
/// current generation's file, its length and its CRC-32C — not the value's bytes, except for
/// values of at most ``Entry/inlineCapacity`` bytes, which fit in the entry itself.
///
/// Recovery builds it while it replays a generation (``StateFile/index(_:at:)`` gives the
/// entries of each record); the writer applies each commit once its record is written, and
/// compaction builds the next generation's index while it writes that generation.
struct StateIndex: Sendable {
    /// Where one value lies: 16 bytes, whatever the value's size.
    ///
    /// A value on disk is its offset in the generation file (8 bytes), its CRC-32C (4 bytes) and
    /// its length (4 bytes). A value of at most ``inlineCapacity`` bytes is held in the entry's
    /// first 12 bytes instead, its length recorded as `UInt32.max - length` in the last 4: a value
    /// on disk is never that long, since the record around it (at most `UInt32.max` bytes) also
    /// holds its key, namespace and their lengths.
    struct Entry: Sendable, Hashable {
        /// The largest value held in memory: 12 bytes (a checkpoint, a counter, a small id) live in
        /// the space an entry takes anyway. Holding larger values would cost a heap allocation per
        /// entry and make memory depend on the values again.
        static let inlineCapacity = 12

        /// On disk: the value's offset in the file. Inline: its bytes 0..<8.
        private var word: UInt64
        /// On disk: the value's CRC-32C. Inline: its bytes 8..<12.
        private var check: UInt32
        /// On disk: the value's length. Inline: `UInt32.max` minus its length.
        private var size: UInt32

        private init(word: UInt64, check: UInt32, size: UInt32) {
            self.word = word
            self.check = check
            self.size = size
        }

        /// The entry of `value`, which lies at `offset` of the file: inline when it is small enough,
        /// else its place, length and checksum.
        init(value: UnsafeRawBufferPointer, at offset: Int) {
            if value.count <= Self.inlineCapacity {
                var bytes: (UInt64, UInt32) = (0, 0)
                withUnsafeMutableBytes(of: &bytes) { raw in
                    raw.copyMemory(from: value)
                }
                self.init(
                    word: UInt64(littleEndian: bytes.0),
                    check: UInt32(littleEndian: bytes.1),
                    size: UInt32.max - UInt32(value.count)
                )
            } else {
                precondition(value.count < Int(UInt32.max) - Self.inlineCapacity, "a value longer than a record")
                self.init(word: UInt64(offset), check: CRC32C.checksum(value), size: UInt32(value.count))
            }
        }

        /// Whether the value is held in the entry.
        var isInline: Bool { self.size >= UInt32.max - UInt32(Self.inlineCapacity) }
        /// The value's length.
        var length: Int { self.isInline ? Int(UInt32.max - self.size) : Int(self.size) }
        /// The value's offset in the generation file (meaningless for an inline value).
        var offset: Int { Int(self.word) }
        /// The value's CRC-32C (meaningless for an inline value).
        var checksum: UInt32 { self.check }

        /// The bytes of an inline value.
        var inlineValue: [UInt8] {
            precondition(self.isInline, "the value of this entry is on disk")
            var bytes: (UInt64, UInt32) = (self.word.littleEndian, self.check.littleEndian)
            let count = self.length
            return withUnsafeBytes(of: &bytes) { Array($0.prefix(count)) }
        }

        /// The same entry for a record that starts `distance` bytes further into the file.
        func moved(by distance: Int) -> Entry {
            guard !self.isInline else { return self }
            var moved = self
            moved.word = UInt64(self.offset + distance)
            return moved
        }
    }

    /// One write, as an index applies it.
    enum Operation: Sendable {
        case put(key: String, entry: Entry)
        case delete(key: String)
        case deleteAll(prefix: String)
    }

    /// Namespace, then key. A namespace with no key left is removed.
    private(set) var namespaces: [String: [String: Entry]] = [:]
    /// The live entries' size in a snapshot (see ``StateFile/entrySize(namespace:key:length:)``).
    private(set) var liveBytes = 0
    /// The bytes of the values held inline.
    private(set) var inlineValueBytes = 0

    /// The entries, over every namespace.
    var count: Int { self.namespaces.values.reduce(0) { $0 + $1.count } }

    func entry(forKey key: String, in namespace: String) -> Entry? {
        self.namespaces[namespace]?[key]
    }

    /// The keys of `namespace`, unsorted (callers filter and sort them outside their lock).
    func keys(in namespace: String) -> [String] {
        self.namespaces[namespace].map { Array($0.keys) } ?? []
    }

    /// Applies `operations` to `namespace`, in order.
    mutating func apply(_ operations: [Operation], in namespace: String) {
        guard !operations.isEmpty else { return }
        var map = self.namespaces.removeValue(forKey: namespace) ?? [:]
        for operation in operations {
            switch operation {
            case .put(let key, let entry):
                if let old = map.updateValue(entry, forKey: key) { self.remove(old, key: key, in: namespace) }
                self.liveBytes += StateFile.entrySize(namespace: namespace, key: key, length: entry.length)
                if entry.isInline { self.inlineValueBytes += entry.length }
            case .delete(let key):
                if let old = map.removeValue(forKey: key) { self.remove(old, key: key, in: namespace) }
            case .deleteAll(let prefix):
                // The survivors are copied rather than the deleted keys removed one by one: a
                // prefix delete usually drops most of a namespace (a read model's reset).
                var kept: [String: Entry] = [:]
                for (key, entry) in map {
                    if key.hasPrefix(prefix) {
                        self.remove(entry, key: key, in: namespace)
                    } else {
                        kept[key] = entry
                    }
                }
                map = kept
            }
        }
        if !map.isEmpty { self.namespaces[namespace] = map }
    }

    private mutating func remove(_ entry: Entry, key: String, in namespace: String) {
        self.liveBytes -= StateFile.entrySize(namespace: namespace, key: key, length: entry.length)
        if entry.isInline { self.inlineValueBytes -= entry.length }
    }
}
