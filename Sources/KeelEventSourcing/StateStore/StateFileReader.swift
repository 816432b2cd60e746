/// Reads a generation file mostly front to back through a window of ``windowSize`` bytes (more
/// for a larger record), so that recovery and compaction hold one window of the file in memory,
/// never the whole file.
///
/// Used by one thread at a time; the bytes it hands out stay valid until its next call.
final class StateFileReader {
    /// How much one read brings in, at least.
    static let windowSize = 4 << 20

    let descriptor: FileDescriptor
    /// The file's size when the reader was made: it reads nothing beyond.
    let size: Int
    private var window: UnsafeMutableRawBufferPointer
    /// The file offset of the window's first byte, and how many of its bytes are read.
    private var start = 0
    private var filled = 0

    init(_ descriptor: FileDescriptor, size: Int) {
        self.descriptor = descriptor
        self.size = size
        self.window = UnsafeMutableRawBufferPointer.allocate(byteCount: 0, alignment: 1)
    }

    deinit {
        self.window.deallocate()
    }

    /// The `count` bytes at `offset`, or those up to the end of the file when it ends before.
    func bytes(at offset: Int, count: Int) throws(EventStoreError) -> UnsafeRawBufferPointer {
        let end = min(offset + count, self.size)
        guard offset < end else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        if offset < self.start || end > self.start + self.filled {
            let wanted = min(max(end - offset, Self.windowSize), self.size - offset)
            if wanted > self.window.count {
                self.window.deallocate()
                self.window = UnsafeMutableRawBufferPointer.allocate(byteCount: wanted, alignment: 1)
            }
            self.start = offset
            self.filled = 0
            self.filled = try self.descriptor.read(
                into: UnsafeMutableRawBufferPointer(rebasing: self.window[0..<wanted]),
                at: offset
            )
        }
        let from = offset - self.start
        let to = min(end - self.start, self.filled)
        return UnsafeRawBufferPointer(rebasing: self.window[from..<max(from, to)])
    }

    /// The frame at `offset`, checked as ``FileRecord/checkFrame(_:minimumBodySize:maxRecordSize:)``
    /// checks it against the rest of the file, without reading a body the file is too short for.
    /// - Returns: The body (valid until the next call) and the frame's size, or what is wrong.
    /// - Throws: ``EventStoreError`` when reading fails.
    func frame(
        at offset: Int,
        minimumBodySize: Int,
        maxRecordSize: Int
    ) throws(EventStoreError) -> Result<(body: UnsafeRawBufferPointer, size: Int), FileRecord.DecodingFailure> {
        let rest = self.size - offset
        var bytes = try self.bytes(at: offset, count: FileRecord.frameHeaderSize)
        if bytes.count == FileRecord.frameHeaderSize {
            let length = Int(UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt32.self)))
            if length >= minimumBodySize, length <= maxRecordSize {
                let needed = FileRecord.frameHeaderSize + length
                guard needed <= rest else { return .failure(.truncatedBody(needed: needed, available: rest)) }
                bytes = try self.bytes(at: offset, count: needed)
            }
        }
        do throws(FileRecord.DecodingFailure) {
            return .success(
                try FileRecord.checkFrame(bytes, minimumBodySize: minimumBodySize, maxRecordSize: maxRecordSize)
            )
        } catch {
            return .failure(error)
        }
    }

    /// Whether a frame with a valid checksum starts anywhere after `offset`: then damage at
    /// `offset` is not a torn tail.
    func hasValidFrame(after offset: Int, minimumBodySize: Int) throws(EventStoreError) -> Bool {
        var candidate = offset + 1
        while candidate + FileRecord.frameHeaderSize + minimumBodySize <= self.size {
            let header = try self.bytes(at: candidate, count: FileRecord.frameHeaderSize)
            let length = Int(UInt32(littleEndian: header.loadUnaligned(fromByteOffset: 0, as: UInt32.self)))
            if length >= minimumBodySize, candidate + FileRecord.frameHeaderSize + length <= self.size {
                let frame = try self.bytes(at: candidate, count: FileRecord.frameHeaderSize + length)
                if FileRecord.startsValidFrame(
                    frame,
                    minimumBodySize: minimumBodySize,
                    maxRecordSize: length,
                    decodingBody: false
                ) {
                    return true
                }
            }
            candidate += 1
        }
        return false
    }
}
