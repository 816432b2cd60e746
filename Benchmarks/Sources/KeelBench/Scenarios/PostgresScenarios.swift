import Foundation
import KeelCore
import KeelEventSourcing
import KeelPostgres
import Logging
import NIOCore
import PostgresNIO

/// Where the PostgreSQL scenarios connect: the `KEEL_POSTGRES_*` variables that
/// `Integrations/Scripts/postgres-server.sh start` prints. Without them the scenarios are left out
/// of the catalog (``Catalog``).
enum PostgresBench {
    static let environment = ProcessInfo.processInfo.environment

    /// Whether a server is named.
    static var isConfigured: Bool { environment["KEEL_POSTGRES_HOST"] != nil }

    static var host: String { environment["KEEL_POSTGRES_HOST"] ?? "127.0.0.1" }
    static var port: Int { Int(environment["KEEL_POSTGRES_PORT"] ?? "") ?? 5432 }
    static var user: String { environment["KEEL_POSTGRES_USER"] ?? "postgres" }
    static var database: String { environment["KEEL_POSTGRES_DATABASE"] ?? "keel" }

    /// A schema name no other run uses.
    static func schema(_ label: String) -> String {
        "bench_\(label)_\(UInt32.random(in: 0...UInt32.max))"
    }

    /// A client with `connections` connections at most.
    static func client(connections: Int) -> PostgresClient {
        var configuration = PostgresClient.Configuration(
            host: host,
            port: port,
            username: user,
            password: environment["KEEL_POSTGRES_PASSWORD"],
            database: database,
            tls: .disable
        )
        configuration.options.maximumConnections = connections
        configuration.options.minimumConnections = connections
        return PostgresClient(configuration: configuration)
    }
}

/// `pg.append.1` and `pg.append.16`: 16 appenders, each appending to its own stream one event (or
/// 16) per append through ``PostgresEventStore``, against the same rows inserted with bare
/// postgres-nio: 16 tasks over a pool of 16 connections, one `INSERT` (of 1 or 16 rows) per
/// commit, into a table with the same unique `(stream, version)` constraint and a `bigserial`
/// position (which a subscriber cannot trust: it has gaps and commits out of order, which is what
/// the store's head row and group commit pay for). `pg.append.N.vs-file` measures the store again
/// against ``FileEventStore`` under group commit with the same appenders: a report, no goal.
final class PostgresAppendScenario: Scenario {
    static let writers = 16

    enum Baseline {
        case rawInserts
        case fileStore
    }

    let metrics: [Metric]
    let workload = Workload.calibrated(minimum: 32)
    private let eventsPerAppend: Int
    private let baseline: Baseline

    private var store: PostgresEventStore?
    private var storeSchema = ""
    private var raw: PostgresClient?
    private var rawSchema = ""
    private var rawTask: Task<Void, Never>?
    private var directory = ""
    private var fileStore: FileEventStore?
    private var nextOurs = 0
    private var nextBaseline = 0

    init(name: String, eventsPerAppend: Int, baseline: Baseline, goal: Double? = nil) {
        self.eventsPerAppend = eventsPerAppend
        self.baseline = baseline
        let description: String
        switch baseline {
        case .rawInserts:
            description =
                "postgres-nio, \(Self.writers) tasks over 16 pooled connections, one INSERT of \(eventsPerAppend) "
                + "row(s) per commit, unique (stream, version), bigserial position; ours: PostgresEventStore "
                + "(head row, group commit, NOTIFY), \(Self.writers) appenders, same server"
        case .fileStore:
            description =
                "FileEventStore, group commit, \(Self.writers) appenders of \(eventsPerAppend) event(s) per append; "
                + "ours: PostgresEventStore on 127.0.0.1"
        }
        self.metrics = [Metric(name: name, baseline: description, unit: "append", goal: goal)]
    }

    func setUp() async throws {
        self.storeSchema = PostgresBench.schema("store")
        var configuration = PostgresEventStore.Configuration(
            host: PostgresBench.host,
            port: PostgresBench.port,
            username: PostgresBench.user,
            database: PostgresBench.database,
            schema: self.storeSchema
        )
        configuration.poolSize = 4
        self.store = try await PostgresEventStore.open(configuration: configuration)
        switch self.baseline {
        case .rawInserts:
            let client = PostgresBench.client(connections: Self.writers)
            self.raw = client
            self.rawTask = Task { await client.run() }
            self.rawSchema = PostgresBench.schema("raw")
            try await client.query(PostgresQuery(unsafeSQL: "CREATE SCHEMA \(self.rawSchema)"))
            try await client.query(
                PostgresQuery(
                    unsafeSQL: """
                        CREATE TABLE \(self.rawSchema).events (
                            position bigserial PRIMARY KEY,
                            stream text NOT NULL,
                            version bigint NOT NULL,
                            type text NOT NULL,
                            id bytea NOT NULL,
                            time bigint NOT NULL,
                            payload bytea NOT NULL,
                            UNIQUE (stream, version)
                        )
                        """
                )
            )
        case .fileStore:
            self.directory = StoreBench.makeDirectory("pg-vs-file")
            self.fileStore = try FileEventStore(
                directory: self.directory + "/store",
                configuration: StoreBench.configuration(.groupCommit)
            )
        }
    }

    /// Each writer's appends, made before the clock starts.
    private func appends(_ count: Int, from base: Int) -> [[[EventData]]] {
        let perWriter = max(1, count / Self.writers)
        return (0..<Self.writers).map { writer in
            (0..<perWriter).map { append in
                (0..<self.eventsPerAppend).map { offset in
                    StoreBench.event(base + (writer * perWriter + append) * self.eventsPerAppend + offset)
                }
            }
        }
    }

    func runOurs(_ count: Int) async throws -> [Double] {
        guard let store = self.store else { return [0] }
        let appends = self.appends(count, from: self.nextOurs)
        let total = appends.reduce(0) { $0 + $1.count }
        self.nextOurs += total * self.eventsPerAppend
        return [
            try await Self.time(total) { writer in
                for events in appends[writer] {
                    try await store.append(events, to: StreamID("w-\(writer)"), expecting: .any)
                }
            }
        ]
    }

    func runBaseline(_ count: Int) async throws -> [Double] {
        let appends = self.appends(count, from: self.nextBaseline)
        let total = appends.reduce(0) { $0 + $1.count }
        let base = self.nextBaseline
        self.nextBaseline += total * self.eventsPerAppend
        switch self.baseline {
        case .rawInserts:
            guard let client = self.raw else { return [0] }
            let table = "\(self.rawSchema).events"
            let perWriter = appends.first?.count ?? 0
            // Each stream's next version: the rows it already holds.
            let firstVersion = base / Self.writers
            let queries = appends.enumerated().map { writer, mine in
                mine.enumerated().map { index, events in
                    Self.insert(
                        events,
                        into: table,
                        stream: "w-\(writer)",
                        version: firstVersion + index * self.eventsPerAppend
                    )
                }
            }
            _ = perWriter
            return [
                try await Self.time(total) { writer in
                    for query in queries[writer] {
                        try await client.query(query)
                    }
                }
            ]
        case .fileStore:
            guard let store = self.fileStore else { return [0] }
            return [
                try await Self.time(total) { writer in
                    for events in appends[writer] {
                        try await store.append(events, to: StreamID("w-\(writer)"), expecting: .any)
                    }
                }
            ]
        }
    }

    /// One `INSERT` of `events` as rows `version, version + 1, …` of `stream`.
    private static func insert(_ events: [EventData], into table: String, stream: String, version: Int) -> PostgresQuery
    {
        var bindings = PostgresBindings(capacity: events.count * 6)
        var values: [String] = []
        for (offset, event) in events.enumerated() {
            let first = offset * 6
            values.append("($\(first + 1), $\(first + 2), $\(first + 3), $\(first + 4), $\(first + 5), $\(first + 6))")
            var id = ByteBuffer()
            id.writeInteger(event.metadata.id.high)
            id.writeInteger(event.metadata.id.low)
            bindings.append(stream)
            bindings.append(Int64(version + offset))
            bindings.append(event.type)
            bindings.append(id)
            bindings.append(Int64(event.metadata.time))
            bindings.append(ByteBuffer(bytes: event.payload))
        }
        return PostgresQuery(
            unsafeSQL: "INSERT INTO \(table) (stream, version, type, id, time, payload) VALUES "
                + values.joined(separator: ", "),
            binds: bindings
        )
    }

    /// Runs `body` for each writer concurrently; the time per append.
    private static func time(
        _ appends: Int,
        _ body: @escaping @Sendable (Int) async throws -> Void
    ) async throws -> Double {
        let clock = ContinuousClock()
        let start = clock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for writer in 0..<Self.writers {
                group.addTask { try await body(writer) }
            }
            try await group.waitForAll()
        }
        return start.duration(to: clock.now).nanoseconds / Double(max(1, appends))
    }

    func tearDown() async {
        if let client = self.raw {
            _ = try? await client.query(PostgresQuery(unsafeSQL: "DROP SCHEMA \(self.rawSchema) CASCADE"))
        }
        self.rawTask?.cancel()
        await self.rawTask?.value
        if let store = self.store {
            await store.close()
            let client = PostgresBench.client(connections: 1)
            let task = Task { await client.run() }
            _ = try? await client.query(PostgresQuery(unsafeSQL: "DROP SCHEMA \(self.storeSchema) CASCADE"))
            task.cancel()
            await task.value
        }
        await self.fileStore?.close()
        if !self.directory.isEmpty { try? FileManager.default.removeItem(atPath: self.directory) }
    }
}
