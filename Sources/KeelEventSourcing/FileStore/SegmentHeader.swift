#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The 32-byte header that starts every segment file:
/// `magic "KEELSEG1" | format version u32 | header size u32 | segment index u64 | reserved u32 |
/// CRC-32C of the first 28 bytes u32`, little-endian.
///
/// Format version 2 adds the ``FileRecord/Kind/eventWithMore`` record, which makes a multi-event
/// append atomic; version 1 segments (every record its own append) stay readable, and a store
/// whose last segment is version 1 starts a version 2 segment before it writes again, so that an
/// older reader never meets a record kind it does not know inside a segment that claims version 1.
enum SegmentHeader {
    static let size = 32
    static let magic: [UInt8] = Array("KEELSEG1".utf8)
    /// The version new segments are written in.
    static let formatVersion: UInt32 = 2
    /// The versions this reader understands.
    static let readableVersions: ClosedRange<UInt32> = 1...2

    static func fileName(index: Int) -> String {
        let digits = String(index)
        return "segment-" + String(repeating: "0", count: max(0, 16 - digits.count)) + digits + ".log"
    }

    /// The index in a segment file name, or `nil` when the name is not exactly
    /// `segment-<16 digits>.log`.
    static func index(fromFileName name: String) -> Int? {
        guard name.hasPrefix("segment-"), name.hasSuffix(".log"), name.utf8.count == 8 + 16 + 4 else { return nil }
        let digits = name.dropFirst(8).dropLast(4)
        guard digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return Int(digits)
    }

    static func encode(index: Int) -> [UInt8] {
        var writer = ByteWriter(capacity: Self.size)
        writer.write(contentsOf: Self.magic)
        writer.write(Self.formatVersion)
        writer.write(UInt32(Self.size))
        writer.write(UInt64(index))
        writer.write(UInt32(0))
        var bytes = writer.bytes
        let crc = CRC32C.checksum(bytes)
        withUnsafeBytes(of: crc.littleEndian) { bytes.append(contentsOf: $0) }
        return bytes
    }

    /// What is wrong with a header, or `nil` when it is valid for segment `index`.
    static func problem(in bytes: UnsafeRawBufferPointer, index: Int) -> String? {
        guard bytes.count >= Self.size else { return "the header is \(bytes.count) bytes, expected \(Self.size)" }
        guard Array(bytes[0..<8]) == Self.magic else { return "bad magic" }
        let crc = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 28, as: UInt32.self))
        guard CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[0..<28])) == crc else {
            return "header checksum mismatch"
        }
        let version = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
        guard Self.readableVersions.contains(version) else { return "unknown format version \(version)" }
        let headerSize = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 12, as: UInt32.self))
        guard headerSize == UInt32(Self.size) else { return "unknown header size \(headerSize)" }
        let stored = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
        guard stored == UInt64(index) else { return "the header names segment \(stored), the file name \(index)" }
        return nil
    }

    /// The format version of a header that ``problem(in:index:)`` found valid.
    static func version(in bytes: UnsafeRawBufferPointer) -> UInt32 {
        UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
    }

    /// Creates segment `index` with its header, and syncs the file and the directory before
    /// anything is written into it.
    static func create(index: Int, directory: String) throws(EventStoreError) -> FileEventStore.Segment {
        let path = directory + "/" + Self.fileName(index: index)
        let descriptor = try FileDescriptor.open(path, flags: O_RDWR | O_CREAT | O_EXCL)
        do throws(EventStoreError) {
            try descriptor.write(Self.encode(index: index), at: 0)
            try descriptor.sync()
            try FileDescriptor.syncDirectory(directory)
        } catch {
            descriptor.close()
            throw error
        }
        return FileEventStore.Segment(descriptor: descriptor, size: Self.size)
    }
}
