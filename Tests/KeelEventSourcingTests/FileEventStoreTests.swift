import Foundation
import KeelCore
import KeelTesting
import Testing

@testable import KeelEventSourcing

@Suite("File event store", .timeLimit(.minutes(2)))
struct FileEventStoreTests {
    typealias Fixtures = FileStoreFixtures

    @Test("passes the event store conformance checks with group commit", arguments: EventStoreConformance.checks)
    func conformance(_ check: EventStoreConformance.Check) async throws {
        let directory = TemporaryDirectory("conformance")
        defer { directory.remove() }
        let store = try FileEventStore(
            directory: directory.path,
            configuration: Fixtures.configuration(durability: .groupCommit)
        )
        try await check.run(on: store)
        await store.close()
    }

    @Test("passes the conformance checks across small segments, with fsync on every append")
    func conformanceSmallSegments() async throws {
        let directory = TemporaryDirectory("small")
        defer { directory.remove() }
        var index = 0
        try await EventStoreConformance.runAll {
            index += 1
            return try FileEventStore(
                directory: "\(directory.path)/\(index)",
                configuration: Fixtures.configuration(segmentSize: 700, durability: .fsyncEachAppend)
            )
        }
    }

    @Test("everything survives a reopen byte for byte: events, versions, metadata, deletions")
    func reopen() async throws {
        let directory = TemporaryDirectory("reopen")
        defer { directory.remove() }
        let configuration = Fixtures.configuration(segmentSize: 1_000)
        var store = try FileEventStore(directory: directory.path, configuration: configuration)
        for index in 0..<60 {
            try await store.append(Fixtures.event(index), to: StreamID("s-\(index % 4)"))
        }
        try await store.setStreamMetadata(StreamMetadata(maxCount: 5), for: "s-1")
        try await store.deleteStream("s-2", expecting: .any)
        let before = try await store.readAll(from: 0, limit: .max)
        await store.close()
        #expect(directory.segments().count > 3, "small segments roll over")

        store = try FileEventStore(directory: directory.path, configuration: configuration)
        #expect(store.recoveryReport.isClean)
        #expect(store.recoveryReport.eventCount == 60)
        #expect(try await store.readAll(from: 0, limit: .max) == before)
        #expect(try await store.readStream("s-1").count == 5)
        await #expect(throws: EventStoreError.self) { try await store.readStream("s-2") }
        #expect(try await store.streamVersion("s-3") == 14)
        let result = try await store.append(Fixtures.event(60), to: "s-3", expecting: .exactly(14))
        #expect(result.streamVersion == 15 && result.positions == 60..<61)
        let again = try await store.append(Fixtures.event(61), to: "s-2", expecting: .noStream)
        #expect(again.streamVersion == 15)
        #expect(try await store.readStream("s-2").map(\.version) == [15])
        await store.close()
    }

    @Test("a second opener of the same directory fails with locked until the first closes")
    func exclusiveLock() async throws {
        let directory = TemporaryDirectory("lock")
        defer { directory.remove() }
        let first = try FileEventStore(directory: directory.path, configuration: Fixtures.configuration())
        #expect {
            _ = try FileEventStore(directory: directory.path, configuration: Fixtures.configuration())
        } throws: { ($0 as? EventStoreError)?.code == .locked }
        await first.close()
        let second = try FileEventStore(directory: directory.path, configuration: Fixtures.configuration())
        await second.close()
    }

    @Test("deleting the LOCK file under an open store does not let a second writer in")
    func deletedLockFile() async throws {
        let directory = TemporaryDirectory("lock-deleted")
        defer { directory.remove() }
        let first = try FileEventStore(directory: directory.path, configuration: Fixtures.configuration())
        try FileManager.default.removeItem(atPath: directory.path + "/LOCK")
        #expect {
            _ = try FileEventStore(directory: directory.path, configuration: Fixtures.configuration())
        } throws: { ($0 as? EventStoreError)?.code == .locked }
        await first.close()
        let second = try FileEventStore(directory: directory.path, configuration: Fixtures.configuration())
        await second.close()
    }

    @Test("a closed store refuses appends and reads, and ends waiting subscriptions")
    func closing() async throws {
        let directory = TemporaryDirectory("close")
        defer { directory.remove() }
        let store = try FileEventStore(directory: directory.path, configuration: Fixtures.configuration())
        try await store.append(Fixtures.event(0), to: "a-1")
        // The subscription delivers event 0, then parks in the store's wait for a second event;
        // closing the store must end it with `closed`, having delivered exactly the one event.
        let probe = ParkingProbe(store, signallingWaitsBeyond: 1)
        let delivered = OneShotSignal()
        let subscriber = Task {
            var count = 0
            do {
                for try await _ in probe.subscribe(from: 0) {
                    count += 1
                    delivered.signal()
                }
                return (count, nil as EventStoreError.Code?)
            } catch let error as EventStoreError {
                return (count, error.code)
            } catch {
                return (count, nil)
            }
        }
        await delivered.wait()
        await probe.parking.wait()
        await store.close()
        await store.close()
        let (count, ending) = await subscriber.value
        #expect(count == 1)
        #expect(ending == .closed)
        await #expect(throws: EventStoreError.self) { try await store.append(Fixtures.event(1), to: "a-1") }
        await #expect(throws: EventStoreError.self) { _ = try await store.readAll(from: 0, limit: 1) }
    }

    @Test("a record above maxRecordSize is refused before anything is written")
    func recordTooLarge() async throws {
        let directory = TemporaryDirectory("large")
        defer { directory.remove() }
        var configuration = Fixtures.configuration()
        configuration.maxRecordSize = 1_024
        let store = try FileEventStore(directory: directory.path, configuration: configuration)
        await #expect {
            try await store.append(
                [Fixtures.event(0), Fixtures.event(1, payloadSize: 2_000)],
                to: "big-1",
                expecting: .any
            )
        } throws: { ($0 as? EventStoreError)?.code == .recordTooLarge }
        #expect(try await store.headPosition() == 0)
        await store.close()
    }
}

@Suite("File event store records", .timeLimit(.minutes(2)))
struct FileRecordTests {
    static func frame(_ record: FileRecord) -> [UInt8] {
        var buffer: [UInt8] = []
        FileRecord.appendFrame(of: record.encodeBody(), to: &buffer)
        return buffer
    }

    static func decode(_ bytes: [UInt8], max: Int = 1 << 20) throws(FileRecord.DecodingFailure) -> FileRecord {
        let result = bytes.withUnsafeBytes { buffer in
            Result { () throws(FileRecord.DecodingFailure) in try FileRecord.decodeFrame(buffer, maxRecordSize: max) }
        }
        let (record, size) = try result.get()
        precondition(size == bytes.count)
        return record
    }

    @Test("every record kind round-trips through its frame")
    func roundTrip() throws {
        for index in 0..<20 {
            let event = RecordedEvent(
                stream: StreamID("stream-\(index)"),
                version: UInt64(index),
                position: UInt64(index * 7),
                data: FileStoreFixtures.event(index)
            )
            #expect(try Self.decode(Self.frame(.event(event))) == .event(event))
        }
        let metadata = FileRecord.streamMetadata("m-1", StreamMetadata(maxCount: 3, truncateBefore: 9))
        #expect(try Self.decode(Self.frame(metadata)) == metadata)
        let none = FileRecord.streamMetadata("m-1", StreamMetadata())
        #expect(try Self.decode(Self.frame(none)) == none)
        let deleted = FileRecord.streamDeleted("d-1", truncateBefore: 12)
        #expect(try Self.decode(Self.frame(deleted)) == deleted)
    }

    @Test("each kind of damage is its own failure, and nothing is allocated for a bad length")
    func failures() throws {
        let good = Self.frame(.streamDeleted("d-1", truncateBefore: 12))
        #expect(throws: FileRecord.DecodingFailure.truncatedHeader) { try Self.decode(Array(good.prefix(5))) }
        #expect(throws: FileRecord.DecodingFailure.truncatedBody(needed: good.count, available: good.count - 1)) {
            try Self.decode(Array(good.dropLast()))
        }
        var flipped = good
        flipped[good.count - 2] ^= 0x10
        #expect(throws: FileRecord.DecodingFailure.checksumMismatch) { try Self.decode(flipped) }
        var oversized = good
        oversized.replaceSubrange(0..<4, with: [0xF0, 0xFF, 0xFF, 0xFF])
        #expect(throws: FileRecord.DecodingFailure.invalidLength(0xFFFF_FFF0)) { try Self.decode(oversized) }
        var zero = good
        zero.replaceSubrange(0..<4, with: [0, 0, 0, 0])
        #expect(throws: FileRecord.DecodingFailure.invalidLength(0)) { try Self.decode(zero) }
        // A valid checksum over a body that does not parse.
        var body = FileRecord.streamDeleted("d-1", truncateBefore: 12).encodeBody()
        body[0] = 99
        var unknownKind: [UInt8] = []
        FileRecord.appendFrame(of: body, to: &unknownKind)
        #expect(throws: FileRecord.DecodingFailure.self) { try Self.decode(unknownKind) }
        body = FileRecord.streamDeleted("d-1", truncateBefore: 12).encodeBody() + [0]
        var trailing: [UInt8] = []
        FileRecord.appendFrame(of: body, to: &trailing)
        #expect(throws: FileRecord.DecodingFailure.malformedBody("1 bytes after the last field")) {
            try Self.decode(trailing)
        }
    }

    @Test("CRC-32C matches the standard check value")
    func crcCheckValue() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        #expect(CRC32C.checksum([]) == 0)
        let data = (0..<1_000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        let whole = CRC32C.checksum(data)
        let split = data.withUnsafeBytes { bytes in
            CRC32C.checksum(
                UnsafeRawBufferPointer(rebasing: bytes[500...]),
                continuing: CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[..<500]))
            )
        }
        #expect(whole == split)
    }
}
