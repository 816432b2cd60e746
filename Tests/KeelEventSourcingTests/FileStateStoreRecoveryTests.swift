import Foundation
import KeelCore
import KeelTestSupport
import Testing

@testable import KeelEventSourcing

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// What opening a damaged or interrupted state store does: a torn tail is cut and reported;
/// every other damage fails a strict open naming file and offset; failed writes leave nothing.
@Suite("File state store recovery", .timeLimit(.minutes(2)))
struct FileStateStoreRecoveryTests {
    typealias Support = FileStateStoreTests

    /// The frames after a generation file's header: offset and size.
    static func frames(_ bytes: [UInt8]) -> [(offset: Int, size: Int)] {
        var frames: [(Int, Int)] = []
        var offset = StateFile.headerSize
        while offset + 8 <= bytes.count {
            let length =
                Int(bytes[offset]) | Int(bytes[offset + 1]) << 8 | Int(bytes[offset + 2]) << 16 | Int(bytes[offset + 3])
                << 24
            guard offset + 8 + length <= bytes.count else { break }
            frames.append((offset, 8 + length))
            offset += 8 + length
        }
        return frames
    }

    /// A closed store of 10 two-namespace commits; returns its one generation file.
    static func closedStore(_ directory: TemporaryDirectory) async throws -> String {
        let store = try FileStateStore(directory: directory.path, configuration: Support.configuration())
        try await Support.populate(store, count: 10)
        await store.close()
        return try #require(Support.stateFiles(directory).last)
    }

    @Test("a record torn at the end, or a zero-filled tail inside one, is cut and reported")
    func tornTail() async throws {
        for zeroFilled in [false, true] {
            let directory = TemporaryDirectory("state-torn")
            defer { directory.remove() }
            let store = try FileStateStore(directory: directory.path, configuration: Support.configuration())
            try await Support.populate(store, count: 10)
            await store.close()
            let file = try #require(Support.stateFiles(directory).last)
            // As after a crash: the last mark written covers only the start of the file (the
            // close wrote one covering all of it; write an older-looking one over it).
            let mark = try #require(
                try HighWaterMark.read(directory: directory.path, fileName: FileStateStore.markFileName)
            )
            let early = FileStateStore.mark(
                sequence: mark.sequence + 1,
                generation: UInt64(mark.segment),
                size: 100,
                batches: 0
            )
            let markFile = try FileDescriptor.open(directory.path + "/STATEMARK", flags: O_RDWR)
            try early.write(to: markFile)
            markFile.close()

            var bytes = directory.bytes(of: file)
            let last = try #require(Self.frames(bytes).last)
            if zeroFilled {
                for index in (last.offset + 5)..<bytes.count { bytes[index] = 0 }
            } else {
                bytes.removeLast(3)
            }
            directory.write(bytes, to: file)
            let recorder = InMemoryRecorder()
            let reopened = try FileStateStore(
                directory: directory.path,
                configuration: Support.configuration(),
                telemetry: recorder
            )
            let cut = try #require(reopened.recoveryReport.cuts.first)
            #expect(cut.reason == .tornTail)
            #expect(cut.offset == last.offset)
            // The cut is logged as a warning, with where and how much.
            let logged = recorder.logs(from: "keel.store")
            #expect(logged.map(\.level) == [.warning])
            #expect(logged.first?.metadata["reason"] == "tornTail")
            #expect(logged.first?.metadata["offset"] == "\(last.offset)")
            #expect(logged.first?.metadata["file"] == cut.file)
            #expect(
                logged.first?.message.hasPrefix("the state store in \(directory.path) recovered with a cut") == true
            )
            #expect(reopened.recoveryReport.batches == 9)
            #expect(try reopened.value(forKey: "k8", in: "a") == Support.bytes("value 8"))
            #expect(try reopened.value(forKey: "k9", in: "a") == nil)
            #expect(try reopened.value(forKey: "k9", in: "b") == nil)  // the torn commit is gone whole
            try await reopened.namespace("a").put([1], forKey: "after")
            await reopened.close()
            let again = try FileStateStore(directory: directory.path)
            #expect(again.recoveryReport.isClean)
            #expect(try again.value(forKey: "after", in: "a") == [1])
            await again.close()
        }
    }

    @Test("a damaged record with intact ones after it fails a strict open, naming file and offset; repair cuts it")
    func damageInTheMiddle() async throws {
        let directory = TemporaryDirectory("state-middle")
        defer { directory.remove() }
        let file = try await Self.closedStore(directory)
        var bytes = directory.bytes(of: file)
        let frames = Self.frames(bytes)
        let damaged = frames[frames.count - 4]
        bytes[damaged.offset + 12] ^= 0x10
        directory.write(bytes, to: file)
        Support.expectCorrupted(directory, mentioning: "\(file)@\(damaged.offset)")

        let repaired = try FileStateStore(
            directory: directory.path,
            configuration: Support.configuration(recovery: .repair)
        )
        let cut = try #require(repaired.recoveryReport.cuts.first)
        #expect(cut.reason == .repaired)
        #expect(cut.offset == damaged.offset)
        #expect(repaired.recoveryReport.batches == 6)
        await repaired.close()
        let again = try FileStateStore(directory: directory.path)
        #expect(again.recoveryReport.isClean)
        await again.close()
    }

    @Test("a commit removed from the middle is reported as missing, not skipped")
    func removedCommit() async throws {
        let directory = TemporaryDirectory("state-removed")
        defer { directory.remove() }
        let file = try await Self.closedStore(directory)
        var bytes = directory.bytes(of: file)
        let removed = Self.frames(bytes)[5]
        bytes.removeSubrange(removed.offset..<removed.offset + removed.size)
        directory.write(bytes, to: file)
        Support.expectCorrupted(directory, mentioning: "a batch is missing")
    }

    @Test("a file shortened at a record boundary, or a deleted generation, is reported against the mark")
    func shortfall() async throws {
        let directory = TemporaryDirectory("state-short")
        defer { directory.remove() }
        let file = try await Self.closedStore(directory)
        let bytes = directory.bytes(of: file)
        let last = try #require(Self.frames(bytes).last)
        directory.write(Array(bytes[..<last.offset]), to: file)
        Support.expectCorrupted(directory, mentioning: "short of the high-water mark")

        try FileManager.default.removeItem(atPath: file)
        Support.expectCorrupted(directory, mentioning: "high-water mark names generation")
    }

    @Test("a compaction cut short is removed; a finished one's leftover generation too")
    func interruptedCompaction() async throws {
        let directory = TemporaryDirectory("state-interrupted")
        defer { directory.remove() }
        let file = try await Self.closedStore(directory)
        let generation = try #require(StateFile.generation(of: (file as NSString).lastPathComponent))
        // The next generation, with a header and half a snapshot chunk, as a crash leaves it.
        var next = StateFile.header(generation: generation + 1)
        var chunk: [UInt8] = []
        var entries = StateEntries()
        entries.apply([.put(key: "k", value: [1, 2, 3])], in: "a")
        try StateFile.snapshotBodies(sequence: 10, entries: entries) { body throws(EventStoreError) in
            FileRecord.appendFrame(of: body, to: &chunk)
        }
        next += chunk.prefix(chunk.count / 2)
        let nextPath = directory.path + "/" + StateFile.name(generation: generation + 1)
        directory.write(next, to: nextPath)
        let store = try FileStateStore(directory: directory.path)
        let cut = try #require(store.recoveryReport.cuts.first)
        #expect(cut.removedFile)
        #expect(cut.detail.contains("compaction cut short"))
        #expect(store.recoveryReport.batches == 10)
        #expect(Support.stateFiles(directory) == [file])
        // A finished compaction whose old generation was not removed yet.
        let old = directory.bytes(of: file)
        try await store.compact()
        await store.close()
        directory.write(old, to: file)
        #expect(Support.stateFiles(directory).count == 2)
        let reopened = try FileStateStore(directory: directory.path)
        #expect(reopened.recoveryReport.isClean)
        #expect(reopened.recoveryReport.generation == generation + 1)
        #expect(Support.stateFiles(directory).count == 1)
        #expect(try reopened.value(forKey: "k9", in: "b") == Support.bytes("twin 9"))
        await reopened.close()
    }

    @Test("a misnamed state file or a damaged header is named, not ignored")
    func misnamedAndHeader() async throws {
        let directory = TemporaryDirectory("state-misnamed")
        defer { directory.remove() }
        let file = try await Self.closedStore(directory)
        directory.write([1, 2, 3], to: directory.path + "/state-12.log")
        Support.expectCorrupted(directory, mentioning: "state-12.log@0")
        try FileManager.default.removeItem(atPath: directory.path + "/state-12.log")
        var bytes = directory.bytes(of: file)
        bytes[3] ^= 1
        directory.write(bytes, to: file)
        Support.expectCorrupted(directory, mentioning: "bad magic")
    }

    @Test("a write that fails part-way, or a failed fsync, leaves nothing of its commit; the store refuses more")
    func failedWrites() async throws {
        for failSync in [false, true] {
            let directory = TemporaryDirectory("state-faults")
            defer { directory.remove() }
            let faults = FileStoreFaults()
            let store = try FileStateStore(
                directory: directory.path,
                configuration: Support.configuration(faults: faults)
            )
            try await Support.populate(store, count: 3)
            if failSync {
                faults.failSync(number: faults.syncs + 1, code: EIO)
            } else {
                faults.failWrite(number: faults.writes + 1, keepingBytes: 20, code: ENOSPC)
            }
            let error = await #expect(throws: KeyValueStoreError.self) {
                try await Support.populate(store, count: 1, from: 3)
            }
            #expect(error?.code == .storeFailed)
            let later = await #expect(throws: KeyValueStoreError.self) {
                try await store.namespace("a").put([1], forKey: "later")
            }
            #expect(later?.code == .storeFailed)
            #expect(try store.value(forKey: "k3", in: "a") == nil)
            await store.close()
            let reopened = try FileStateStore(directory: directory.path)
            #expect(reopened.recoveryReport.isClean, "\(reopened.recoveryReport)")
            #expect(reopened.recoveryReport.batches == 3)
            #expect(try reopened.value(forKey: "k2", in: "b") == Support.bytes("twin 2"))
            #expect(try reopened.value(forKey: "k3", in: "a") == nil)
            await reopened.close()
        }
    }

    @Test("a compaction that fails leaves the current generation whole and in use")
    func failedCompaction() async throws {
        let directory = TemporaryDirectory("state-compaction-fault")
        defer { directory.remove() }
        let faults = FileStoreFaults()
        let store = try FileStateStore(directory: directory.path, configuration: Support.configuration(faults: faults))
        try await Support.populate(store, count: 5)
        faults.failWrite(number: faults.writes + 1, keepingBytes: 10, code: ENOSPC)
        let error = await #expect(throws: KeyValueStoreError.self) { try await store.compact() }
        #expect(error?.code == .storeFailed)
        #expect(Support.stateFiles(directory).count == 1)
        try await Support.populate(store, count: 2, from: 5)
        #expect(store.statistics.compactions == 0)
        await store.close()
        let reopened = try FileStateStore(directory: directory.path)
        #expect(reopened.recoveryReport.isClean)
        #expect(reopened.recoveryReport.batches == 7)
        await reopened.close()
    }
}
