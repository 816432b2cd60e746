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
        12 + namespace.utf8.count + key.utf8.count + value.count
    }

    /// The bodies of a snapshot of `entries` holding every batch up to `sequence`: chunks of about
    /// ``snapshotChunkSize`` bytes, then the end record.
    static func snapshotBodies(
        sequence: UInt64,
        entries: StateEntries,
        _ emit: ([UInt8]) throws(EventStoreError) -> Void
    ) throws(EventStoreError) {
        var chunk: UInt64 = 0
        var count: UInt64 = 0
        var chunkEntries: [(namespace: String, key: String, value: [UInt8])] = []
        func flush() throws(EventStoreError) {
            guard !chunkEntries.isEmpty else { return }
            try emit(Self.encode(.snapshot(sequence: sequence, chunk: chunk, entries: chunkEntries)))
            chunk += 1
            chunkEntries.removeAll(keepingCapacity: true)
        }
        var bytes = 0
        for namespace in entries.namespaces.keys.sorted() {
            for (key, value) in entries.namespaces[namespace]!.sorted(by: { $0.key < $1.key }) {
                chunkEntries.append((namespace, key, value))
                count += 1
                bytes += Self.entrySize(namespace: namespace, key: key, value: value)
                if bytes >= Self.snapshotChunkSize {
                    try flush()
                    bytes = 0
                }
            }
        }
        try flush()
        try emit(Self.encode(.snapshotEnd(sequence: sequence, chunks: chunk, entries: count)))
    }

    /// Decodes a body whose frame checksum has been verified.
    package static func decode(_ body: UnsafeRawBufferPointer) throws(FileRecord.DecodingFailure) -> Record {
        var reader = ByteReader(body)
        let kindByte = try reader.read(UInt8.self)
        guard let kind = Kind(rawValue: kindByte) else { throw .malformedBody("unknown record kind \(kindByte)") }
        let sequence = try reader.read(UInt64.self)
        let record: Record
        switch kind {
        case .batch:
            let sections = try reader.read(UInt32.self)
            var changes: [(namespace: String, operations: [KeyValueBatch.Operation])] = []
            for _ in 0..<sections {
                let namespace = try reader.readLongString()
                let count = try reader.read(UInt32.self)
                var operations: [KeyValueBatch.Operation] = []
                operations.reserveCapacity(Int(min(count, 1 << 16)))
                for _ in 0..<count {
                    let tag = try reader.read(UInt8.self)
                    let key = try reader.readLongString()
                    switch tag {
                    case 1: operations.append(.put(key: key, value: try reader.readLongBytes()))
                    case 2: operations.append(.delete(key: key))
                    default: throw .malformedBody("unknown operation \(tag)")
                    }
                }
                changes.append((namespace, operations))
            }
            record = .batch(sequence: sequence, changes: changes)
        case .snapshot:
            let chunk = try reader.read(UInt64.self)
            let count = try reader.read(UInt32.self)
            var entries: [(namespace: String, key: String, value: [UInt8])] = []
            entries.reserveCapacity(Int(min(count, 1 << 16)))
            for _ in 0..<count {
                let namespace = try reader.readLongString()
                let key = try reader.readLongString()
                entries.append((namespace, key, try reader.readLongBytes()))
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
    mutating func readLongBytes() throws(FileRecord.DecodingFailure) -> [UInt8] {
        try self.readBytes(Int(try self.read(UInt32.self)))
    }

    mutating func readLongString() throws(FileRecord.DecodingFailure) -> String {
        let bytes = try self.readLongBytes()
        guard let string = String(validating: bytes, as: UTF8.self) else {
            throw .malformedBody("a string is not UTF-8")
        }
        return string
    }
}
