#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// How far the log is known to have reached on disk: the last segment, its size and the number of
/// events, as of a moment when everything up to there had been synced.
///
/// Kept in the store's `HIGHWATER` file, in two 64-byte slots written in turn
/// (`magic "KEELHWM1" | sequence u64 | segment u64 | segment size u64 | events u64 | changes u64 |
/// reserved 12 |
/// CRC-32C of the first 60 bytes u32`, little-endian), so that a write torn by a crash spoils one
/// slot and the other still holds the previous mark. Recovery reads the slot with the higher
/// sequence and reports a log that ends short of it — a shortened last segment, a deleted one, a
/// damaged last record — as damage instead of cutting it as a torn tail.
struct HighWaterMark: Equatable {
    static let fileName = "HIGHWATER"
    static let slotSize = 64
    static let magic: [UInt8] = Array("KEELHWM1".utf8)

    /// Increases with every mark written.
    var sequence: UInt64
    /// The index of the last segment.
    var segment: Int
    /// The size of the last segment, in bytes.
    var segmentSize: Int
    /// The events in the whole log.
    var events: UInt64
    /// The stream changes (metadata and deletion records) in the whole log.
    var changes: UInt64

    /// The slot's bytes.
    func encode() -> [UInt8] {
        var writer = ByteWriter(capacity: Self.slotSize)
        writer.write(contentsOf: Self.magic)
        writer.write(self.sequence)
        writer.write(UInt64(self.segment))
        writer.write(UInt64(self.segmentSize))
        writer.write(self.events)
        writer.write(self.changes)
        writer.write(contentsOf: [UInt8](repeating: 0, count: 12))
        var bytes = writer.bytes
        let crc = CRC32C.checksum(bytes)
        withUnsafeBytes(of: crc.littleEndian) { bytes.append(contentsOf: $0) }
        return bytes
    }

    /// The mark in one slot, or `nil` when the slot is empty, torn or damaged.
    static func decode(_ bytes: ArraySlice<UInt8>) -> HighWaterMark? {
        guard bytes.count == Self.slotSize else { return nil }
        let slot = Array(bytes)
        return slot.withUnsafeBytes { raw -> HighWaterMark? in
            guard Array(raw[0..<8]) == Self.magic else { return nil }
            let crc = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 60, as: UInt32.self))
            guard CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[0..<60])) == crc else { return nil }
            func field(_ offset: Int) -> UInt64 {
                UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
            }
            guard field(16) <= UInt64(Int.max), field(24) <= UInt64(Int.max) else { return nil }
            return HighWaterMark(
                sequence: field(8),
                segment: Int(field(16)),
                segmentSize: Int(field(24)),
                events: field(32),
                changes: field(40)
            )
        }
    }

    /// The newer of the two slots' marks in `directory`'s `fileName`; `nil` when the file is
    /// missing or neither slot holds one. (A ``FileStateStore`` keeps its mark in `STATEMARK`,
    /// with its generation as the segment and its last batch's sequence as the events.)
    static func read(directory: String, fileName: String = Self.fileName) throws(EventStoreError) -> HighWaterMark? {
        let path = directory + "/" + fileName
        guard access(path, F_OK) == 0 else { return nil }
        let descriptor = try FileDescriptor.open(path, flags: O_RDONLY)
        defer { descriptor.close() }
        let bytes = try descriptor.read(count: 2 * Self.slotSize, at: 0)
        let slots = [bytes.prefix(Self.slotSize), bytes.dropFirst(Self.slotSize).prefix(Self.slotSize)]
        return slots.compactMap(Self.decode).max { $0.sequence < $1.sequence }
    }

    /// Writes the mark into its slot (by its sequence) of the open `HIGHWATER` file and syncs it.
    func write(to descriptor: FileDescriptor) throws(EventStoreError) {
        try descriptor.write(self.encode(), at: Int(self.sequence % 2) * Self.slotSize)
        try descriptor.sync()
    }
}
