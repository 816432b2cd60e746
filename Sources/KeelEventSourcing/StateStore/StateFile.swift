#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The files of a ``FileStateStore``: `state-<generation>.log` (16 hexadecimal digits), each a
/// header and then frames as in the event log (`[length: u32][crc: u32][body]`, the CRC-32C
/// covering the length and the body).
///
/// A generation file starts with a snapshot of every entry — ``Record/snapshot`` chunks and one
/// ``Record/snapshotEnd`` — and goes on with ``Record/batch`` records, one per commit, each
/// carrying the next sequence number. Compaction writes generation `g + 1` (a snapshot of the live
/// entries, synced) and then removes generation `g`.
package enum StateFile {
    /// The header: `magic "KEELSTA1" | format version u32 | reserved u32 | generation u64 |
    /// reserved u32 | CRC-32C of the first 28 bytes u32`.
    static let headerSize = 32
    static let magic: [UInt8] = Array("KEELSTA1".utf8)
    static let formatVersion: UInt32 = 1
    /// Snapshot chunks are cut after this many bytes of entries (one entry is never split).
    static let snapshotChunkSize = 1 << 20
    /// The smallest valid body: a kind and a sequence.
    package static let minimumBodySize = 9

    static func name(generation: UInt64) -> String {
        let digits = String(generation, radix: 16)
        return "state-" + String(repeating: "0", count: max(0, 16 - digits.count)) + digits + ".log"
    }

    /// The generation a file name stands for; `nil` for a name that is not a generation file's.
    static func generation(of name: String) -> UInt64? {
        guard name.hasPrefix("state-"), name.hasSuffix(".log") else { return nil }
        let digits = name.dropFirst(6).dropLast(4)
        guard digits.count == 16, let generation = UInt64(digits, radix: 16) else { return nil }
        return generation
    }

    static func header(generation: UInt64) -> [UInt8] {
        var writer = ByteWriter(capacity: Self.headerSize)
        writer.write(contentsOf: Self.magic)
        writer.write(Self.formatVersion)
        writer.write(UInt32(0))
        writer.write(generation)
        writer.write(UInt32(0))
        var bytes = writer.bytes
        let crc = CRC32C.checksum(bytes)
        withUnsafeBytes(of: crc.littleEndian) { bytes.append(contentsOf: $0) }
        return bytes
    }

    /// What is wrong with a header, or `nil` when it is the valid header of `generation`.
    static func checkHeader(_ bytes: UnsafeRawBufferPointer, generation: UInt64) -> String? {
        guard bytes.count >= Self.headerSize else { return "the header is cut short (\(bytes.count) bytes)" }
        guard Array(bytes[0..<8]) == Self.magic else { return "not a state file (bad magic)" }
        let crc = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 28, as: UInt32.self))
        guard CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[0..<28])) == crc else {
            return "the header fails its checksum"
        }
        let version = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
        guard version == Self.formatVersion else { return "format version \(version) is not supported" }
        let stored = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
        guard stored == generation else { return "the header names generation \(stored)" }
        return nil
    }

    /// One record's body, decoded.
    package enum Record: Equatable {
        /// One commit: its sequence (1, 2, 3, … over the store's life) and its writes.
        case batch(sequence: UInt64, changes: [(namespace: String, operations: [KeyValueBatch.Operation])])
        /// Entries of the snapshot that holds every batch up to `sequence`; chunks count from 0.
        case snapshot(sequence: UInt64, chunk: UInt64, entries: [(namespace: String, key: String, value: [UInt8])])
        /// The end of a snapshot: how many chunks and entries it had.
        case snapshotEnd(sequence: UInt64, chunks: UInt64, entries: UInt64)

        package static func == (lhs: Record, rhs: Record) -> Bool {
            switch (lhs, rhs) {
            case (.batch(let a, let x), .batch(let b, let y)):
                a == b && x.map(\.namespace) == y.map(\.namespace) && x.map(\.operations) == y.map(\.operations)
            case (.snapshot(let a, let c, let x), .snapshot(let b, let d, let y)):
                a == b && c == d && x.map(\.namespace) == y.map(\.namespace) && x.map(\.key) == y.map(\.key)
                    && x.map(\.value) == y.map(\.value)
            case (.snapshotEnd(let a, let c, let e), .snapshotEnd(let b, let d, let f)):
                a == b && c == d && e == f
            default:
                false
            }
        }
    }

    enum Kind: UInt8 {
        case batch = 1
        case snapshot = 2
        case snapshotEnd = 3
    }

    /// The body of a batch record.
    static func batchBody(sequence: UInt64, changes: StateChanges) -> [UInt8] {
        let sections = changes.batches.filter { !$0.batch.isEmpty }.map { ($0.namespace, $0.batch.operations) }
        return Self.encode(.batch(sequence: sequence, changes: sections))
    }

    /// The body of `record`, as ``decode(_:)`` reads it.
    package static func encode(_ record: Record) -> [UInt8] {
        var writer = ByteWriter(capacity: 64)
        switch record {
        case .batch(let sequence, let changes):
            writer.write(Kind.batch.rawValue)
            writer.write(sequence)
            writer.write(UInt32(changes.count))
            for (namespace, operations) in changes {
                writer.writeLong(Array(namespace.utf8))
                writer.write(UInt32(operations.count))
                for operation in operations {
                    switch operation {
                    case .put(let key, let value):
                        writer.write(UInt8(1))
                        writer.writeLong(Array(key.utf8))
                        writer.writeLong(value)
                    case .delete(let key):
                        writer.write(UInt8(2))
                        writer.writeLong(Array(key.utf8))
                    case .deleteAll(let prefix):
                        writer.write(UInt8(3))
                        writer.writeLong(Array(prefix.utf8))
                    }
                }
            }
        case .snapshot(let sequence, let chunk, let entries):
            writer.write(Kind.snapshot.rawValue)
            writer.write(sequence)
            writer.write(chunk)
            writer.write(UInt32(entries.count))
            for (namespace, key, value) in entries {
                writer.writeLong(Array(namespace.utf8))
                writer.writeLong(Array(key.utf8))
                writer.writeLong(value)
            }
        case .snapshotEnd(let sequence, let chunks, let entries):
            writer.write(Kind.snapshotEnd.rawValue)
            writer.write(sequence)
            writer.write(chunks)
            writer.write(entries)
        }
        return writer.bytes
    }

    /// The size of `entry` in a snapshot chunk; also what the store counts as its live bytes.
    static func entrySize(namespace: String, key: String, value: [UInt8]) -> Int {
        Self.entrySize(namespace: namespace, key: key, length: value.count)
    }

    /// The size in a snapshot chunk of an entry whose value is `length` bytes.
    static func entrySize(namespace: String, key: String, length: Int) -> Int {
        12 + namespace.utf8.count + key.utf8.count + length
    }

    /// The bodies of a snapshot of `entries` holding every batch up to `sequence`: chunks of about
    /// ``snapshotChunkSize`` bytes, then the end record.
    static func snapshotBodies(
        sequence: UInt64,
        entries: StateEntries,
        _ emit: ([UInt8]) throws(EventStoreError) -> Void
    ) throws(EventStoreError) {
        var writer = SnapshotWriter(sequence: sequence)
        for namespace in entries.namespaces.keys.sorted() {
            for (key, value) in entries.namespaces[namespace]!.sorted(by: { $0.key < $1.key }) {
                try writer.append(namespace: namespace, key: key, value: value, emit)
            }
        }
        try writer.finish(emit)
    }

    /// Cuts a snapshot's entries into chunks of about ``StateFile/snapshotChunkSize`` bytes.
    struct SnapshotWriter {
        let sequence: UInt64
        private(set) var chunk: UInt64 = 0
        private(set) var count: UInt64 = 0
        private var entries: [(namespace: String, key: String, value: [UInt8])] = []
        private var bytes = 0

        init(sequence: UInt64) {
            self.sequence = sequence
        }

        /// Adds an entry; emits the chunk's body when the chunk is full.
        mutating func append(
            namespace: String,
            key: String,
            value: [UInt8],
            _ emit: ([UInt8]) throws(EventStoreError) -> Void
        ) throws(EventStoreError) {
            self.entries.append((namespace, key, value))
            self.count += 1
            self.bytes += StateFile.entrySize(namespace: namespace, key: key, value: value)
            if self.bytes >= StateFile.snapshotChunkSize { try self.flush(emit) }
        }

        /// Emits the last chunk, if any, and the end record.
        mutating func finish(_ emit: ([UInt8]) throws(EventStoreError) -> Void) throws(EventStoreError) {
            try self.flush(emit)
            try emit(StateFile.encode(.snapshotEnd(sequence: self.sequence, chunks: self.chunk, entries: self.count)))
        }

        private mutating func flush(_ emit: ([UInt8]) throws(EventStoreError) -> Void) throws(EventStoreError) {
            guard !self.entries.isEmpty else { return }
            try emit(StateFile.encode(.snapshot(sequence: self.sequence, chunk: self.chunk, entries: self.entries)))
            self.chunk += 1
            self.entries.removeAll(keepingCapacity: true)
            self.bytes = 0
        }
    }

    /// One record's body, as an index sees it: every value replaced by its ``StateIndex/Entry``.
    enum IndexedRecord {
        /// One commit: its sequence and its writes.
        case batch(sequence: UInt64, changes: [(namespace: String, operations: [StateIndex.Operation])])
        /// Entries of the snapshot that holds every batch up to `sequence`.
        case snapshot(
            sequence: UInt64,
            chunk: UInt64,
            entries: [(namespace: String, key: String, entry: StateIndex.Entry)]
        )
        /// The end of a snapshot: how many chunks and entries it had.
        case snapshotEnd(sequence: UInt64, chunks: UInt64, entries: UInt64)
    }

    /// Decodes a body whose frame checksum has been verified, with values as index entries.
    /// - Parameters:
    ///   - body: The body.
    ///   - base: The offset of the body's first byte in its file: the entries' offsets count from
    ///     the file's start.
    /// - Returns: The record.
    /// - Throws: ``FileRecord/DecodingFailure`` for a body that is not a valid record.
    static func index(_ body: UnsafeRawBufferPointer, at base: Int) throws(FileRecord.DecodingFailure) -> IndexedRecord
    {
        var reader = ByteReader(body)
        func entry() throws(FileRecord.DecodingFailure) -> StateIndex.Entry {
            let count = Int(try reader.read(UInt32.self))
            let offset = reader.position
            return StateIndex.Entry(value: try reader.readSlice(count), at: base + offset)
        }
        let kindByte = try reader.read(UInt8.self)
        guard let kind = Kind(rawValue: kindByte) else { throw .malformedBody("unknown record kind \(kindByte)") }
        let sequence = try reader.read(UInt64.self)
        let record: IndexedRecord
        switch kind {
        case .batch:
            let sections = try reader.read(UInt32.self)
            var changes: [(namespace: String, operations: [StateIndex.Operation])] = []
            for _ in 0..<sections {
                let namespace = try reader.readLongString()
                let count = try reader.read(UInt32.self)
                var operations: [StateIndex.Operation] = []
                operations.reserveCapacity(Int(min(count, 1 << 16)))
                for _ in 0..<count {
                    let tag = try reader.read(UInt8.self)
                    let key = try reader.readLongString()
                    switch tag {
                    case 1: operations.append(.put(key: key, entry: try entry()))
                    case 2: operations.append(.delete(key: key))
                    case 3: operations.append(.deleteAll(prefix: key))
                    default: throw .malformedBody("unknown operation \(tag)")
                    }
                }
                changes.append((namespace, operations))
            }
            record = .batch(sequence: sequence, changes: changes)
        case .snapshot:
            let chunk = try reader.read(UInt64.self)
            let count = try reader.read(UInt32.self)
            var entries: [(namespace: String, key: String, entry: StateIndex.Entry)] = []
            entries.reserveCapacity(Int(min(count, 1 << 16)))
            for _ in 0..<count {
                let namespace = try reader.readLongString()
                let key = try reader.readLongString()
                entries.append((namespace, key, try entry()))
            }
            record = .snapshot(sequence: sequence, chunk: chunk, entries: entries)
        case .snapshotEnd:
            record = .snapshotEnd(
                sequence: sequence,
                chunks: try reader.read(UInt64.self),
                entries: try reader.read(UInt64.self)
            )
        }
        guard reader.isAtEnd else { throw .malformedBody("\(reader.remaining) bytes left over") }
        return record
    }

    /// Decodes a body whose frame checksum has been verified.
    package static func decode(_ body: UnsafeRawBufferPointer) throws(FileRecord.DecodingFailure) -> Record {
        func value(_ entry: StateIndex.Entry) -> [UInt8] {
            entry.isInline
                ? entry.inlineValue
                : Array(UnsafeRawBufferPointer(rebasing: body[entry.offset..<entry.offset + entry.length]))
        }
        switch try Self.index(body, at: 0) {
        case .batch(let sequence, let changes):
            return .batch(
                sequence: sequence,
                changes: changes.map { section in
                    (
                        section.namespace,
                        section.operations.map { operation -> KeyValueBatch.Operation in
                            switch operation {
                            case .put(let key, let entry): .put(key: key, value: value(entry))
                            case .delete(let key): .delete(key: key)
                            case .deleteAll(let prefix): .deleteAll(prefix: prefix)
                            }
                        }
                    )
                }
            )
        case .snapshot(let sequence, let chunk, let entries):
            return .snapshot(
                sequence: sequence,
                chunk: chunk,
                entries: entries.map { ($0.namespace, $0.key, value($0.entry)) }
            )
        case .snapshotEnd(let sequence, let chunks, let entries):
            return .snapshotEnd(sequence: sequence, chunks: chunks, entries: entries)
        }
    }

    /// Creates generation `generation`'s file in `directory`, empty but for its header, and
    /// syncs it. (The caller syncs the directory.)
    static func create(generation: UInt64, directory: String) throws(EventStoreError) -> FileDescriptor {
        let path = directory + "/" + Self.name(generation: generation)
        let descriptor = try FileDescriptor.open(path, flags: O_RDWR | O_CREAT | O_TRUNC)
        do throws(EventStoreError) {
            try descriptor.write(Self.header(generation: generation), at: 0)
            try descriptor.sync()
        } catch {
            descriptor.close()
            throw error
        }
        return descriptor
    }
}

extension ByteWriter {
    /// Bytes as a `u32` count and the bytes: keys, namespaces and values have no shorter limit.
    mutating func writeLong(_ bytes: [UInt8]) {
        self.write(UInt32(bytes.count))
        self.write(contentsOf: bytes)
    }
}

extension ByteReader {
    mutating func readLongString() throws(FileRecord.DecodingFailure) -> String {
        let bytes = try self.readSlice(Int(try self.read(UInt32.self)))
        guard let string = String(validating: bytes, as: UTF8.self) else {
            throw .malformedBody("a string is not UTF-8")
        }
        return string
    }
}
