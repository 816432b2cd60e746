import Foundation
import KeelCore
import KeelTesting
import Testing

@testable import KeelEventSourcing

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An append is on disk whole or not at all: cut anywhere inside its records, spread over no two
/// segments, and cut back after a failed write or sync.
@Suite("File event store atomic appends", .timeLimit(.minutes(2)))
struct FileStoreAtomicAppendTests {
    typealias Fixtures = FileStoreFixtures

    /// The same bytes as ``FileStoreFixtures/event(_:payloadSize:)`` with a payload of `size`.
    static func events(_ range: Range<Int>, payloadSize: Int = 40) -> [EventData] {
        range.map { Fixtures.event($0, payloadSize: payloadSize) }
    }

    static func positions(_ store: FileEventStore) async throws -> [UInt64] {
        try await store.readAll(from: 0, limit: .max).map(\.position)
    }

    static func size(of file: String) -> Int {
        (try? FileManager.default.attributesOfItem(atPath: file)[.size] as? Int) ?? -1
    }

    /// Where a segment's records end: the first zero length field (the writer's zero fill, see
    /// `Writer.zeroAhead`) or the end of the file.
    static func recordsEnd(of file: String) -> Int {
        let bytes = FileManager.default.contents(atPath: file).map { [UInt8]($0) } ?? []
        var offset = SegmentHeader.size
        while offset + FileRecord.frameHeaderSize <= bytes.count {
            let length = (0..<4).reduce(0) { $0 | Int(bytes[offset + $1]) << (8 * $1) }
            guard length > 0 else { break }
            offset += FileRecord.frameHeaderSize + length
        }
        return offset
    }

    @Test("a multi-event append cut at any byte inside it is dropped whole on reopen, in strict mode too")
    func cutInsideAnAppend() async throws {
        let directory = TemporaryDirectory("atomic-cut")
        defer { directory.remove() }
        let store = try FileEventStore(directory: directory.path, configuration: Fixtures.configuration())
        try await store.append(Fixtures.event(0), to: "single-1")
        await store.close()
        let segment = try #require(directory.segments().first)
        let appendStart = Self.size(of: segment)
        // A crash while the append below is written leaves the high-water mark where it was.
        let mark = directory.bytes(of: directory.markFile)
        let reopened = try FileEventStore(directory: directory.path, configuration: Fixtures.configuration())
        try await reopened.append(Self.events(1..<4), to: "order-1", expecting: .any)
        await reopened.close()
        let whole = directory.bytes(of: segment)
        #expect(whole.count > appendStart)

        // Every length from the append's first byte to one byte short of its end: what a crash
        // part-way through writing it can leave.
        for length in appendStart..<whole.count {
            directory.write(Array(whole[..<length]), to: segment)
            directory.write(mark, to: directory.markFile)
            let store = try FileEventStore(directory: directory.path, configuration: Fixtures.configuration())
            let positions = try await Self.positions(store)
            #expect(positions == [0], "cut at \(length): \(positions)")
            #expect(try await store.streamVersion("order-1") == nil, "cut at \(length)")
            if length > appendStart {
                let cut = store.recoveryReport.cuts.first
                #expect(store.recoveryReport.cuts.count == 1, "cut at \(length)")
                #expect(
                    cut?.reason == .tornTail && cut?.offset == appendStart,
                    "cut at \(length): \(String(describing: cut))"
                )
            }
            await store.close()
            #expect(Self.size(of: segment) == appendStart, "cut at \(length): the partial append is still on disk")
        }
        directory.write(whole, to: segment)
        directory.write(mark, to: directory.markFile)
        let intact = try FileEventStore(directory: directory.path, configuration: Fixtures.configuration())
        #expect(try await Self.positions(intact) == [0, 1, 2, 3])
        #expect(intact.recoveryReport.isClean)
        await intact.close()
    }

    @Test("an append that does not fit in the current segment starts a new one; it is never split")
    func appendsNeverSpanSegments() async throws {
        let directory = TemporaryDirectory("atomic-roll")
        defer { directory.remove() }
        let configuration = Fixtures.configuration(segmentSize: 4_096)
        let store = try FileEventStore(directory: directory.path, configuration: configuration)
        try await store.append(Self.events(0..<1, payloadSize: 1_000), to: "a-1", expecting: .any)
        // The mark as a crash during the next append would leave it.
        let mark = directory.bytes(of: directory.markFile)
        // Two events of 3,000 bytes: together larger than a segment, so they get one to themselves.
        try await store.append(Self.events(1..<3, payloadSize: 3_000), to: "b-1", expecting: .any)
        try await store.append(Self.events(3..<4, payloadSize: 100), to: "a-1", expecting: .any)
        await store.close()
        let segments = directory.segments()
        #expect(segments.count == 3)
        let frames = segments.map { FileStoreCorruptionTests.frameOffsets(directory.bytes(of: $0)).count }
        #expect(frames == [1, 2, 1])

        // The crash that used to leave one of the two events: the second record never written.
        let second = try #require(segments.dropFirst().first)
        let bytes = directory.bytes(of: second)
        let offsets = FileStoreCorruptionTests.frameOffsets(bytes)
        try #require(offsets.count == 2)
        directory.write(Array(bytes[..<(offsets[1] + 100)]), to: second)
        try FileManager.default.removeItem(atPath: segments[2])
        directory.write(mark, to: directory.markFile)
        let reopened = try FileEventStore(directory: directory.path, configuration: configuration)
        #expect(try await Self.positions(reopened) == [0])
        #expect(try await reopened.streamVersion("b-1") == nil)
        await reopened.close()
    }

    /// A store with one event of `a-1` written, and `faults` armed for what follows.
    static func openWithOneEvent(
        _ directory: TemporaryDirectory,
        durability: FileEventStore.Durability,
        segmentSize: Int = 64 << 20
    ) async throws -> (FileEventStore, FileStoreFaults, committedSize: Int) {
        var configuration = Fixtures.configuration(segmentSize: segmentSize, durability: durability)
        let faults = FileStoreFaults()
        configuration.faults = faults
        let store = try FileEventStore(directory: directory.path, configuration: configuration)
        try await store.append(Fixtures.event(0), to: "a-1")
        let segment = try #require(directory.segments().last)
        // The first append also filled the segment with zeros ahead of its record (durable
        // modes): the committed log ends where the records do.
        return (store, faults, Self.recordsEnd(of: segment))
    }

    /// Reopens `directory` without faults and checks that only the first event is there and the
    /// open found nothing to cut.
    static func expectOnlyTheFirstEvent(_ directory: TemporaryDirectory, segmentSize: Int = 64 << 20) async throws {
        let store = try FileEventStore(
            directory: directory.path,
            configuration: Fixtures.configuration(segmentSize: segmentSize)
        )
        #expect(try await Self.positions(store) == [0])
        #expect(try await store.streamVersion("b-1") == nil)
        #expect(store.recoveryReport.isClean, "\(store.recoveryReport.cuts)")
        try await store.append(Fixtures.event(9), to: "b-1")
        #expect(try await Self.positions(store) == [0, 1])
        await store.close()
    }

    @Test(
        "a write that fails part-way (ENOSPC, EIO) leaves nothing of its append, and the store refuses appends until reopened",
        arguments: [ENOSPC, EIO]
    )
    func failedWrite(code: Int32) async throws {
        let directory = TemporaryDirectory("atomic-enospc")
        defer { directory.remove() }
        let (store, faults, committedSize) = try await Self.openWithOneEvent(directory, durability: .fsyncEachAppend)
        faults.failWrite(number: 2, keepingBytes: 150, code: code)
        let error = await #expect(throws: EventStoreError.self) {
            try await store.append(Self.events(1..<4), to: "b-1", expecting: .any)
        }
        #expect(error?.code == .io)
        #expect(error?.message.contains(String(cString: strerror(code))) == true, "\(String(describing: error))")
        await #expect(throws: EventStoreError.self) { try await store.append(Fixtures.event(5), to: "c-1") }
        #expect(try await Self.positions(store) == [0])
        await store.close()
        let segment = try #require(directory.segments().last)
        #expect(Self.size(of: segment) == committedSize, "the failed append's bytes are still on disk")
        try await Self.expectOnlyTheFirstEvent(directory)
    }

    @Test("an fsync that fails (EIO) after the data was written leaves nothing of the append")
    func failedSync() async throws {
        let directory = TemporaryDirectory("atomic-eio")
        defer { directory.remove() }
        let (store, faults, committedSize) = try await Self.openWithOneEvent(directory, durability: .fsyncEachAppend)
        faults.failSync(number: faults.syncs + 1, code: EIO)
        await #expect(throws: EventStoreError.self) {
            try await store.append(Self.events(1..<4), to: "b-1", expecting: .any)
        }
        await store.close()
        let segment = try #require(directory.segments().last)
        #expect(Self.size(of: segment) == committedSize)
        try await Self.expectOnlyTheFirstEvent(directory)
    }

    @Test(
        "concurrent appends with a write failing mid-batch: every acknowledged append is there whole, every failed one is gone",
        arguments: 0..<12
    )
    func failedBatchAmongConcurrentAppends(round: Int) async throws {
        let directory = TemporaryDirectory("atomic-batch")
        defer { directory.remove() }
        let segmentSize = 4_096
        let (store, faults, _) = try await Self.openWithOneEvent(
            directory,
            durability: .groupCommit,
            segmentSize: segmentSize
        )
        // One of the next few writes fails after 1,000 bytes; how the eight appends fall into
        // batches varies from run to run, so a failed batch may hold one append or several, and
        // may have rolled over to a new segment before the failing write.
        faults.failWrite(number: faults.writes + 1 + round % 4, keepingBytes: 1_000, code: ENOSPC)
        let outcomes = await withTaskGroup(of: (Int, Bool).self) { group in
            for appender in 0..<8 {
                group.addTask {
                    do {
                        try await store.append(
                            Self.events((10 * appender)..<(10 * appender + 3), payloadSize: 900),
                            to: StreamID("b-\(appender)"),
                            expecting: .any
                        )
                        return (appender, true)
                    } catch {
                        return (appender, false)
                    }
                }
            }
            var outcomes: [Int: Bool] = [:]
            for await (appender, succeeded) in group { outcomes[appender] = succeeded }
            return outcomes
        }
        #expect(outcomes.values.contains(false), "no write failed")
        await store.close()

        let reopened = try FileEventStore(
            directory: directory.path,
            configuration: Fixtures.configuration(segmentSize: segmentSize)
        )
        #expect(reopened.recoveryReport.isClean, "\(reopened.recoveryReport.cuts)")
        for (appender, succeeded) in outcomes {
            let events = try await reopened.readStream(StreamID("b-\(appender)"))
            if succeeded {
                #expect(events.map(\.data) == Self.events((10 * appender)..<(10 * appender + 3), payloadSize: 900))
            } else {
                #expect(events.isEmpty, "appender \(appender) failed, but \(events.count) of its events are there")
            }
        }
        let acknowledged = outcomes.values.filter { $0 }.count
        #expect(try await Self.positions(reopened).count == 1 + 3 * acknowledged)
        await reopened.close()
    }

    @Test("a store whose last segment is format version 1 stays readable and goes on in a version 2 segment")
    func formatVersionOneSegments() async throws {
        let directory = TemporaryDirectory("atomic-v1")
        defer { directory.remove() }
        try await Fixtures.populate(directory, count: 5)
        // Rewrite segment 0's header as version 1, the format before multi-event appends were marked.
        let segment = try #require(directory.segments().first)
        var bytes = directory.bytes(of: segment)
        withUnsafeBytes(of: UInt32(1).littleEndian) { bytes.replaceSubrange(8..<12, with: $0) }
        let crc = bytes.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[0..<28])) }
        withUnsafeBytes(of: crc.littleEndian) { bytes.replaceSubrange(28..<32, with: $0) }
        directory.write(bytes, to: segment)

        let store = try FileEventStore(directory: directory.path, configuration: Fixtures.configuration())
        #expect(try await Self.positions(store) == [0, 1, 2, 3, 4])
        try await store.append(Self.events(5..<8), to: "s-9", expecting: .any)
        await store.close()
        let segments = directory.segments()
        #expect(segments.count == 2)
        #expect(directory.bytes(of: segment) == bytes, "the version 1 segment was written to")
        let header = directory.bytes(of: segments[1])
        #expect(header.withUnsafeBytes { SegmentHeader.version(in: $0) } == 2)
        let reopened = try FileEventStore(directory: directory.path, configuration: Fixtures.configuration())
        #expect(try await Self.positions(reopened) == Array(0..<8))
        await reopened.close()
    }
}
