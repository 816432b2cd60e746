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

/// The high-water mark: two slots, the newer valid one wins, and a store keeps it up to date.
@Suite("File event store high-water mark", .timeLimit(.minutes(2)))
struct FileStoreHighWaterMarkTests {
    typealias Fixtures = FileStoreFixtures

    @Test("a close leaves a mark covering the whole log; a torn newer slot falls back to the older one")
    func marksAndSlots() async throws {
        let directory = TemporaryDirectory("mark-slots")
        defer { directory.remove() }
        try await Fixtures.populate(directory, count: 12, segmentSize: 1_000)
        let segments = directory.segments()
        let mark = try #require(try HighWaterMark.read(directory: directory.path))
        #expect(mark.segment == segments.count - 1)
        #expect(mark.segmentSize == directory.bytes(of: segments[segments.count - 1]).count)
        #expect(mark.events == 12)

        // Tear the newer slot: the older one (an earlier, smaller mark) is read instead.
        var bytes = directory.bytes(of: directory.markFile)
        let newer = Int(mark.sequence % 2) * HighWaterMark.slotSize
        bytes[newer + 20] ^= 0xFF
        directory.write(bytes, to: directory.markFile)
        let older = try #require(try HighWaterMark.read(directory: directory.path))
        #expect(older.sequence == mark.sequence - 1)
        #expect(older.events <= mark.events)
        let store = try FileEventStore(
            directory: directory.path,
            configuration: Fixtures.configuration(segmentSize: 1_000)
        )
        #expect(try await store.readAll(from: 0, limit: .max).count == 12)
        #expect(store.recoveryReport.isClean)
        await store.close()
    }

    @Test("concurrent appends under group commit share their fsyncs")
    func groupCommitSharesSyncs() async throws {
        let directory = TemporaryDirectory("mark-syncs")
        defer { directory.remove() }
        var configuration = Fixtures.configuration(durability: .groupCommit)
        let faults = FileStoreFaults()
        configuration.faults = faults
        let store = try FileEventStore(directory: directory.path, configuration: configuration)
        let appenders = 16
        let perAppender = 20
        try await withThrowingTaskGroup(of: Void.self) { group in
            for appender in 0..<appenders {
                group.addTask {
                    for index in 0..<perAppender {
                        try await store.append(Fixtures.event(appender * 100 + index), to: StreamID("g-\(appender)"))
                    }
                }
            }
            try await group.waitForAll()
        }
        await store.close()
        let appends = appenders * perAppender
        // One sync per write, one write per batch: fewer syncs than appends means appends shared them.
        #expect(faults.syncs == faults.writes)
        #expect(faults.syncs < appends * 3 / 4, "\(faults.syncs) syncs for \(appends) appends")
    }

    @Test("the appenders of a batch wake the writer once, not once per append")
    func appendersWakeTheWriterOncePerWait() async throws {
        let directory = TemporaryDirectory("mark-wakeups")
        defer { directory.remove() }
        var configuration = Fixtures.configuration(durability: .groupCommit)
        let faults = FileStoreFaults()
        configuration.faults = faults
        let store = try FileEventStore(directory: directory.path, configuration: configuration)
        let appenders = 16
        let perAppender = 20
        try await withThrowingTaskGroup(of: Void.self) { group in
            for appender in 0..<appenders {
                group.addTask {
                    for index in 0..<perAppender {
                        try await store.append(Fixtures.event(appender * 100 + index), to: StreamID("w-\(appender)"))
                    }
                }
            }
            try await group.waitForAll()
        }
        await store.close()
        let appends = appenders * perAppender
        // The writer sleeps at most twice per batch (for a first append, then for the rest of the
        // batch), and only the append it waits for signals it; signalling it on every append would
        // make this `appends`.
        let counts = "\(faults.writerWakeups) writer wakeups, \(faults.writes) batches, \(appends) appends"
        #expect(faults.writerWakeups <= 2 * faults.writes + 2, "\(counts)")
        #expect(faults.writerWakeups < appends, "\(counts)")
    }

    @Test(
        "an append cut off below the high-water mark is damage, not a torn tail, even where its torn record lies past it"
    )
    func openAppendStartingBelowTheMark() async throws {
        let directory = TemporaryDirectory("mark-open-append")
        defer { directory.remove() }
        let store = try FileEventStore(directory: directory.path, configuration: Fixtures.configuration())
        try await store.append(Fixtures.event(0), to: "a-1")
        try await store.append((1..<4).map { Fixtures.event($0) }, to: "b-1", expecting: .any)
        await store.close()
        let segment = try #require(directory.segments().first)
        let bytes = directory.bytes(of: segment)
        let offsets = FileStoreCorruptionTests.frameOffsets(bytes)
        try #require(offsets.count == 4)
        // A mark that reaches into the append (its first record), and the append torn in its last
        // record, past the mark.
        let old = try #require(try HighWaterMark.read(directory: directory.path))
        let mark = HighWaterMark(sequence: old.sequence + 1, segment: 0, segmentSize: offsets[2], events: 2, changes: 0)
        var file = directory.bytes(of: directory.markFile)
        file.replaceSubrange(Int(mark.sequence % 2) * 64..<Int(mark.sequence % 2) * 64 + 64, with: mark.encode())
        directory.write(file, to: directory.markFile)
        directory.write(Array(bytes[..<(offsets[3] + 5)]), to: segment)
        #expect {
            _ = try FileEventStore(directory: directory.path, configuration: Fixtures.configuration())
        } throws: { error in
            // The torn record itself is named, not a shortfall found after cutting the append.
            guard let error = error as? EventStoreError, error.code == .corrupted else { return false }
            return error.message.hasPrefix("\(segment)@\(offsets[3]):")
        }
    }
}
