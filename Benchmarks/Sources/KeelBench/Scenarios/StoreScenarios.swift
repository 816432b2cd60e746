import CSQLite
import Dispatch
import Foundation
import KeelCore
import KeelEventSourcing

#if canImport(Glibc)
import Glibc
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

/// `store.append.group.16`: 16 concurrent appenders, one event per append, group commit, against
/// SQLite in WAL mode with `synchronous=FULL`, one event per transaction, 16 writers.
///
/// Ours: 16 appender tasks in a task group on the cooperative pool (one thread per core), the
/// store's one writer pthread gathering their appends into shared `fsync`s. The baseline: 16
/// connections, one per writer, driven by `DispatchQueue.concurrentPerform`, which runs its
/// iterations on as many threads as there are cores (2 here), so at most that many writers are
/// in SQLite at once; SQLite serialises writers anyway (`BEGIN IMMEDIATE`), and each commit
/// syncs the WAL.
final class StoreGroupCommitScenario: Scenario {
    /// The concurrent writers of each side.
    static let writers = 16

    let metrics: [Metric]
    let workload = Workload.calibrated(minimum: 64)

    private var directory = ""
    private var store: FileEventStore?
    private var connections: [OpaquePointer] = []
    private var next = 0

    /// Creates the scenario.
    /// - Parameter recorded: The ratio recorded on the project's machine kind.
    init(recorded: Double?) {
        let threads = Machine.cooperativeThreads
        self.metrics = [
            Metric(
                name: "store.append.group.16",
                baseline:
                    "SQLite WAL, synchronous=FULL, 1 event per transaction, \(Self.writers) connections run by "
                    + "concurrentPerform on \(threads) threads; ours: group commit, \(Self.writers) appender tasks "
                    + "on \(Machine.pool), one writer pthread",
                unit: "append",
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
        let path = self.directory + "/events.sqlite"
        for index in 0..<Self.writers {
            var connection: OpaquePointer?
            precondition(sqlite3_open(path, &connection) == SQLITE_OK, "sqlite3_open failed")
            guard let connection else { preconditionFailure("sqlite3_open returned no connection") }
            sqlite3_busy_timeout(connection, 60_000)
            if index == 0 {
                Self.execute(connection, "PRAGMA journal_mode=WAL")
                Self.execute(
                    connection,
                    "CREATE TABLE IF NOT EXISTS events (position INTEGER PRIMARY KEY, stream TEXT NOT NULL, version INTEGER NOT NULL, type TEXT NOT NULL, payload BLOB NOT NULL)"
                )
            }
            Self.execute(connection, "PRAGMA synchronous=FULL")
            self.connections.append(connection)
        }
    }

    /// Runs one SQL statement, stopping the process if it fails.
    static func execute(_ connection: OpaquePointer, _ sql: String) {
        let status = sqlite3_exec(connection, sql, nil, nil, nil)
        precondition(status == SQLITE_OK, "\(sql): \(String(cString: sqlite3_errmsg(connection)))")
    }

    func runOurs(_ count: Int) async throws -> [Double] {
        guard let store = self.store else { return [0] }
        let perWriter = max(1, count / Self.writers)
        let base = self.next
        self.next += perWriter * Self.writers
        // Encoded before the clock starts, as the baseline's payload is.
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
        let perWriter = max(1, count / Self.writers)
        // Each connection is used by one thread only (SQLite's multi-thread mode allows that).
        nonisolated(unsafe) let connections = self.connections
        let payload = StoreBench.payload(1)
        let clock = ContinuousClock()
        let start = clock.now
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().async {
                DispatchQueue.concurrentPerform(iterations: Self.writers) { writer in
                    Self.insert(perWriter, into: connections[writer], writer: writer, payload: payload)
                }
                continuation.resume()
            }
        }
        return [start.duration(to: clock.now).nanoseconds / Double(perWriter * Self.writers)]
    }

    /// `count` transactions of one insert each, on one connection.
    static func insert(_ count: Int, into connection: OpaquePointer, writer: Int, payload: [UInt8]) {
        var statement: OpaquePointer?
        let sql = "INSERT INTO events (stream, version, type, payload) VALUES (?, ?, 'user.registered', ?)"
        precondition(sqlite3_prepare_v2(connection, sql, -1, &statement, nil) == SQLITE_OK, "prepare failed")
        defer { sqlite3_finalize(statement) }
        let stream = "w-\(writer)"
        for index in 0..<count {
            Self.execute(connection, "BEGIN IMMEDIATE")
            sqlite3_reset(statement)
            _ = stream.withCString {
                sqlite3_bind_text(statement, 1, $0, -1, unsafeBitCast(-1, to: sqlite3_destructor_type.self))
            }
            sqlite3_bind_int64(statement, 2, Int64(index))
            _ = payload.withUnsafeBytes {
                sqlite3_bind_blob(
                    statement,
                    3,
                    $0.baseAddress,
                    Int32($0.count),
                    unsafeBitCast(-1, to: sqlite3_destructor_type.self)
                )
            }
            precondition(
                sqlite3_step(statement) == SQLITE_DONE,
                "insert failed: \(String(cString: sqlite3_errmsg(connection)))"
            )
            Self.execute(connection, "COMMIT")
        }
    }

    func tearDown() async {
        await self.store?.close()
        for connection in self.connections { sqlite3_close(connection) }
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
