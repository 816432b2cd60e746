import Foundation
import KeelCore
import KeelEventSourcing

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The event a store benchmark appends: a small JSON payload, as an application would write.
struct BenchRegistered: Codable, Sendable {
    var userID: Int
    var email: String
    var name: String
}

/// What the store scenarios share: scratch directories, payloads, events.
enum StoreBench {
    /// Makes a fresh scratch directory under the temporary directory.
    /// - Parameter label: Part of the directory's name.
    /// - Returns: Its path.
    static func makeDirectory(_ label: String) -> String {
        let path =
            FileManager.default.temporaryDirectory.path + "/keel-bench-\(label)-\(UInt64.random(in: 0...UInt64.max))"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// The JSON payload of the `index`th event.
    static func payload(_ index: Int) -> [UInt8] {
        let event = BenchRegistered(userID: index, email: "user\(index)@example.com", name: "User number \(index)")
        return Array((try? JSONEncoder().encode(event)) ?? Data())
    }

    /// The `index`th event, with a fixed type and metadata derived from `index`.
    static func event(_ index: Int) -> EventData {
        EventData(
            type: "user.registered",
            metadata: EventMetadata(id: EventID(high: 7, low: UInt64(index)), time: Int64(index)),
            payload: Self.payload(index)
        )
    }

    /// A file store configuration with `durability`, defaults otherwise.
    static func configuration(_ durability: FileEventStore.Durability) -> FileEventStore.Configuration {
        var configuration = FileEventStore.Configuration()
        configuration.durability = durability
        return configuration
    }

    /// The size of one appended record on disk: a scratch store's segment after one append.
    static func recordSize(in directory: String) async throws -> Int {
        let store = try FileEventStore(directory: directory, configuration: Self.configuration(.none))
        try await store.append(Self.event(0), to: "probe-1")
        await store.close()
        let segment = directory + "/segment-0000000000000000.log"
        let size = (try FileManager.default.attributesOfItem(atPath: segment)[.size] as? Int) ?? 0
        return size - 32
    }
}

/// `store.append.durable.1`: one event per append, one appender, `fsync` on every append, against
/// `pwrite` of as many bytes as our record plus `fsync`, on the same file system.
///
/// Ours appends from the measuring task; the store's one writer pthread writes and syncs each
/// append while the task waits. The baseline calls `pwrite` and `fsync` on the measuring task's
/// own thread.
final class StoreAppendScenario: Scenario {
    let metrics: [Metric]
    let workload = Workload.calibrated(minimum: 20)

    private var directory = ""
    private var store: FileEventStore?
    private var descriptor: Int32 = -1
    private var offset = 0
    private var record: [UInt8] = []
    private var next = 0

    /// Creates the scenario.
    /// - Parameter recorded: The ratio recorded on the project's machine kind.
    init(recorded: Double?) {
        self.metrics = [
            Metric(
                name: "store.append.durable.1",
                baseline:
                    "pwrite() + fsync() of a record of the same size, on the measuring task's thread; ours: "
                    + "append (fsyncEachAppend) from one task, written and synced by the store's writer pthread",
                unit: "append",
                recorded: recorded
            )
        ]
    }

    func setUp() async throws {
        self.directory = StoreBench.makeDirectory("append")
        let size = try await StoreBench.recordSize(in: self.directory + "/probe")
        self.record = (0..<size).map { UInt8(truncatingIfNeeded: $0) }
        self.store = try FileEventStore(
            directory: self.directory + "/store",
            configuration: StoreBench.configuration(.fsyncEachAppend)
        )
        self.descriptor = open(self.directory + "/raw.log", O_CREAT | O_WRONLY | O_CLOEXEC, 0o644)
        precondition(self.descriptor >= 0, "cannot open the baseline file")
    }

    func runOurs(_ count: Int) async throws -> [Double] {
        guard let store = self.store else { return [0] }
        let events = (0..<count).map { StoreBench.event(self.next + $0) }
        self.next += count
        let clock = ContinuousClock()
        let start = clock.now
        for event in events {
            try await store.append(event, to: "bench-1")
        }
        return [start.duration(to: clock.now).nanoseconds / Double(count)]
    }

    func runBaseline(_ count: Int) async throws -> [Double] {
        let clock = ContinuousClock()
        let start = clock.now
        for _ in 0..<count {
            let written = self.record.withUnsafeBytes {
                pwrite(self.descriptor, $0.baseAddress, $0.count, off_t(self.offset))
            }
            precondition(written == self.record.count, "pwrite failed")
            self.offset += written
            precondition(fsync(self.descriptor) == 0, "fsync failed")
        }
        return [start.duration(to: clock.now).nanoseconds / Double(count)]
    }

    func tearDown() async {
        await self.store?.close()
        close(self.descriptor)
        if !self.directory.isEmpty { try? FileManager.default.removeItem(atPath: self.directory) }
    }
}

/// `store.append.group.16`: 16 concurrent appenders, one event per append, each waiting until its
/// event is durable, against the same appends group-committed by one SQLite writer.
///
/// Both sides: 16 appender tasks in a task group on the cooperative pool (one thread per core),
/// appender *i* appending to its own stream `w-i`, the events encoded before the clock starts; one
/// writer pthread that takes every append queued while its last commit ran, writes them together
/// and syncs once, then resumes their appenders. Ours is the file store with
/// `Durability.groupCommit` (which also waits up to 200 µs for stragglers when fewer appends are
/// queued than the last batch held). The baseline is ``SQLiteGroupWriter``: one connection, WAL,
/// `synchronous=FULL`, one transaction per group, one row per event with the same fields and
/// payload as ours and a unique `(stream, version)`.
final class StoreGroupCommitScenario: Scenario {
    /// The concurrent appenders of each side.
    static let writers = 16

    let metrics: [Metric]
    let workload = Workload.calibrated(minimum: 64)

    private var directory = ""
    private var store: FileEventStore?
    private var sqlite: SQLiteGroupWriter?
    /// The index of the next event ours appends.
    private var next = 0
    /// The index of the next event the baseline appends; also the next version of every baseline
    /// stream, since each round appends as many events to each.
    private var nextRow = 0

    /// Creates the scenario.
    /// - Parameters:
    ///   - goal: The goal for the ratio, if any.
    ///   - recorded: The ratio recorded on the project's machine kind.
    init(goal: Double? = nil, recorded: Double?) {
        self.metrics = [
            Metric(
                name: "store.append.group.16",
                baseline:
                    "SQLite WAL, synchronous=FULL, one writer connection on its own pthread committing every row "
                    + "queued during its last commit in one transaction, 1 row per event, unique (stream, version); "
                    + "both sides: \(Self.writers) appender tasks on \(Machine.pool) awaiting their commit, "
                    + "one writer pthread; ours: file store group commit",
                unit: "append",
                goal: goal,
                recorded: recorded
            )
        ]
    }

    func setUp() async throws {
        self.directory = StoreBench.makeDirectory("group")
        self.store = try FileEventStore(
            directory: self.directory + "/store",
            configuration: StoreBench.configuration(.groupCommit)
        )
        self.sqlite = SQLiteGroupWriter(path: self.directory + "/events.sqlite")
    }

    func runOurs(_ count: Int) async throws -> [Double] {
        guard let store = self.store else { return [0] }
        let perWriter = max(1, count / Self.writers)
        let base = self.next
        self.next += perWriter * Self.writers
        // Encoded before the clock starts, as the baseline's rows are.
        let events = (0..<Self.writers).map { writer in
            (0..<perWriter).map { StoreBench.event(base + writer * perWriter + $0) }
        }
        let clock = ContinuousClock()
        let start = clock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for writer in 0..<Self.writers {
                let mine = events[writer]
                group.addTask {
                    for event in mine {
                        try await store.append(event, to: StreamID("w-\(writer)"))
                    }
                }
            }
            try await group.waitForAll()
        }
        return [start.duration(to: clock.now).nanoseconds / Double(perWriter * Self.writers)]
    }

    func runBaseline(_ count: Int) async throws -> [Double] {
        guard let sqlite = self.sqlite else { return [0] }
        let perWriter = max(1, count / Self.writers)
        let base = self.nextRow
        self.nextRow += perWriter * Self.writers
        // The same events as ours appends (the same payloads), as rows: appender i's k-th row is
        // version base / 16 + k of stream w-i, where base / 16 counts the rows each stream holds.
        let rows = (0..<Self.writers).map { writer in
            (0..<perWriter).map { offset in
                Self.row(
                    StoreBench.event(base + writer * perWriter + offset),
                    writer: writer,
                    version: base / Self.writers + offset
                )
            }
        }
        let clock = ContinuousClock()
        let start = clock.now
        await withTaskGroup(of: Void.self) { group in
            for writer in 0..<Self.writers {
                let mine = rows[writer]
                group.addTask {
                    for row in mine {
                        await sqlite.append(row)
                    }
                }
            }
            await group.waitForAll()
        }
        return [start.duration(to: clock.now).nanoseconds / Double(perWriter * Self.writers)]
    }

    /// The row of `event` as appender `writer` appends it.
    private static func row(_ event: EventData, writer: Int, version: Int) -> SQLiteConnection.Row {
        var id: [UInt8] = []
        id.reserveCapacity(16)
        withUnsafeBytes(of: event.metadata.id.high.littleEndian) { id.append(contentsOf: $0) }
        withUnsafeBytes(of: event.metadata.id.low.littleEndian) { id.append(contentsOf: $0) }
        return SQLiteConnection.Row(
            stream: "w-\(writer)",
            version: Int64(version),
            type: event.type,
            id: id,
            time: event.metadata.time,
            payload: event.payload
        )
    }

    func tearDown() async {
        await self.store?.close()
        if let sqlite = self.sqlite {
            await sqlite.close()
            let (commits, rows) = sqlite.committed
            // Every acknowledged row is in the table.
            let check = SQLiteConnection(path: self.directory + "/events.sqlite")
            let stored = check.count()
            check.close()
            precondition(
                rows == self.nextRow && stored == rows,
                "SQLite committed \(rows) rows, holds \(stored), expected \(self.nextRow)"
            )
            let group = Report.fixed(Double(rows) / Double(max(commits, 1)), decimals: 1)
            StandardError.writeLine(
                "store.append.group.16: SQLite committed \(rows) rows in \(commits) transactions (\(group) per commit)"
            )
        }
        if !self.directory.isEmpty { try? FileManager.default.removeItem(atPath: self.directory) }
    }
}

/// `store.replay`: reading every event back from a file store and decoding its JSON payload,
/// against `JSONDecoder` over the same payloads already in memory.
///
/// Both sides decode alike: one `JSONDecoder` per round, `Data(payload)` made per event from a
/// `[UInt8]` payload (the shape the store returns). Ours reads pages of 1,024 with `readAll`;
/// both run on the measuring task.
final class StoreReplayScenario: Scenario {
    /// The events in the store, read round and round.
    static let stored = 50_000

    let metrics: [Metric]
    let workload = Workload.calibrated(minimum: 1_000)

    private var directory = ""
    private var store: FileEventStore?
    private var payloads: [[UInt8]] = []

    /// Creates the scenario.
    /// - Parameter recorded: The ratio recorded on the project's machine kind.
    init(recorded: Double?) {
        self.metrics = [
            Metric(
                name: "store.replay",
                baseline:
                    "JSONDecoder (one per round) over the same [UInt8] payloads in memory, Data(payload) per "
                    + "event; ours: file store readAll pages of 1,024, then the same decoding; one task each",
                unit: "event",
                recorded: recorded
            )
        ]
    }

    func setUp() async throws {
        self.directory = StoreBench.makeDirectory("replay")
        let store = try FileEventStore(directory: self.directory, configuration: StoreBench.configuration(.none))
        var batch: [EventData] = []
        for index in 0..<Self.stored {
            batch.append(StoreBench.event(index))
            if batch.count == 500 {
                try await store.append(batch, to: StreamID("user-\(index / 500)"), expecting: .noStream)
                batch = []
            }
        }
        self.store = store
        self.payloads = (0..<Self.stored).map { StoreBench.payload($0) }
    }

    func runOurs(_ count: Int) async throws -> [Double] {
        guard let store = self.store else { return [0] }
        let decoder = JSONDecoder()
        var checksum = 0
        var remaining = count
        let clock = ContinuousClock()
        let start = clock.now
        var position: UInt64 = 0
        while remaining > 0 {
            let page = try await store.readAll(from: position, limit: min(remaining, 1_024))
            for event in page {
                checksum &+= try decoder.decode(BenchRegistered.self, from: Data(event.payload)).userID
            }
            remaining -= page.count
            position =
                page.isEmpty || position + UInt64(page.count) >= UInt64(Self.stored) ? 0 : position + UInt64(page.count)
        }
        let elapsed = start.duration(to: clock.now)
        precondition(checksum != -1)
        return [elapsed.nanoseconds / Double(count)]
    }

    func runBaseline(_ count: Int) async throws -> [Double] {
        let decoder = JSONDecoder()
        var checksum = 0
        let clock = ContinuousClock()
        let start = clock.now
        for index in 0..<count {
            let payload = Data(self.payloads[index % Self.stored])
            checksum &+= try decoder.decode(BenchRegistered.self, from: payload).userID
        }
        let elapsed = start.duration(to: clock.now)
        precondition(checksum != -1)
        return [elapsed.nanoseconds / Double(count)]
    }

    func tearDown() async {
        await self.store?.close()
        if !self.directory.isEmpty { try? FileManager.default.removeItem(atPath: self.directory) }
    }
}
