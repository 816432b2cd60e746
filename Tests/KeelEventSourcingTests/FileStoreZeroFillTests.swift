import Foundation
import KeelCore
import Testing

@testable import KeelEventSourcing

/// The writer's zero fill: with synced appends the last segment is filled with zeros ahead of its
/// records, so that each `fsync` overwrites blocks already on disk instead of growing the file.
/// Recovery reads zeros from a record boundary to the end of the last segment as the end of the
/// log; only the last segment has a fill; and zeros over records the high-water mark covers are
/// still reported.
@Suite("File store zero fill", .timeLimit(.minutes(2)))
struct FileStoreZeroFillTests {
    typealias Fixtures = FileStoreFixtures

    static func allZero(_ bytes: ArraySlice<UInt8>) -> Bool { bytes.allSatisfy { $0 == 0 } }

    @Test(
        "synced appends fill the last segment with zeros ahead of their records; a reopen ends the log there, cuts nothing, and appends over the fill",
        arguments: [FileEventStore.Durability.fsyncEachAppend, .groupCommit, .none]
    )
    func fillAheadOfTheRecords(durability: FileEventStore.Durability) async throws {
        let directory = TemporaryDirectory("zero-fill")
        defer { directory.remove() }
        let configuration = Fixtures.configuration(durability: durability)
        let store = try FileEventStore(directory: directory.path, configuration: configuration)
        for index in 0..<20 {
            try await store.append(Fixtures.event(index), to: StreamID("s-\(index % 3)"))
        }
        await store.close()
        let segment = try #require(directory.segments().last)
        let bytes = directory.bytes(of: segment)
        let recordsEnd = FileStoreAtomicAppendTests.recordsEnd(of: segment)
        #expect(FileStoreCorruptionTests.frameOffsets(bytes).count == 20)
        if durability == .none {
            // Nothing is synced per append, so there is nothing to gain: no fill.
            #expect(bytes.count == recordsEnd)
        } else {
            #expect(
                bytes.count >= recordsEnd + Writer.zeroAhead / 2,
                "\(bytes.count) bytes, records end at \(recordsEnd)"
            )
            #expect(Self.allZero(bytes[recordsEnd...]))
        }

        let reopened = try FileEventStore(directory: directory.path, configuration: configuration)
        #expect(reopened.recoveryReport.isClean, "\(reopened.recoveryReport.cuts)")
        #expect(try await FileStoreCorruptionTests.positions(reopened) == Array(0..<20))
        for index in 20..<25 {
            try await reopened.append(Fixtures.event(index), to: StreamID("s-\(index % 3)"))
        }
        await reopened.close()
        let after = directory.bytes(of: segment)
        if durability != .none {
            #expect(after.count == bytes.count, "the appends went over the fill, not past it")
        }
        let again = try FileEventStore(directory: directory.path, configuration: configuration)
        #expect(again.recoveryReport.isClean)
        let events = try await again.readAll(from: 0, limit: .max)
        #expect(events.map(\.position) == Array(0..<25))
        #expect(events.map(\.payload) == (0..<25).map { Fixtures.event($0).payload })
        await again.close()
    }

    @Test("the zero check finds a non-zero byte at any offset, in the words and in the tail")
    func zeroCheck() {
        for count in 0..<40 {
            var bytes = [UInt8](repeating: 0, count: count)
            #expect(bytes.withUnsafeBytes { FileStoreRecovery.isAllZero($0) })
            for index in 0..<count {
                bytes[index] = 0x40
                #expect(!bytes.withUnsafeBytes { FileStoreRecovery.isAllZero($0) }, "\(count) bytes, \(index) set")
                bytes[index] = 0
            }
        }
    }

    @Test("a segment the writer moves on from keeps no fill: only the last segment ends in zeros")
    func onlyTheLastSegmentIsFilled() async throws {
        let directory = TemporaryDirectory("zero-fill-segments")
        defer { directory.remove() }
        let configuration = Fixtures.configuration(segmentSize: 16 << 10, durability: .groupCommit)
        let store = try FileEventStore(directory: directory.path, configuration: configuration)
        for index in 0..<120 {
            try await store.append(Fixtures.event(index, payloadSize: 500), to: StreamID("s-\(index % 3)"))
        }
        await store.close()
        let segments = directory.segments()
        #expect(segments.count > 3)
        for segment in segments.dropLast() {
            #expect(
                FileStoreAtomicAppendTests.size(of: segment) == FileStoreAtomicAppendTests.recordsEnd(of: segment),
                "\(segment) still has a fill"
            )
        }
        let last = try #require(segments.last)
        #expect(FileStoreAtomicAppendTests.size(of: last) > FileStoreAtomicAppendTests.recordsEnd(of: last))
        let reopened = try FileEventStore(directory: directory.path, configuration: configuration)
        #expect(reopened.recoveryReport.isClean)
        #expect(try await FileStoreCorruptionTests.positions(reopened) == Array(0..<120))
        await reopened.close()
    }

    @Test("zeros over records the high-water mark covers are not taken for the fill: a strict open names the shortfall")
    func zerosBelowTheMark() async throws {
        let directory = TemporaryDirectory("zero-fill-marked")
        defer { directory.remove() }
        let configuration = Fixtures.configuration(durability: .groupCommit)
        let store = try FileEventStore(directory: directory.path, configuration: configuration)
        for index in 0..<10 {
            try await store.append(Fixtures.event(index), to: StreamID("s-\(index % 3)"))
        }
        // A clean close marks every record.
        await store.close()
        let segment = try #require(directory.segments().last)
        var bytes = directory.bytes(of: segment)
        let offsets = FileStoreCorruptionTests.frameOffsets(bytes)
        #expect(offsets.count == 10)
        let end = FileStoreAtomicAppendTests.recordsEnd(of: segment)
        // The last three records become zeros, exactly from a record boundary: what the fill looks like.
        bytes.replaceSubrange(offsets[7]..<end, with: [UInt8](repeating: 0, count: end - offsets[7]))
        directory.write(bytes, to: segment)
        #expect {
            _ = try FileEventStore(directory: directory.path, configuration: configuration)
        } throws: { error in
            guard let error = error as? EventStoreError, error.code == .corrupted else { return false }
            return error.message.hasPrefix("\(segment)@\(offsets[7]):") && error.message.contains("had reached")
        }
        let repaired = try FileEventStore(
            directory: directory.path,
            configuration: Fixtures.configuration(durability: .groupCommit, recovery: .repair)
        )
        #expect(try await FileStoreCorruptionTests.positions(repaired) == Array(0..<7))
        #expect(repaired.recoveryReport.cuts.map(\.reason) == [.repaired])
        await repaired.close()
    }
}
