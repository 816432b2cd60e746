import KeelCore

/// One record of a segment file, decoded.
///
/// A segment holds frames `[length: u32][crc: u32][body: length bytes]`, little-endian; `crc` is
/// the CRC-32C of the four length bytes followed by the body, so a damaged length is caught as
/// surely as a damaged body. The body's first byte is its kind.
///
/// The records of one append are written one after the other, in one segment. Every event record
/// but the last of its append has the kind ``Kind/eventWithMore``: an append is complete exactly
/// when a record of kind ``Kind/event`` closes it, and recovery drops an append that a crash or
/// a failed write left without its last record, so an append is on disk whole or not at all.
package enum FileRecord: Sendable, Equatable {
    /// An appended event; `moreInAppend` when later records of the same append follow it.
    case event(RecordedEvent, moreInAppend: Bool = false)
    /// New metadata for a stream. `sequence` counts the stream changes (metadata and deletion
    /// records) before this one in the whole log, so that recovery notices a removed one; `nil` in
    /// records written before format version 2.
    case streamMetadata(StreamID, StreamMetadata, sequence: UInt64? = nil)
    /// A soft deletion: the stream reads as deleted, and versions below `truncateBefore` stay
    /// hidden after it is written again.
    case streamDeleted(StreamID, truncateBefore: UInt64, sequence: UInt64? = nil)

    /// Bytes before the body: the length and the checksum.
    package static let frameHeaderSize = 8
    /// The smallest body a valid record can have (a kind and an empty stream name).
    package static let minimumBodySize = 3

    enum Kind: UInt8 {
        /// An event, the last (or only) record of its append.
        case event = 1
        case streamMetadata = 2
        case streamDeleted = 3
        /// An event followed by more records of the same append (format version 2).
        case eventWithMore = 4
        /// Stream metadata with its change sequence (format version 2).
        case streamMetadataCounted = 5
        /// A deletion with its change sequence (format version 2).
        case streamDeletedCounted = 6
    }

    /// Offsets of the fields that an append patches after encoding (see ``encodeEventBody(_:stream:)``).
    package static let positionOffset = 1
    package static let versionOffset = 9

    // MARK: Encoding

    /// The body of an event record, with position and version left at zero: the appender
    /// encodes it before taking the store's lock and patches the two numbers in place once
    /// they are assigned.
    /// - Parameters:
    ///   - data: The event.
    ///   - stream: Its stream.
    /// - Returns: The body.
    package static func encodeEventBody(_ data: EventData, stream: StreamID) -> [UInt8] {
        var writer = ByteWriter(capacity: 96 + stream.name.utf8.count + data.type.utf8.count + data.payload.count)
        writer.write(Kind.event.rawValue)
        writer.write(UInt64(0))  // position, patched
        writer.write(UInt64(0))  // version, patched
        writer.writeString(stream.name)
        writer.writeString(data.type)
        writer.write(UInt32(truncatingIfNeeded: data.schemaVersion))
        let metadata = data.metadata
        writer.write(metadata.id.high)
        writer.write(metadata.id.low)
        writer.write(UInt64(bitPattern: metadata.time))
        var flags: UInt8 = 0
        if metadata.correlationID != nil { flags |= 1 }
        if metadata.causationID != nil { flags |= 2 }
        if metadata.traceID != nil { flags |= 4 }
        if metadata.spanID != nil { flags |= 8 }
        writer.write(flags)
        if let correlation = metadata.correlationID { writer.writeString(correlation) }
        if let causation = metadata.causationID { writer.writeString(causation) }
        if let trace = metadata.traceID {
            writer.write(trace.high)
            writer.write(trace.low)
        }
        if let span = metadata.spanID { writer.write(span.rawValue) }
        writer.write(UInt16(truncatingIfNeeded: metadata.custom.count))
        for (key, value) in metadata.custom.sorted(by: { $0.key < $1.key }) {
            writer.writeString(key)
            writer.writeString(value)
        }
        writer.write(UInt32(truncatingIfNeeded: data.payload.count))
        writer.write(contentsOf: data.payload)
        return writer.bytes
    }

    /// The body of a metadata or deletion record.
    /// - Returns: The body.
    package func encodeBody() -> [UInt8] {
        var writer = ByteWriter(capacity: 64)
        switch self {
        case .event(let event, let moreInAppend):
            var body = Self.encodeEventBody(event.data, stream: event.stream)
            Self.patch(&body, position: event.position, version: event.version)
            if moreInAppend { Self.markMoreInAppend(&body) }
            return body
        case .streamMetadata(let stream, let metadata, let sequence):
            if let sequence {
                writer.write(Kind.streamMetadataCounted.rawValue)
                writer.write(sequence)
            } else {
                writer.write(Kind.streamMetadata.rawValue)
            }
            writer.writeString(stream.name)
            var flags: UInt8 = 0
            if metadata.maxCount != nil { flags |= 1 }
            if metadata.truncateBefore != nil { flags |= 2 }
            writer.write(flags)
            writer.write(UInt64(metadata.maxCount ?? 0))
            writer.write(metadata.truncateBefore ?? 0)
        case .streamDeleted(let stream, let truncateBefore, let sequence):
            if let sequence {
                writer.write(Kind.streamDeletedCounted.rawValue)
                writer.write(sequence)
            } else {
                writer.write(Kind.streamDeleted.rawValue)
            }
            writer.writeString(stream.name)
            writer.write(truncateBefore)
        }
        return writer.bytes
    }

    /// Marks an event body made by ``encodeEventBody(_:stream:)`` as followed by more records of
    /// its append.
    package static func markMoreInAppend(_ body: inout [UInt8]) {
        body[0] = Kind.eventWithMore.rawValue
    }

    /// Writes `position` and `version` into an event body made by ``encodeEventBody(_:stream:)``.
    package static func patch(_ body: inout [UInt8], position: UInt64, version: UInt64) {
        body.withUnsafeMutableBytes { bytes in
            bytes.storeBytes(of: position.littleEndian, toByteOffset: Self.positionOffset, as: UInt64.self)
            bytes.storeBytes(of: version.littleEndian, toByteOffset: Self.versionOffset, as: UInt64.self)
        }
    }

    /// Appends the frame of `body` (header and body) to `buffer`.
    package static func appendFrame(of body: [UInt8], to buffer: inout [UInt8]) {
        let length = UInt32(body.count)
        var crc = withUnsafeBytes(of: length.littleEndian) { CRC32C.checksum($0) }
        crc = body.withUnsafeBytes { CRC32C.checksum($0, continuing: crc) }
        withUnsafeBytes(of: length.littleEndian) { buffer.append(contentsOf: $0) }
        withUnsafeBytes(of: crc.littleEndian) { buffer.append(contentsOf: $0) }
        buffer.append(contentsOf: body)
    }

    // MARK: Decoding

    /// What is wrong with a frame.
    package enum DecodingFailure: Error, Equatable, Sendable {
        /// Fewer bytes than a frame header.
        case truncatedHeader
        /// The length field is below the smallest body or above the maximum record size.
        case invalidLength(UInt32)
        /// The frame claims more bytes than there are.
        case truncatedBody(needed: Int, available: Int)
        /// The checksum does not match.
        case checksumMismatch
        /// The body's fields do not parse (unknown kind, a field past the end, bad UTF-8, bytes
        /// left over).
        case malformedBody(String)
    }

    /// Decodes the frame at the start of `bytes`.
    ///
    /// Checks, in order: a whole header; a length within `minimumBodySize...maxRecordSize` (so
    /// nothing is allocated for an absurd length); a whole body; the checksum; then the fields.
    /// - Parameters:
    ///   - bytes: The bytes from the frame's first byte to the end of what is available.
    ///   - maxRecordSize: The largest body accepted.
    /// - Returns: The record and the frame's size in bytes.
    /// - Throws: ``DecodingFailure``.
    package static func decodeFrame(
        _ bytes: UnsafeRawBufferPointer,
        maxRecordSize: Int
    ) throws(DecodingFailure) -> (record: FileRecord, size: Int) {
        let (body, size) = try Self.checkFrame(
            bytes,
            minimumBodySize: Self.minimumBodySize,
            maxRecordSize: maxRecordSize
        )
        return (try Self.decodeBody(body), size)
    }

    /// Checks the frame at the start of `bytes` without reading its body's fields: a whole header,
    /// a length within `minimumBodySize...maxRecordSize`, a whole body, the checksum.
    /// - Parameters:
    ///   - bytes: The bytes from the frame's first byte to the end of what is available.
    ///   - minimumBodySize: The smallest body accepted.
    ///   - maxRecordSize: The largest body accepted.
    /// - Returns: The body and the frame's size in bytes.
    /// - Throws: ``DecodingFailure``, never ``DecodingFailure/malformedBody(_:)``.
    package static func checkFrame(
        _ bytes: UnsafeRawBufferPointer,
        minimumBodySize: Int,
        maxRecordSize: Int
    ) throws(DecodingFailure) -> (body: UnsafeRawBufferPointer, size: Int) {
        try Self.inspectFrame(bytes, minimumBodySize: minimumBodySize, maxRecordSize: maxRecordSize).get()
    }

    /// Whether a frame that passes ``checkFrame(_:minimumBodySize:maxRecordSize:)`` (and, when
    /// asked, whose body decodes) starts at the first byte of `bytes`, found without throwing.
    ///
    /// Recovery asks this at every byte offset after damage, to tell a torn tail from damage in
    /// the middle; a thrown error per offset would cost more than the check itself (and far more
    /// under a test runner that records a backtrace for every thrown error).
    /// - Parameters:
    ///   - bytes: The bytes from the candidate frame's first byte to the end of what is available.
    ///   - minimumBodySize: The smallest body accepted.
    ///   - maxRecordSize: The largest body accepted.
    ///   - decodingBody: Whether the body must decode too (``decodeBody(_:)``), or a valid
    ///     checksum is enough.
    /// - Returns: Whether a valid frame starts there.
    package static func startsValidFrame(
        _ bytes: UnsafeRawBufferPointer,
        minimumBodySize: Int,
        maxRecordSize: Int,
        decodingBody: Bool
    ) -> Bool {
        guard
            case .success(let frame) = Self.inspectFrame(
                bytes,
                minimumBodySize: minimumBodySize,
                maxRecordSize: maxRecordSize
            )
        else { return false }
        return !decodingBody || (try? Self.decodeBody(frame.body)) != nil
    }

    /// ``checkFrame(_:minimumBodySize:maxRecordSize:)``'s checks, with the failure returned rather
    /// than thrown.
    private static func inspectFrame(
        _ bytes: UnsafeRawBufferPointer,
        minimumBodySize: Int,
        maxRecordSize: Int
    ) -> Result<(body: UnsafeRawBufferPointer, size: Int), DecodingFailure> {
        guard bytes.count >= Self.frameHeaderSize else { return .failure(.truncatedHeader) }
        let length = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt32.self))
        let storedCRC = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
        guard Int(length) >= minimumBodySize, Int(length) <= maxRecordSize else {
            return .failure(.invalidLength(length))
        }
        let size = Self.frameHeaderSize + Int(length)
        guard bytes.count >= size else { return .failure(.truncatedBody(needed: size, available: bytes.count)) }
        var crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[0..<4]))
        let body = UnsafeRawBufferPointer(rebasing: bytes[Self.frameHeaderSize..<size])
        crc = CRC32C.checksum(body, continuing: crc)
        guard crc == storedCRC else { return .failure(.checksumMismatch) }
        return .success((body, size))
    }

    /// Decodes a record body whose checksum has been verified.
    package static func decodeBody(_ body: UnsafeRawBufferPointer) throws(DecodingFailure) -> FileRecord {
        var reader = ByteReader(body)
        let kindByte = try reader.read(UInt8.self)
        guard let kind = Kind(rawValue: kindByte) else { throw .malformedBody("unknown record kind \(kindByte)") }
        let record: FileRecord
        switch kind {
        case .event, .eventWithMore:
            let position = try reader.read(UInt64.self)
            let version = try reader.read(UInt64.self)
            let stream = StreamID(try reader.readString())
            let type = try reader.readString()
            let schemaVersion = Int(try reader.read(UInt32.self))
            let id = EventID(high: try reader.read(UInt64.self), low: try reader.read(UInt64.self))
            let time = Int64(bitPattern: try reader.read(UInt64.self))
            let flags = try reader.read(UInt8.self)
            guard flags & ~0x0F == 0 else { throw .malformedBody("unknown metadata flags \(flags)") }
            let correlation = flags & 1 != 0 ? try reader.readString() : nil
            let causation = flags & 2 != 0 ? try reader.readString() : nil
            let trace =
                flags & 4 != 0 ? TraceID(high: try reader.read(UInt64.self), low: try reader.read(UInt64.self)) : nil
            let span = flags & 8 != 0 ? SpanID(rawValue: try reader.read(UInt64.self)) : nil
            let customCount = Int(try reader.read(UInt16.self))
            var custom: [String: String] = [:]
            for _ in 0..<customCount {
                let key = try reader.readString()
                custom[key] = try reader.readString()
            }
            let payloadCount = Int(try reader.read(UInt32.self))
            let payload = try reader.readBytes(payloadCount)
            let metadata = EventMetadata(
                id: id,
                time: time,
                correlationID: correlation,
                causationID: causation,
                traceID: trace,
                spanID: span,
                custom: custom
            )
            let data = EventData(type: type, schemaVersion: schemaVersion, metadata: metadata, payload: payload)
            record = .event(
                RecordedEvent(stream: stream, version: version, position: position, data: data),
                moreInAppend: kind == .eventWithMore
            )
        case .streamMetadata, .streamMetadataCounted:
            let sequence = kind == .streamMetadataCounted ? try reader.read(UInt64.self) : nil
            let stream = StreamID(try reader.readString())
            let flags = try reader.read(UInt8.self)
            guard flags & ~0x03 == 0 else { throw .malformedBody("unknown stream metadata flags \(flags)") }
            let maxCount = try reader.read(UInt64.self)
            let truncateBefore = try reader.read(UInt64.self)
            guard maxCount <= UInt64(Int.max) else { throw .malformedBody("maxCount \(maxCount) out of range") }
            let metadata = StreamMetadata(
                maxCount: flags & 1 != 0 ? Int(maxCount) : nil,
                truncateBefore: flags & 2 != 0 ? truncateBefore : nil
            )
            record = .streamMetadata(stream, metadata, sequence: sequence)
        case .streamDeleted, .streamDeletedCounted:
            let sequence = kind == .streamDeletedCounted ? try reader.read(UInt64.self) : nil
            let stream = StreamID(try reader.readString())
            record = .streamDeleted(stream, truncateBefore: try reader.read(UInt64.self), sequence: sequence)
        }
        guard reader.isAtEnd else { throw .malformedBody("\(reader.remaining) bytes after the last field") }
        return record
    }
}

/// Appends little-endian fields to a byte array.
struct ByteWriter {
    private(set) var bytes: [UInt8]

    init(capacity: Int) {
        self.bytes = []
        self.bytes.reserveCapacity(capacity)
    }

    mutating func write<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { self.bytes.append(contentsOf: $0) }
    }

    /// A string as a `u16` byte count and its UTF-8 bytes; longer strings are cut at 65,535 bytes
    /// (names and ids never come close).
    mutating func writeString(_ string: String) {
        let utf8 = Array(string.utf8.prefix(Int(UInt16.max)))
        self.write(UInt16(utf8.count))
        self.bytes.append(contentsOf: utf8)
    }

    mutating func write(contentsOf bytes: [UInt8]) {
        self.bytes.append(contentsOf: bytes)
    }
}

/// Reads little-endian fields from a buffer, never past its end.
struct ByteReader {
    private let buffer: UnsafeRawBufferPointer
    private var offset = 0

    init(_ buffer: UnsafeRawBufferPointer) {
        self.buffer = buffer
    }

    var isAtEnd: Bool { self.offset == self.buffer.count }
    var remaining: Int { self.buffer.count - self.offset }
    /// How many bytes have been read.
    var position: Int { self.offset }

    mutating func read<T: FixedWidthInteger>(_: T.Type) throws(FileRecord.DecodingFailure) -> T {
        let size = MemoryLayout<T>.size
        guard self.remaining >= size else { throw .malformedBody("a \(T.self) field runs past the end") }
        let value = T(littleEndian: self.buffer.loadUnaligned(fromByteOffset: self.offset, as: T.self))
        self.offset += size
        return value
    }

    mutating func readBytes(_ count: Int) throws(FileRecord.DecodingFailure) -> [UInt8] {
        guard count >= 0, self.remaining >= count else {
            throw .malformedBody("a field of \(count) bytes runs past the end")
        }
        let bytes = Array(UnsafeRawBufferPointer(rebasing: self.buffer[self.offset..<self.offset + count]))
        self.offset += count
        return bytes
    }

    /// The next `count` bytes, in place (valid as long as the buffer is).
    mutating func readSlice(_ count: Int) throws(FileRecord.DecodingFailure) -> UnsafeRawBufferPointer {
        guard count >= 0, self.remaining >= count else {
            throw .malformedBody("a field of \(count) bytes runs past the end")
        }
        let slice = UnsafeRawBufferPointer(rebasing: self.buffer[self.offset..<self.offset + count])
        self.offset += count
        return slice
    }

    mutating func readString() throws(FileRecord.DecodingFailure) -> String {
        let count = Int(try self.read(UInt16.self))
        guard self.remaining >= count else { throw .malformedBody("a string of \(count) bytes runs past the end") }
        let slice = UnsafeRawBufferPointer(rebasing: self.buffer[self.offset..<self.offset + count])
        guard let string = String(validating: slice, as: UTF8.self) else {
            throw .malformedBody("a string is not UTF-8")
        }
        self.offset += count
        return string
    }
}
