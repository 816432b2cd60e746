import Foundation
import KeelCore
import KeelTestSupport
import KeelTesting
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

/// After `close()` returns, a file store holds no file descriptor, although the store object lives
/// on (a projection runner or a service's namespaced store may keep a reference): only a read in
/// flight at that moment keeps the files it reads open, until it ends. Closing and
/// deinitialization never close a descriptor twice, and the directory opens again at once.
@Suite(
    "File stores release their descriptors on close",
    .enabled(if: OpenDescriptors.isAvailable, "lists descriptors through /proc/self/fd"),
    .timeLimit(.minutes(2))
)
struct FileStoreCloseDescriptorTests {
    typealias Fixtures = FileStoreFixtures

    /// A counter several tasks add to.
    final class Counter: Sendable {
        private let value = Atomic(0)
        var current: Int { self.value.load(ordering: .acquiring) }
        @discardableResult
        func add(_ amount: Int = 1) -> Int { self.value.add(amount, ordering: .acquiringAndReleasing).newValue }
    }

    /// Whether `paths` (relative to a store's directory) name only files a read may still hold:
    /// segments of the event log, generation files of the state store.
    static func onlyReadFiles(_ paths: [String]) -> Bool {
        paths.allSatisfy { $0.hasPrefix("segment-") || $0.hasPrefix("state-") }
    }

    // MARK: Event store

    /// Whether `events` are those at `positions`, as ``FileStoreFixtures/populate(_:count:segmentSize:)``
    /// wrote them (event `i` in stream `s-<i % 3>`).
    static func matches(_ events: [RecordedEvent], positions: some Sequence<UInt64>) -> Bool {
        Array(positions) == events.map(\.position)
            && events.allSatisfy { $0.payload == Fixtures.event(Int($0.position)).payload }
    }

    @Test("after close() the event store holds no descriptor, while it is still referenced; the directory reopens")
    func eventStoreReleases() async throws {
        let directory = TemporaryDirectory("fds-events")
        defer { directory.remove() }
        // Small segments: the log spans several files.
        try await Fixtures.populate(directory, count: 200, segmentSize: 4_096)
        let store = try FileEventStore(directory: directory.path, configuration: Fixtures.configuration())
        for index in 200..<220 { try await store.append(Fixtures.event(index), to: StreamID("s-\(index % 3)")) }
        #expect(Self.matches(try await store.readAll(from: 0, limit: .max), positions: 0..<220))
        let before = OpenDescriptors.paths(under: directory.path)
        #expect(Set(before).isSuperset(of: [".", "LOCK", "HIGHWATER", "segment-0000000000000000.log"]))
        #expect(before.filter { $0.hasPrefix("segment-") }.count == directory.segments().count)

        await store.close()
        #expect(OpenDescriptors.paths(under: directory.path) == [])
        // The store is still here; it answers as closed, never with a bad descriptor.
        let read = await #expect(throws: EventStoreError.self) { _ = try await store.readAll(from: 0, limit: 10) }
        #expect(read?.code == .closed)
        let append = await #expect(throws: EventStoreError.self) {
            try await store.append(Fixtures.event(220), to: "s-0")
        }
        #expect(append?.code == .closed)
        await store.close()  // again: nothing to release
        #expect(OpenDescriptors.paths(under: directory.path) == [])

        let reopened = try FileEventStore(directory: directory.path, configuration: Fixtures.configuration())
        #expect(Self.matches(try await reopened.readAll(from: 0, limit: .max), positions: 0..<220))
        await reopened.close()
        #expect(OpenDescriptors.paths(under: directory.path) == [])
        withExtendedLifetime(store) {}
    }

    @Test("a read in flight when the event store closes keeps only its segments open, until it ends")
    func eventStoreReadInFlight() async throws {
        let directory = TemporaryDirectory("fds-events-read")
        defer { directory.remove() }
        try await Fixtures.populate(directory, count: 300, segmentSize: 4_096)
        var configuration = Fixtures.configuration()
        let faults = FileStoreFaults()
        configuration.faults = faults
        let store = try FileEventStore(directory: directory.path, configuration: configuration)
        // The read stops after it took the segments' descriptors, before it reads them.
        let arrived = OneShotSignal()
        let release = DispatchSemaphore(value: 0)
        faults.beforeNextRead {
            arrived.signal()
            release.wait()
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            // The read blocks a thread of its own, not one of the cooperative pool's (two here),
            // which the test and the tests running beside it need meanwhile.
            group.addTask(executorPreference: MarkedExecutor()) {
                let events = try await store.readAll(from: 0, limit: .max)
                #expect(Self.matches(events, positions: 0..<300))
            }
            await arrived.wait()
            await store.close()
            let held = OpenDescriptors.paths(under: directory.path)
            #expect(held == directory.segments().map { String($0.dropFirst(directory.path.count + 1)) })
            // The locks are gone with their descriptors: the directory opens again at once.
            let reopened = try FileEventStore(directory: directory.path, configuration: Fixtures.configuration())
            await reopened.close()
            release.signal()
            try await group.waitForAll()
        }
        #expect(OpenDescriptors.paths(under: directory.path) == [])
    }

    @Test("many reads racing close() read their events or fail as closed; nothing stays open")
    func eventStoreReadsRacingClose() async throws {
        let directory = TemporaryDirectory("fds-events-race")
        defer { directory.remove() }
        let count = 600
        try await Fixtures.populate(directory, count: count, segmentSize: 8_192)
        let store = try FileEventStore(directory: directory.path, configuration: Fixtures.configuration())
        let readers = 8
        let reads = Counter()
        let failures = Counter()
        let closedReads = Counter()
        let started = OneShotSignal()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for reader in 0..<readers {
                group.addTask {
                    var pass = 0
                    var passesAfterClose = 0
                    while passesAfterClose < 20, !Task.isCancelled {
                        pass += 1
                        do throws(EventStoreError) {
                            if pass.isMultiple(of: 2) {
                                let from = UInt64((pass * 37 + reader * 11) % count)
                                let events = try await store.readAll(from: from, limit: 150)
                                let end = min(UInt64(count), from + 150)
                                if !Self.matches(events, positions: from..<end) { failures.add() }
                            } else {
                                let stream = (pass + reader) % 3
                                let events = try await store.readStream(StreamID("s-\(stream)"))
                                let positions = stride(from: stream, to: count, by: 3).map { UInt64($0) }
                                if !Self.matches(events, positions: positions) { failures.add() }
                            }
                            if reads.add() == readers * 4 { started.signal() }
                        } catch {
                            if error.code == .closed {
                                passesAfterClose += 1
                                closedReads.add()
                            } else {
                                failures.add()
                            }
                        }
                        // Two cores: let the closing tasks have a turn beside the readers.
                        if pass.isMultiple(of: 4) { await Task.yield() }
                    }
                }
            }
            // Closes, concurrently: none returns before the store's files are closed.
            for _ in 0..<3 {
                group.addTask {
                    await started.wait()
                    await store.close()
                    #expect(Self.onlyReadFiles(OpenDescriptors.paths(under: directory.path)))
                }
            }
            try await group.waitForAll()
        }
        #expect(failures.current == 0)
        #expect(closedReads.current == readers * 20)
        #expect(OpenDescriptors.paths(under: directory.path) == [])
        let reopened = try FileEventStore(directory: directory.path, configuration: Fixtures.configuration())
        #expect(try await reopened.headPosition() == UInt64(count))
        await reopened.close()
    }

    @Test("deinitializing a closed event store closes no descriptor again")
    func eventStoreDeinitAfterClose() async throws {
        let directory = TemporaryDirectory("fds-events-deinit")
        let other = TemporaryDirectory("fds-events-deinit-other")
        defer {
            directory.remove()
            other.remove()
        }
        var store: FileEventStore? = try FileEventStore(
            directory: directory.path,
            configuration: Fixtures.configuration()
        )
        try await store?.append(Fixtures.event(0), to: "s-0")
        await store?.close()
        // The numbers the store gave back go to the next opens: these files.
        let reused = try Self.openFiles(5, in: other)
        defer { for descriptor in reused { _ = close(descriptor) } }
        weak let released = store
        store = nil
        #expect(released == nil)
        for descriptor in reused { #expect(fcntl(descriptor, F_GETFD) != -1, "descriptor \(descriptor) was closed") }
    }

    /// Opens `count` new files in `directory`.
    static func openFiles(_ count: Int, in directory: TemporaryDirectory) throws -> [Int32] {
        try (0..<count).map { index in
            let descriptor = open("\(directory.path)/reuse-\(index)", O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
            try #require(descriptor >= 0)
            return descriptor
        }
    }

    // MARK: State store

    /// A value of `count` bytes that names `key` and `round`.
    static func value(_ key: Int, round: Int = 0, count: Int = 300) -> [UInt8] {
        FileStateStoreDiskValueTests.value(key * 1_000 + round, count: count + key)
    }

    @Test("after close() the state store holds no descriptor, while it is still referenced; the directory reopens")
    func stateStoreReleases() async throws {
        let directory = TemporaryDirectory("fds-state")
        defer { directory.remove() }
        var configuration = FileStateStore.Configuration()
        configuration.compactionMinimumBytes = Int.max  // only compact() compacts
        let store = try FileStateStore(directory: directory.path, configuration: configuration)
        var batch = KeyValueBatch()
        for key in 0..<32 { batch.put(Self.value(key), forKey: "k\(key)") }
        batch.put([1, 2, 3], forKey: "small")
        try await store.commit(batch, in: "n")
        // A compaction: the first generation's file is given up, the second one read.
        try await store.compact()
        try await store.namespace("n").put(Self.value(40, count: 70_000), forKey: "large")
        for key in 0..<32 { #expect(try store.value(forKey: "k\(key)", in: "n") == Self.value(key)) }
        #expect(try store.value(forKey: "large", in: "n") == Self.value(40, count: 70_000))
        #expect(
            OpenDescriptors.paths(under: directory.path) == [
                ".", "LOCK", "STATEMARK", "state-0000000000000001.log",
            ]
        )

        await store.close()
        #expect(OpenDescriptors.paths(under: directory.path) == [])
        // The store is still here; it answers as closed, never with a bad descriptor.
        for key in ["k0", "large", "small"] {
            let read = #expect(throws: KeyValueStoreError.self) { _ = try store.value(forKey: key, in: "n") }
            #expect(read?.code == .closed)
        }
        let commit = await #expect(throws: KeyValueStoreError.self) {
            try await store.namespace("n").put([9], forKey: "later")
        }
        #expect(commit?.code == .closed)
        let compaction = await #expect(throws: KeyValueStoreError.self) { try await store.compact() }
        #expect(compaction?.code == .closed)
        await store.close()  // again: nothing to release
        #expect(OpenDescriptors.paths(under: directory.path) == [])

        let reopened = try FileStateStore(directory: directory.path, configuration: configuration)
        for key in 0..<32 { #expect(try reopened.value(forKey: "k\(key)", in: "n") == Self.value(key)) }
        #expect(try reopened.value(forKey: "small", in: "n") == [1, 2, 3])
        await reopened.close()
        #expect(OpenDescriptors.paths(under: directory.path) == [])
        withExtendedLifetime(store) {}
    }

    @Test("a read in flight when the state store closes keeps only its file open, until it ends")
    func stateStoreReadInFlight() async throws {
        let directory = TemporaryDirectory("fds-state-read")
        let other = TemporaryDirectory("fds-state-read-other")
        defer {
            directory.remove()
            other.remove()
        }
        var configuration = FileStateStore.Configuration()
        let faults = FileStoreFaults()
        configuration.faults = faults
        let store = try FileStateStore(directory: directory.path, configuration: configuration)
        try await store.namespace("n").put(Self.value(1, count: 5_000), forKey: "k")
        // The read stops after it took the file, before it reads it.
        let arrived = OneShotSignal()
        let release = DispatchSemaphore(value: 0)
        faults.beforeNextRead {
            arrived.signal()
            release.wait()
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            // The read blocks a thread of its own, not one of the cooperative pool's.
            group.addTask(executorPreference: MarkedExecutor()) {
                let read = try store.value(forKey: "k", in: "n")
                #expect(read == Self.value(1, count: 5_000))
            }
            await arrived.wait()
            await store.close()
            #expect(OpenDescriptors.paths(under: directory.path) == ["state-0000000000000000.log"])
            // Descriptors the store closed would be the first the next opens get: the read
            // must not read one of these files.
            let reused = try Self.openFiles(5, in: other)
            defer { for descriptor in reused { _ = close(descriptor) } }
            for descriptor in reused { _ = pwrite(descriptor, [UInt8](repeating: 0xEE, count: 6_000), 6_000, 0) }
            release.signal()
            try await group.waitForAll()
        }
        #expect(OpenDescriptors.paths(under: directory.path) == [])
        let reopened = try FileStateStore(directory: directory.path)
        #expect(try reopened.value(forKey: "k", in: "n") == Self.value(1, count: 5_000))
        await reopened.close()
    }

    @Test(
        "many reads of values on disk racing commits and close() read their bytes or fail as closed; nothing stays open"
    )
    func stateStoreReadsRacingClose() async throws {
        let directory = TemporaryDirectory("fds-state-race")
        defer { directory.remove() }
        let store = try FileStateStore(directory: directory.path)
        let keys = 64
        let rounds = 20
        var batch = KeyValueBatch()
        for key in 0..<keys { batch.put(Self.value(key, round: 0), forKey: "k\(key)") }
        try await store.commit(batch, in: "n")
        let readers = 8
        let reads = Counter()
        let failures = Counter()
        let closedReads = Counter()
        let started = OneShotSignal()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for reader in 0..<readers {
                group.addTask {
                    var pass = 0
                    var passesAfterClose = 0
                    while passesAfterClose < 20, !Task.isCancelled {
                        pass += 1
                        let key = (pass * 7 + reader) % keys
                        do throws(KeyValueStoreError) {
                            let read = try store.value(forKey: "k\(key)", in: "n")
                            // Each key's value names its round: any round will do, other bytes never.
                            if !(0...rounds).contains(where: { read == Self.value(key, round: $0) }) { failures.add() }
                            if reads.add() == readers * 4 { started.signal() }
                        } catch {
                            if error.code == .closed {
                                passesAfterClose += 1
                                closedReads.add()
                            } else {
                                failures.add()
                            }
                        }
                        // Two cores: let the committing and closing tasks have a turn beside the readers.
                        if pass.isMultiple(of: 16) { await Task.yield() }
                    }
                }
            }
            // Commits go on until the store refuses them as closed.
            group.addTask {
                for round in 1...rounds {
                    var batch = KeyValueBatch()
                    for key in stride(from: round % 4, to: keys, by: 4) {
                        batch.put(Self.value(key, round: round), forKey: "k\(key)")
                    }
                    do throws(KeyValueStoreError) {
                        try await store.commit(batch, in: "n")
                        if round.isMultiple(of: 5) { try await store.compact() }
                    } catch {
                        #expect(error.code == .closed)
                        return
                    }
                }
            }
            // Closes, concurrently: none returns before the store's files are closed.
            for _ in 0..<3 {
                group.addTask {
                    await started.wait()
                    await store.close()
                    #expect(Self.onlyReadFiles(OpenDescriptors.paths(under: directory.path)))
                }
            }
            try await group.waitForAll()
        }
        #expect(failures.current == 0)
        #expect(closedReads.current == readers * 20)
        #expect(OpenDescriptors.paths(under: directory.path) == [])
        let reopened = try FileStateStore(directory: directory.path)
        #expect(reopened.keys(withPrefix: "k", in: "n").count == keys)
        await reopened.close()
    }

    @Test("deinitializing a closed state store closes no descriptor again")
    func stateStoreDeinitAfterClose() async throws {
        let directory = TemporaryDirectory("fds-state-deinit")
        let other = TemporaryDirectory("fds-state-deinit-other")
        defer {
            directory.remove()
            other.remove()
        }
        var store: FileStateStore? = try FileStateStore(directory: directory.path)
        try await store?.namespace("n").put(Self.value(1), forKey: "k")
        await store?.close()
        let reused = try Self.openFiles(5, in: other)
        defer { for descriptor in reused { _ = close(descriptor) } }
        weak let released = store
        store = nil
        #expect(released == nil)
        for descriptor in reused { #expect(fcntl(descriptor, F_GETFD) != -1, "descriptor \(descriptor) was closed") }
    }
}
