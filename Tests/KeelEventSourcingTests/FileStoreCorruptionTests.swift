import Foundation
import KeelCore
import Testing

@testable import KeelEventSourcing

/// Damage on disk: each case gives the promised typed error, or the promised cut, and never a
/// crash or a silent skip.
@Suite("File event store corruption", .timeLimit(.minutes(2)))
struct FileStoreCorruptionTests {
    typealias Fixtures = FileStoreFixtures

    /// The offsets of the frames in a segment file.
    static func frameOffsets(_ bytes: [UInt8]) -> [Int] {
        var offsets: [Int] = []
        var offset = SegmentHeader.size
        while offset + 8 <= bytes.count {
            offsets.append(offset)
            let length =
                Int(bytes[offset]) | Int(bytes[offset + 1]) << 8 | Int(bytes[offset + 2]) << 16 | Int(bytes[offset + 3])
                << 24
            // A zero length is no record: the writer's zero fill past the last one.
            guard length > 0 else {
                offsets.removeLast()
                break
            }
            offset += 8 + length
        }
        return offsets
    }

    static func open(
        _ directory: TemporaryDirectory,
        recovery: FileEventStore.Recovery = .strict
    ) throws -> FileEventStore {
        try FileEventStore(directory: directory.path, configuration: Fixtures.configuration(recovery: recovery))
    }

    /// Opening must fail with `corrupted`, naming the file and the offset.
    static func expectCorrupted(_ directory: TemporaryDirectory, file: String, offset: Int) {
        #expect {
            _ = try Self.open(directory)
        } throws: { error in
            guard let error = error as? EventStoreError, error.code == .corrupted else { return false }
            return error.message.hasPrefix("\(file)@\(offset):")
        }
    }

    static func positions(_ store: FileEventStore) async throws -> [UInt64] {
        try await store.readAll(from: 0, limit: .max).map(\.position)
    }

    @Test("a flipped bit in a middle record: strict open names file and offset; repair cuts there and reports")
    func flippedBitInTheMiddle() async throws {
        let directory = TemporaryDirectory("mid")
        defer { directory.remove() }
        try await Fixtures.populate(directory, count: 10)
        let segment = try #require(directory.segments().first)
        var bytes = directory.bytes(of: segment)
        let offsets = Self.frameOffsets(bytes)
        bytes[offsets[4] + 30] ^= 0x04
        directory.write(bytes, to: segment)

        Self.expectCorrupted(directory, file: segment, offset: offsets[4])
        #expect(directory.bytes(of: segment) == bytes, "a strict open changed the file")

        let recorder = InMemoryRecorder()
        let store = try FileEventStore(
            directory: directory.path,
            configuration: Fixtures.configuration(recovery: .repair),
            telemetry: recorder
        )
        #expect(try await Self.positions(store) == [0, 1, 2, 3])
        let cut = try #require(store.recoveryReport.cuts.first)
        #expect(store.recoveryReport.cuts.count == 1)
        #expect(cut.file == segment && cut.offset == offsets[4] && cut.reason == .repaired)
        // A repair's cut loses events: logged as an error.
        let logged = recorder.logs(from: "keel.store")
        #expect(logged.map(\.level) == [.error])
        #expect(logged.first?.metadata["reason"] == "repaired")
        #expect(logged.first?.metadata["droppedBytes"] == "\(cut.droppedBytes)")
        #expect(cut.droppedBytes == bytes.count - offsets[4])
        try await store.append(Fixtures.event(99), to: "s-0")
        #expect(try await Self.positions(store) == [0, 1, 2, 3, 4])
        await store.close()
    }

    @Test(
        "a flipped bit in the last record, past the high-water mark, is a torn tail: cut and reported, in strict mode too"
    )
    func flippedBitAtTheTail() async throws {
        let directory = TemporaryDirectory("tail")
        defer { directory.remove() }
        try await Fixtures.populateWithUnmarkedTail(directory, count: 10)
        let segment = try #require(directory.segments().first)
        var bytes = directory.bytes(of: segment)
        let last = try #require(Self.frameOffsets(bytes).last)
        bytes[bytes.count - 3] ^= 0x80
        directory.write(bytes, to: segment)

        let recorder = InMemoryRecorder()
        let store = try FileEventStore(
            directory: directory.path,
            configuration: Fixtures.configuration(),
            telemetry: recorder
        )
        #expect(try await Self.positions(store) == Array(0..<9))
        #expect(store.recoveryReport.cuts.map(\.reason) == [.tornTail])
        #expect(recorder.logs(from: "keel.store").map(\.level) == [.warning])
        #expect(recorder.logs(from: "keel.store").first?.metadata["offset"] == "\(last)")
        #expect(store.recoveryReport.cuts.first?.offset == last)
        await store.close()
        #expect(directory.bytes(of: segment).count == last, "the tail was truncated on disk")
    }

    @Test("a truncated record is a torn tail; zeros from a record boundary on end the log, cutting nothing")
    func truncatedAndZeroFilledTails() async throws {
        for damage in ["truncated", "zeros", "truncated-header"] {
            let directory = TemporaryDirectory(damage)
            defer { directory.remove() }
            try await Fixtures.populateWithUnmarkedTail(directory, count: 6)
            let segment = try #require(directory.segments().first)
            var bytes = directory.bytes(of: segment)
            let last = try #require(Self.frameOffsets(bytes).last)
            var expected = Array(UInt64(0)..<6)
            switch damage {
            case "truncated":
                bytes.removeLast(7)
                expected.removeLast()
            case "truncated-header":
                bytes.removeLast(bytes.count - last - 5)
                expected.removeLast()
            default:
                bytes += [UInt8](repeating: 0, count: 4_096)
            }
            directory.write(bytes, to: segment)
            let store = try Self.open(directory)
            #expect(try await Self.positions(store) == expected, "\(damage)")
            // Zeros from a record boundary to the end are what the writer's fill ahead of its
            // records looks like: nothing was written there, and nothing is cut.
            #expect(store.recoveryReport.cuts.map(\.reason) == (damage == "zeros" ? [] : [.tornTail]), "\(damage)")
            try await store.append(Fixtures.event(50), to: "after-1")
            await store.close()
            let reopened = try Self.open(directory)
            #expect(reopened.recoveryReport.isClean, "\(damage): the cut left a clean log")
            #expect(try await Self.positions(reopened) == Array(0..<UInt64(expected.count + 1)))
            await reopened.close()
        }
    }

    @Test("a length field damaged to reach past the end, with intact records after it, is corruption, not a torn tail")
    func damagedLengthBeforeIntactRecords() async throws {
        let directory = TemporaryDirectory("length-tail")
        defer { directory.remove() }
        try await Fixtures.populate(directory, count: 30)
        let segment = try #require(directory.segments().first)
        var bytes = directory.bytes(of: segment)
        let offsets = Self.frameOffsets(bytes)
        // One flipped bit in the high byte of record 7's length: it now claims more than the file
        // holds, which is what a torn write looks like, but 22 intact records follow it.
        bytes[offsets[7] + 2] ^= 0x10
        directory.write(bytes, to: segment)
        Self.expectCorrupted(directory, file: segment, offset: offsets[7])
        #expect(directory.bytes(of: segment) == bytes, "a strict open changed the file")
        let store = try Self.open(directory, recovery: .repair)
        #expect(try await Self.positions(store) == Array(0..<7))
        #expect(store.recoveryReport.cuts.map(\.reason) == [.repaired])
        await store.close()
    }

    @Test("zeros from inside the last record to the end of the file (a power loss) are a torn tail, cut in strict mode")
    func zerosFromInsideTheLastRecord() async throws {
        let directory = TemporaryDirectory("zeros-inside")
        defer { directory.remove() }
        try await Fixtures.populateWithUnmarkedTail(directory, count: 6)
        let segment = try #require(directory.segments().first)
        var bytes = directory.bytes(of: segment)
        let last = try #require(Self.frameOffsets(bytes).last)
        // The last record keeps its header and 10 bytes of its body; zeros from there on, past
        // where it ended, as a file system that extended the file before the data arrived leaves.
        let zeroed = last + FileRecord.frameHeaderSize + 10
        bytes.replaceSubrange(zeroed..<bytes.count, with: [UInt8](repeating: 0, count: bytes.count - zeroed + 4_096))
        directory.write(bytes, to: segment)
        let store = try Self.open(directory)
        #expect(try await Self.positions(store) == Array(0..<5))
        let cut = try #require(store.recoveryReport.cuts.first)
        #expect(store.recoveryReport.cuts.count == 1 && cut.reason == .tornTail && cut.offset == last)
        await store.close()
    }

    @Test(
        "the high-water mark turns tail damage to acknowledged records into errors: a flipped bit, a cut at a record boundary, a deleted last segment"
    )
    func damageBelowTheHighWaterMark() async throws {
        for damage in ["flipped", "boundary", "deleted"] {
            let directory = TemporaryDirectory("mark-\(damage)")
            defer { directory.remove() }
            try await Fixtures.populate(directory, count: 30, segmentSize: 1_000)
            let segments = directory.segments()
            let last = try #require(segments.last)
            var bytes = directory.bytes(of: last)
            let offsets = Self.frameOffsets(bytes)
            let reported: String
            switch damage {
            case "flipped":
                bytes[bytes.count - 3] ^= 0x80
                directory.write(bytes, to: last)
                reported = "\(last)@\(try #require(offsets.last)):"
            case "boundary":
                directory.write(Array(bytes[..<offsets[offsets.count - 1]]), to: last)
                reported = "\(last)@\(offsets[offsets.count - 1]):"
            default:
                try FileManager.default.removeItem(atPath: last)
                reported = "\(last)@0:"
            }
            #expect {
                _ = try Self.open(directory)
            } throws: { error in
                guard let error = error as? EventStoreError, error.code == .corrupted else { return false }
                return error.message.hasPrefix(reported)
            }
            // Without the mark (a store written before it existed) the same damage is cut, or
            // goes unnoticed, as a crash's trace.
            try FileManager.default.removeItem(atPath: directory.markFile)
            let store = try Self.open(directory)
            #expect(try await Self.positions(store).count < 30, "\(damage)")
            await store.close()
        }
    }

    @Test(
        "a removed stream change (metadata or deletion record) is reported, not absorbed: a deleted stream cannot come back"
    )
    func removedStreamChanges() async throws {
        for removed in ["metadata", "deletion"] {
            let directory = TemporaryDirectory("change-\(removed)")
            defer { directory.remove() }
            let store = try Self.open(directory)
            try await store.append(Fixtures.event(0), to: "a-1")
            try await store.setStreamMetadata(StreamMetadata(maxCount: 5), for: "a-1")
            try await store.append(Fixtures.event(1), to: "b-1")
            try await store.deleteStream("b-1", expecting: .any)
            try await store.append(Fixtures.event(2), to: "c-1")
            if removed == "metadata" { try await store.setStreamMetadata(StreamMetadata(maxCount: 9), for: "c-1") }
            await store.close()
            // Frames: a-1 event, metadata, b-1 event, deletion, c-1 event (, metadata).
            let segment = try #require(directory.segments().first)
            let bytes = directory.bytes(of: segment)
            let offsets = Self.frameOffsets(bytes) + [bytes.count]
            let index = removed == "metadata" ? 1 : 3
            let damaged = Array(bytes[..<offsets[index]]) + Array(bytes[offsets[index + 1]...])
            directory.write(damaged, to: segment)
            // A metadata record followed by another change: the next change's sequence is off, and
            // the error names that record. The last deletion: the high-water mark counts
            // the changes, and the log now ends short of it.
            #expect(throws: EventStoreError.self) { _ = try Self.open(directory) }
            #expect {
                _ = try Self.open(directory)
            } throws: { error in
                guard let error = error as? EventStoreError, error.code == .corrupted else { return false }
                let next = "\(segment)@\(Self.frameOffsets(damaged)[2]): stream change 1, expected 0"
                return removed == "metadata" ? error.message.hasPrefix(next) : error.message.contains("stream changes")
            }
        }
    }

    @Test("an oversized length field is rejected before allocation: an error in the middle, a repair cut")
    func oversizedLength() async throws {
        let directory = TemporaryDirectory("length")
        defer { directory.remove() }
        try await Fixtures.populate(directory, count: 8)
        let segment = try #require(directory.segments().first)
        var bytes = directory.bytes(of: segment)
        let offsets = Self.frameOffsets(bytes)
        bytes.replaceSubrange(offsets[2]..<offsets[2] + 4, with: [0xF0, 0xFF, 0xFF, 0x7F])
        directory.write(bytes, to: segment)
        Self.expectCorrupted(directory, file: segment, offset: offsets[2])
        let store = try Self.open(directory, recovery: .repair)
        #expect(try await Self.positions(store) == [0, 1])
        await store.close()
    }

    @Test("headers: a torn new segment is removed; a zeroed or truncated header elsewhere is an error")
    func headers() async throws {
        let directory = TemporaryDirectory("headers")
        defer { directory.remove() }
        try await Fixtures.populate(directory, count: 30, segmentSize: 400)
        var segments = directory.segments()
        #expect(segments.count >= 4)

        // A crash while creating the next segment leaves a short file: cut as a torn tail.
        let torn = "\(directory.path)/\(SegmentHeader.fileName(index: segments.count))"
        directory.write([0x4B, 0x45, 0x45], to: torn)
        var store = try Self.open(directory)
        #expect(store.recoveryReport.cuts.map(\.reason) == [.tornTail])
        #expect(store.recoveryReport.cuts.first?.removedFile == true)
        #expect(try await Self.positions(store).count == 30)
        await store.close()
        #expect(!FileManager.default.fileExists(atPath: torn))

        // A zeroed header on a segment that is not the last: an error at offset 0.
        segments = directory.segments()
        var bytes = directory.bytes(of: segments[1])
        bytes.replaceSubrange(0..<SegmentHeader.size, with: [UInt8](repeating: 0, count: SegmentHeader.size))
        directory.write(bytes, to: segments[1])
        Self.expectCorrupted(directory, file: segments[1], offset: 0)

        // Repair drops that segment and every later one, and says so.
        store = try Self.open(directory, recovery: .repair)
        let removed = store.recoveryReport.cuts.filter(\.removedFile).map(\.file)
        #expect(removed == Array(segments[1...]))
        let kept = try await Self.positions(store)
        #expect(kept == Array(0..<UInt64(kept.count)) && !kept.isEmpty && kept.count < 30)
        await store.close()

        // A truncated header on the first segment, with later segments present.
        let other = TemporaryDirectory("headers2")
        defer { other.remove() }
        try await Fixtures.populate(other, count: 30, segmentSize: 400)
        let first = try #require(other.segments().first)
        other.write(Array(other.bytes(of: first).prefix(10)), to: first)
        Self.expectCorrupted(other, file: first, offset: 0)
    }

    @Test("stray files: a segment-like name and a missing segment are errors; other files are left alone")
    func strayFiles() async throws {
        let directory = TemporaryDirectory("stray")
        defer { directory.remove() }
        try await Fixtures.populate(directory, count: 30, segmentSize: 400)
        directory.write(Array("notes".utf8), to: "\(directory.path)/README.txt")
        var store = try Self.open(directory)
        #expect(store.recoveryReport.isClean)
        await store.close()

        let stray = "\(directory.path)/segment-12.log"
        directory.write([1, 2, 3], to: stray)
        Self.expectCorrupted(directory, file: stray, offset: 0)
        store = try Self.open(directory, recovery: .repair)
        #expect(store.recoveryReport.cuts.map(\.file) == [stray])
        #expect(try await Self.positions(store).count == 30)
        await store.close()
        try FileManager.default.removeItem(atPath: stray)

        let segments = directory.segments()
        try FileManager.default.removeItem(atPath: segments[1])
        // The error names the missing file, with an offset.
        Self.expectCorrupted(directory, file: segments[1], offset: 0)
        #expect {
            _ = try Self.open(directory)
        } throws: { ($0 as? EventStoreError)?.message.contains("segment 1 is missing") == true }
    }

    @Test("a record whose checksum is valid but whose position is out of order is damage, not a skip")
    func inconsistentRecord() async throws {
        let directory = TemporaryDirectory("order")
        defer { directory.remove() }
        try await Fixtures.populate(directory, count: 4)
        let segment = try #require(directory.segments().first)
        var bytes = directory.bytes(of: segment)
        // Append a well-formed record that claims position 9.
        let stray = RecordedEvent(stream: "s-0", version: 2, position: 9, data: Fixtures.event(9))
        var frame: [UInt8] = []
        FileRecord.appendFrame(of: FileRecord.event(stray).encodeBody(), to: &frame)
        let offset = bytes.count
        bytes += frame + frame
        directory.write(bytes, to: segment)
        Self.expectCorrupted(directory, file: segment, offset: offset)
    }
}
