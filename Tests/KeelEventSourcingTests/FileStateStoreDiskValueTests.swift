import Foundation
import KeelCore
import KeelTestSupport
import Synchronization
import Testing

@testable import KeelEventSourcing

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Values on disk: the index holds where each value lies and its checksum, reads `pread` and check
/// it, compaction copies values from file to file, and reads never race compaction or close.
@Suite("File state store values on disk", .timeLimit(.minutes(2)))
struct FileStateStoreDiskValueTests {
    /// A flag one task sets and others read.
    final class Flag: Sendable {
        private let value = Atomic(false)
        var isSet: Bool { self.value.load(ordering: .acquiring) }
        func set() { self.value.store(true, ordering: .releasing) }
    }

    typealias Support = FileStateStoreTests

    /// A value of `count` bytes that differs from every other key's.
    static func value(_ key: Int, count: Int) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ key &* 7 &+ ($0 >> 8)) }
    }

    /// Sizes around the inline limit (12 bytes), a page, a snapshot chunk and beyond.
    static let sizes = [0, 1, 8, 12, 13, 100, 4_096, 70_000, (1 << 20) + 3, (3 << 20) + 1]

    static func expectAll(
        _ store: FileStateStore,
        sizes: [Int],
        round: Int = 0,
        _ comment: Comment
    ) throws {
        for (key, size) in sizes.enumerated() {
            let read = try store.value(forKey: "k\(key)", in: "n")
            #expect(read == Self.value(key + round, count: size), "\(comment): k\(key), \(size) bytes")
        }
    }

    @Test("values are read back byte-identical: after commit, after compaction, after reopen, after both")
    func roundTrip() async throws {
        let directory = TemporaryDirectory("state-disk-round-trip")
        defer { directory.remove() }
        var configuration = FileStateStore.Configuration()
        configuration.compactionMinimumBytes = Int.max  // only compact() compacts
        let store = try FileStateStore(directory: directory.path, configuration: configuration)
        // One commit per value, then one commit with all of them (several values in one record).
        for (key, size) in Self.sizes.enumerated() {
            try await store.namespace("n").put(Self.value(key + 1, count: size), forKey: "k\(key)")
        }
        var batch = KeyValueBatch()
        for (key, size) in Self.sizes.enumerated() { batch.put(Self.value(key, count: size), forKey: "k\(key)") }
        try await store.commit(batch, in: "n")
        try Self.expectAll(store, sizes: Self.sizes, "after commit")
        try await store.compact()
        try Self.expectAll(store, sizes: Self.sizes, "after compaction")
        try await store.namespace("n").put([9], forKey: "later")
        await store.close()
        let closed = #expect(throws: KeyValueStoreError.self) { _ = try store.value(forKey: "k8", in: "n") }
        #expect(closed?.code == .closed)

        let reopened = try FileStateStore(directory: directory.path, configuration: configuration)
        try Self.expectAll(reopened, sizes: Self.sizes, "after reopen")
        #expect(try reopened.value(forKey: "later", in: "n") == [9])
        try await reopened.compact()
        try Self.expectAll(reopened, sizes: Self.sizes, "after reopen and compaction")
        await reopened.close()
        let again = try FileStateStore(directory: directory.path, configuration: configuration)
        try Self.expectAll(again, sizes: Self.sizes, "after compaction and reopen")
        #expect(again.recoveryReport.isClean)
        await again.close()
    }

    @Test("the index holds no value bytes but those of values of at most 12 bytes")
    func memory() async throws {
        let directory = TemporaryDirectory("state-disk-memory")
        defer { directory.remove() }
        #expect(MemoryLayout<StateIndex.Entry>.size == 16)
        #expect(StateIndex.Entry.inlineCapacity == 12)
        let store = try FileStateStore(directory: directory.path)
        var batch = KeyValueBatch()
        for key in 0..<200 { batch.put(Self.value(key, count: 13 + key * 10), forKey: "large\(key)") }
        try await store.commit(batch, in: "n")
        #expect(store.statistics.inMemoryValueBytes == 0)
        #expect(store.statistics.entries == 200)

        try await store.namespace("n").put(Self.value(1, count: 12), forKey: "small")
        try await store.namespace("n").put(Self.value(2, count: 5), forKey: "smaller")
        #expect(store.statistics.inMemoryValueBytes == 17)
        // A small value overwritten with a large one leaves memory; deletes are counted too.
        try await store.namespace("n").put(Self.value(3, count: 40), forKey: "small")
        #expect(store.statistics.inMemoryValueBytes == 5)
        try await store.namespace("n").delete("smaller")
        #expect(store.statistics.inMemoryValueBytes == 0)
        try await store.compact()
        #expect(store.statistics.inMemoryValueBytes == 0)
        await store.close()
        let reopened = try FileStateStore(directory: directory.path)
        #expect(reopened.statistics.inMemoryValueBytes == 0)
        #expect(reopened.statistics.entries == 201)
        await reopened.close()
    }

    /// Overwrites the byte at `offset` of `file` with its complement, as damage on the disk would.
    static func flipByte(in file: String, at offset: Int) throws {
        let descriptor = open(file, O_RDWR)
        try #require(descriptor >= 0)
        defer { _ = close(descriptor) }
        var byte: UInt8 = 0
        try #require(pread(descriptor, &byte, 1, off_t(offset)) == 1)
        byte = ~byte
        try #require(pwrite(descriptor, &byte, 1, off_t(offset)) == 1)
    }

    /// The offset of the first occurrence of `needle` in `haystack`.
    static func offset(of needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard needle.count <= haystack.count else { return nil }
        for start in 0...(haystack.count - needle.count)
        where haystack[start] == needle[0] && Array(haystack[start..<start + needle.count]) == needle {
            return start
        }
        return nil
    }

    @Test("a value whose bytes change on disk after open fails as corrupted, naming the file; never wrong bytes")
    func flippedValue() async throws {
        let directory = TemporaryDirectory("state-disk-flipped")
        defer { directory.remove() }
        let store = try FileStateStore(directory: directory.path)
        let damaged = Self.value(1, count: 300)
        let intact = Self.value(2, count: 300)
        try await store.namespace("n").put(damaged, forKey: "damaged")
        try await store.namespace("n").put(intact, forKey: "intact")
        try await store.namespace("n").put([1, 2, 3], forKey: "inline")
        let file = try #require(Support.stateFiles(directory).first)
        let offset = try #require(Self.offset(of: damaged, in: directory.bytes(of: file)))
        try Self.flipByte(in: file, at: offset + 150)

        let error = #expect(throws: KeyValueStoreError.self) {
            _ = try store.value(forKey: "damaged", in: "n")
        }
        #expect(error?.code == .corrupted)
        #expect(error?.namespace == "n")
        #expect(error?.message.contains(file) == true)
        #expect(error?.message.contains("@\(offset)") == true)
        // Through the namespace's KeyValueStore too, and every time.
        let again = await #expect(throws: KeyValueStoreError.self) {
            _ = try await store.namespace("n").value(forKey: "damaged")
        }
        #expect(again?.code == .corrupted)
        // The rest of the store answers and commits.
        #expect(try store.value(forKey: "intact", in: "n") == intact)
        #expect(try store.value(forKey: "inline", in: "n") == [1, 2, 3])
        try await store.namespace("n").put([4], forKey: "after")
        // Compaction refuses to copy the damaged value and keeps the current generation.
        let compaction = await #expect(throws: KeyValueStoreError.self) { try await store.compact() }
        #expect(compaction?.code == .corrupted)
        #expect(Support.stateFiles(directory) == [file])
        #expect(try store.value(forKey: "intact", in: "n") == intact)
        // An overwrite replaces the damaged value with a good one.
        try await store.namespace("n").put(Self.value(3, count: 300), forKey: "damaged")
        #expect(try store.value(forKey: "damaged", in: "n") == Self.value(3, count: 300))
        await store.close()
        // Reopening finds the damaged record: strict recovery refuses it, as for any damage.
        let reopen = #expect(throws: KeyValueStoreError.self) { _ = try FileStateStore(directory: directory.path) }
        #expect(reopen?.code == .corrupted)
    }

    @Test("a value the file no longer reaches fails as corrupted")
    func truncatedUnderneath() async throws {
        let directory = TemporaryDirectory("state-disk-truncated")
        defer { directory.remove() }
        let store = try FileStateStore(directory: directory.path)
        try await store.namespace("n").put(Self.value(1, count: 500), forKey: "k")
        let file = try #require(Support.stateFiles(directory).first)
        let size = directory.bytes(of: file).count
        try #require(truncate(file, off_t(size - 100)) == 0)
        let error = #expect(throws: KeyValueStoreError.self) { _ = try store.value(forKey: "k", in: "n") }
        #expect(error?.code == .corrupted)
        #expect(error?.message.contains("the file ends") == true)
        await store.close()
    }

    @Test(
        "reads from many tasks during commits, compactions and close never see other bytes, and fail only as closed once close() is called"
    )
    func readsDuringCompactionAndClose() async throws {
        let directory = TemporaryDirectory("state-disk-concurrent")
        defer { directory.remove() }
        let store = try FileStateStore(directory: directory.path)
        let keys = 64
        // Each key's value names its round: a reader accepts any round, never other bytes.
        func value(_ key: Int, round: Int) -> [UInt8] { Self.value(key * 1_000 + round, count: 200 + key) }
        var batch = KeyValueBatch()
        for key in 0..<keys { batch.put(value(key, round: 0), forKey: "k\(key)") }
        try await store.commit(batch, in: "n")
        let rounds = TestEnvironment.scaled(100)
        let readers = 4
        // Readers go on until the store is closed, and some passes beyond.
        let closing = Flag()
        let closed = Flag()
        let failures = try await withThrowingTaskGroup(of: Int.self) { group in
            for reader in 0..<readers {
                group.addTask {
                    var failures = 0
                    var pass = 0
                    var passesAfterClose = 0
                    while passesAfterClose < 100 {
                        if closed.isSet { passesAfterClose += 1 }
                        pass += 1
                        let key = (pass * 7 + reader) % keys
                        do throws(KeyValueStoreError) {
                            let read = try store.value(forKey: "k\(key)", in: "n")
                            if !(0...rounds).contains(where: { read == value(key, round: $0) }) { failures += 1 }
                        } catch {
                            if error.code != .closed || !closing.isSet { failures += 1 }
                        }
                        // Two cores: let the committing task have a turn beside the readers.
                        if pass % 16 == 0 { await Task.yield() }
                    }
                    return failures
                }
            }
            group.addTask {
                for round in 1...rounds {
                    var batch = KeyValueBatch()
                    for key in stride(from: round % 4, to: keys, by: 4) {
                        batch.put(value(key, round: round), forKey: "k\(key)")
                    }
                    try await store.commit(batch, in: "n")
                    try await store.compact()
                }
                closing.set()
                await store.close()
                closed.set()
                return 0
            }
            return try await group.reduce(0, +)
        }
        #expect(failures == 0)
        #expect(store.statistics.compactions == rounds)
        // After close every read fails as closed; the store kept no file open.
        for key in 0..<keys {
            let error = #expect(throws: KeyValueStoreError.self) { _ = try store.value(forKey: "k\(key)", in: "n") }
            #expect(error?.code == .closed)
        }
        #expect(Support.stateFiles(directory).count == 1)
        if OpenDescriptors.isAvailable { #expect(OpenDescriptors.paths(under: directory.path) == []) }
        let reopened = try FileStateStore(directory: directory.path)
        for key in 0..<keys {
            let read = try reopened.value(forKey: "k\(key)", in: "n")
            #expect((0...rounds).contains { read == value(key, round: $0) })
        }
        await reopened.close()
    }
}
