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

/// The file state store: atomic commits across namespaces, compaction that frees disk, recovery
/// that cuts only torn tails and names every other damage.
@Suite("File state store", .timeLimit(.minutes(2)))
struct FileStateStoreTests {
    static func configuration(
        minimumBytes: Int = 4 << 20,
        maxRecordSize: Int = 64 << 20,
        recovery: FileEventStore.Recovery = .strict,
        faults: FileStoreFaults? = nil,
        durability: FileEventStore.Durability = .groupCommit
    ) -> FileStateStore.Configuration {
        var configuration = FileStateStore.Configuration()
        configuration.durability = durability
        configuration.compactionMinimumBytes = minimumBytes
        configuration.maxRecordSize = maxRecordSize
        configuration.recovery = recovery
        configuration.faults = faults
        return configuration
    }

    static func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    /// Every entry of every namespace.
    static func contents(_ store: some StateStore) throws(KeyValueStoreError) -> [String: [String: [UInt8]]] {
        var result: [String: [String: [UInt8]]] = [:]
        for namespace in store.namespaces() {
            for key in store.keys(withPrefix: "", in: namespace) {
                result[namespace, default: [:]][key] = try store.value(forKey: key, in: namespace)
            }
        }
        return result
    }

    static func stateFiles(_ directory: TemporaryDirectory) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.filter { $0.hasPrefix("state-") }.sorted().map { "\(directory.path)/\($0)" }
    }

    /// Commits `count` batches that each write key `k<i>` in namespaces `a` and `b`.
    static func populate(_ store: FileStateStore, count: Int, from start: Int = 0) async throws {
        for index in start..<start + count {
            var changes = StateChanges()
            var first = KeyValueBatch()
            first.put(Self.bytes("value \(index)"), forKey: "k\(index)")
            var second = KeyValueBatch()
            second.put(Self.bytes("twin \(index)"), forKey: "k\(index)")
            changes.append(first, in: "a")
            changes.append(second, in: "b")
            try await store.commit(changes)
        }
    }

    static func expectCorrupted(
        _ directory: TemporaryDirectory,
        mentioning fragment: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        do {
            let store = try FileStateStore(directory: directory.path, configuration: Self.configuration())
            Issue.record("the damaged store opened: \(store.recoveryReport)", sourceLocation: sourceLocation)
        } catch {
            #expect(error.code == .corrupted, "\(error)", sourceLocation: sourceLocation)
            #expect(error.message.contains(fragment), "\(error.message)", sourceLocation: sourceLocation)
        }
    }

    @Test("commits to several namespaces survive a reopen, each namespace apart")
    func roundTrip() async throws {
        let directory = TemporaryDirectory("state-round-trip")
        defer { directory.remove() }
        let store = try FileStateStore(directory: directory.path)
        try await Self.populate(store, count: 20)
        let settings = store.namespace("settings")
        try await settings.put(Self.bytes("dark"), forKey: "theme")
        try await settings.delete("theme")
        try await settings.put(Self.bytes("light"), forKey: "theme")
        try await store.namespace("a").delete("k3")
        #expect(try await settings.value(forKey: "theme") == Self.bytes("light"))
        #expect(try await store.namespace("a").value(forKey: "theme") == nil)
        #expect(store.keys(withPrefix: "k1", in: "b") == ["k1"] + (10..<20).map { "k\($0)" })
        let before = try Self.contents(store)
        await store.close()

        let reopened = try FileStateStore(directory: directory.path)
        #expect(reopened.recoveryReport.isClean)
        #expect(reopened.recoveryReport.batches == 24)
        #expect(try Self.contents(reopened) == before)
        #expect(reopened.namespaces() == ["a", "b", "settings"])
        #expect(try reopened.value(forKey: "k3", in: "a") == nil)
        #expect(try reopened.value(forKey: "k3", in: "b") == Self.bytes("twin 3"))
        await reopened.close()
    }

    @Test(
        "the file and in-memory stores agree with a plain model on a random history of puts, deletes and prefix deletes"
    )
    func twins() async throws {
        let directory = TemporaryDirectory("state-twins")
        defer { directory.remove() }
        let seed = UInt64.random(in: 0...UInt64.max)
        TestLog.line("state twins seed \(seed)")
        let random = RandomSource(seed: seed)
        let file = try FileStateStore(directory: directory.path, configuration: Self.configuration(minimumBytes: 2_048))
        let memory = InMemoryStateStore()
        // The plain model: a dictionary per namespace, prefix deletes by filtering.
        var model: [String: [String: [UInt8]]] = [:]
        var prefixDeletes = 0
        for _ in 0..<300 {
            var changes = StateChanges()
            for _ in 0..<Int(random.next() % 3 + 1) {
                let namespace = "ns\(random.next() % 3)"
                var batch = KeyValueBatch()
                for _ in 0..<Int(random.next() % 4 + 1) {
                    let key = "key\(random.next() % 20)"
                    switch random.next() % 16 {
                    case 0:
                        // "key1" also drops key10…key19; "" drops the whole namespace.
                        let prefix = ["", "key", "key1", "key2", "other"][Int(random.next() % 5)]
                        batch.deleteAll(withPrefix: prefix)
                        model[namespace] = model[namespace]?.filter { !$0.key.hasPrefix(prefix) }
                        prefixDeletes += 1
                    case 1...4:
                        batch.delete(key)
                        model[namespace]?[key] = nil
                    default:
                        let value = (0..<Int(random.next() % 64)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
                        batch.put(value, forKey: key)
                        model[namespace, default: [:]][key] = value
                    }
                }
                changes.append(batch, in: namespace)
            }
            try await file.commit(changes)
            try await memory.commit(changes)
        }
        model = model.filter { !$0.value.isEmpty }
        #expect(prefixDeletes > 0)
        #expect(try Self.contents(file) == model)
        #expect(try Self.contents(memory) == model)
        // What a snapshot of the model would take, entry by entry.
        let liveBytes = model.reduce(0) { total, namespace in
            namespace.value.reduce(total) { $0 + 12 + namespace.key.utf8.count + $1.key.utf8.count + $1.value.count }
        }
        #expect(file.statistics.liveBytes == liveBytes)
        #expect(file.statistics.compactions > 0)
        await file.close()
        let reopened = try FileStateStore(directory: directory.path)
        #expect(try Self.contents(reopened) == model)
        #expect(reopened.statistics.liveBytes == liveBytes)
        await reopened.close()
    }

    @Test(
        "a prefix delete is one operation: it drops keys before it in its namespace only, and survives reopen and compaction"
    )
    func prefixDelete() async throws {
        let directory = TemporaryDirectory("state-prefix-delete")
        defer { directory.remove() }
        let store = try FileStateStore(directory: directory.path)
        for index in 0..<1_000 {
            var changes = StateChanges()
            var batch = KeyValueBatch()
            batch.put(Array(repeating: UInt8(index % 256), count: 40), forKey: "m/\(index)")
            changes.append(batch, in: "model")
            changes.append(batch, in: "other")
            try await store.commit(changes)
        }
        try await store.namespace("model").put([7], forKey: "c")
        let fileBefore = store.statistics.fileBytes
        var reset = KeyValueBatch()
        reset.put([1], forKey: "m/early")
        reset.deleteAll(withPrefix: "m/")
        reset.put([2], forKey: "m/late")
        try await store.namespace("model").commit(reset)
        // One record of three operations, not a delete per key.
        #expect(store.statistics.fileBytes - fileBefore < 200)
        #expect(store.keys(withPrefix: "", in: "model") == ["c", "m/late"])
        #expect(store.keys(withPrefix: "", in: "other").count == 1_000)
        let expected = try Self.contents(store)
        #expect(
            store.statistics.liveBytes
                == expected.reduce(0) { total, namespace in
                    namespace.value.reduce(total) {
                        $0 + 12 + namespace.key.utf8.count + $1.key.utf8.count + $1.value.count
                    }
                }
        )
        await store.close()

        let reopened = try FileStateStore(directory: directory.path)
        #expect(try Self.contents(reopened) == expected)
        try await reopened.compact()
        #expect(try Self.contents(reopened) == expected)
        await reopened.close()
        let compacted = try FileStateStore(directory: directory.path)
        #expect(try Self.contents(compacted) == expected)
        await compacted.close()
    }

    @Test("after close, commits and reads of values fail as closed in both stores; keys still answer")
    func closed() async throws {
        let directory = TemporaryDirectory("state-closed")
        defer { directory.remove() }
        let file = try FileStateStore(directory: directory.path)
        let memory = InMemoryStateStore()
        try await file.namespace("n").put([1], forKey: "k")
        try await memory.namespace("n").put([1], forKey: "k")
        await file.close()
        memory.close()
        for store in [file as any StateStore, memory] {
            let error = await #expect(throws: KeyValueStoreError.self) {
                try await store.namespace("n").put([2], forKey: "k")
            }
            #expect(error?.code == .closed)
            let read = #expect(throws: KeyValueStoreError.self) { _ = try store.value(forKey: "k", in: "n") }
            #expect(read?.code == .closed)
            #expect(store.keys(withPrefix: "", in: "n") == ["k"])
            #expect(store.namespaces() == ["n"])
        }
        await file.close()  // again: nothing happens
    }

    @Test("a second opener of the directory is refused while the first holds it")
    func locked() async throws {
        let directory = TemporaryDirectory("state-locked")
        defer { directory.remove() }
        let store = try FileStateStore(directory: directory.path)
        let error = #expect(throws: KeyValueStoreError.self) {
            _ = try FileStateStore(directory: directory.path)
        }
        #expect(error?.code == .storeFailed)
        #expect((error?.cause as? EventStoreError)?.code == .locked)
        await store.close()
        let again = try FileStateStore(directory: directory.path)
        await again.close()
    }

    @Test("a commit larger than maxRecordSize is refused whole and the store goes on")
    func tooLarge() async throws {
        let directory = TemporaryDirectory("state-too-large")
        defer { directory.remove() }
        let store = try FileStateStore(
            directory: directory.path,
            configuration: Self.configuration(maxRecordSize: 4_096)
        )
        var batch = KeyValueBatch()
        batch.put([1], forKey: "small")
        batch.put([UInt8](repeating: 7, count: 5_000), forKey: "big")
        let error = await #expect(throws: KeyValueStoreError.self) {
            try await store.commit(batch, in: "n")
        }
        #expect(error?.code == .tooLarge)
        #expect(try store.value(forKey: "small", in: "n") == nil)
        try await store.namespace("n").put([2], forKey: "small")
        #expect(try store.value(forKey: "small", in: "n") == [2])
        await store.close()
    }

    @Test("compaction frees the disk space of overwritten entries, and state may outgrow one record")
    func compactionFreesSpace() async throws {
        let directory = TemporaryDirectory("state-compaction")
        defer { directory.remove() }
        // Records of at most 8 KiB; the state grows to about 400 KiB. 2,400 commits in a row: not
        // synced, since this test is about space, not durability (an fsync each took ~6 s alone,
        // and past the time limit on a busy machine).
        let store = try FileStateStore(
            directory: directory.path,
            configuration: Self.configuration(minimumBytes: 64 << 10, maxRecordSize: 8 << 10, durability: .none)
        )
        let value = [UInt8](repeating: 0x5A, count: 1_000)
        for round in 0..<6 {
            for key in 0..<400 {
                var batch = KeyValueBatch()
                batch.put(value + [UInt8(round)], forKey: "key\(key)")
                try await store.commit(batch, in: "model")
            }
        }
        let statistics = store.statistics
        #expect(statistics.compactions > 0)
        #expect(statistics.entries == 400)
        #expect(statistics.liveBytes > 400_000)
        // About 2.4 MB were committed; the disk holds one generation, within the ratio.
        let files = Self.stateFiles(directory)
        #expect(files.count == 1)
        let onDisk = files.reduce(0) { $0 + directory.bytes(of: $1).count }
        #expect(onDisk == statistics.fileBytes)
        #expect(Double(onDisk) <= 2 * Double(statistics.liveBytes) + 64)
        try await store.compact()
        #expect(store.statistics.generation == statistics.generation + 1)
        #expect(Self.stateFiles(directory).count == 1)
        #expect(store.statistics.fileBytes < statistics.liveBytes + 4_096)
        let before = try Self.contents(store)
        await store.close()

        let reopened = try FileStateStore(
            directory: directory.path,
            configuration: Self.configuration(maxRecordSize: 8 << 10)
        )
        #expect(reopened.recoveryReport.isClean)
        #expect(try Self.contents(reopened) == before)
        #expect(try reopened.value(forKey: "key7", in: "model") == value + [5])
        await reopened.close()
    }

    @Test("commits and compactions from many tasks, with readers: nothing lost, nothing torn")
    func contention() async throws {
        let directory = TemporaryDirectory("state-contention")
        defer { directory.remove() }
        let store = try FileStateStore(
            directory: directory.path,
            configuration: Self.configuration(minimumBytes: 8_192)
        )
        let writers = 8
        let perWriter = TestEnvironment.scaled(60)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for writer in 0..<writers {
                group.addTask {
                    for index in 0..<perWriter {
                        // The two keys of one commit always agree.
                        var changes = StateChanges()
                        var batch = KeyValueBatch()
                        batch.put(Self.bytes("\(index)"), forKey: "w\(writer)")
                        changes.append(batch, in: "left")
                        changes.append(batch, in: "right")
                        try await store.commit(changes)
                        if index % 20 == 0 { try await store.compact() }
                    }
                }
            }
            group.addTask {
                for _ in 0..<200 {
                    for writer in 0..<writers {
                        let left = try store.value(forKey: "w\(writer)", in: "left").flatMap {
                            Int(String(decoding: $0, as: UTF8.self))
                        }
                        let right = try store.value(forKey: "w\(writer)", in: "right").flatMap {
                            Int(String(decoding: $0, as: UTF8.self))
                        }
                        // Reads are not atomic across namespaces, but never go backwards.
                        if let left, let right { #expect(right >= left - 1) }
                    }
                    await Task.yield()
                }
            }
            try await group.waitForAll()
        }
        #expect(store.statistics.commits == UInt64(writers * perWriter))
        for writer in 0..<writers {
            #expect(try store.value(forKey: "w\(writer)", in: "left") == Self.bytes("\(perWriter - 1)"))
        }
        let before = try Self.contents(store)
        await store.close()
        let reopened = try FileStateStore(directory: directory.path)
        #expect(try Self.contents(reopened) == before)
        await reopened.close()
    }

    @Test("concurrent commits under group commit share their fsyncs")
    func groupCommitSharesSyncs() async throws {
        let directory = TemporaryDirectory("state-syncs")
        defer { directory.remove() }
        let faults = FileStoreFaults()
        let store = try FileStateStore(directory: directory.path, configuration: Self.configuration(faults: faults))
        let committers = 16
        let perCommitter = 20
        try await withThrowingTaskGroup(of: Void.self) { group in
            for committer in 0..<committers {
                group.addTask {
                    for index in 0..<perCommitter {
                        try await store.namespace("n\(committer)").put(Self.bytes("\(index)"), forKey: "k")
                    }
                }
            }
            try await group.waitForAll()
        }
        let commits = committers * perCommitter
        TestLog.line("state store: \(commits) commits, \(faults.syncs) fsyncs")
        #expect(faults.syncs < commits)
        #expect(faults.writes <= faults.syncs + 1)
        await store.close()
    }
}
