import Foundation
import KeelCore
import KeelEventSourcing
import KeelPostgres
import Logging
import PostgresNIO
import Synchronization

/// Where the tests find their server: the `KEEL_POSTGRES_*` variables that
/// `Integrations/Scripts/postgres-server.sh start` prints.
///
/// Without `KEEL_POSTGRES_HOST` the suites are skipped, unless `KEEL_POSTGRES_REQUIRED=1`: then
/// they run, and fail when they cannot connect.
enum PostgresTestEnvironment {
    struct SetupError: Error, CustomStringConvertible {
        var description: String
    }

    static let variables = ProcessInfo.processInfo.environment

    static var isRequired: Bool { variables["KEEL_POSTGRES_REQUIRED"] == "1" }

    /// Whether the suites run: the server is configured, or required.
    static var isEnabled: Bool { variables["KEEL_POSTGRES_HOST"] != nil || isRequired }

    /// The shell command that restarts the server, if any.
    static var restartCommand: String? { variables["KEEL_POSTGRES_RESTART"] }

    /// A store configuration on `schema`.
    static func configuration(schema: String) throws -> PostgresEventStore.Configuration {
        guard let host = variables["KEEL_POSTGRES_HOST"] else {
            throw SetupError(description: "KEEL_POSTGRES_REQUIRED=1 but KEEL_POSTGRES_HOST is not set")
        }
        var configuration = PostgresEventStore.Configuration(
            host: host,
            port: variables["KEEL_POSTGRES_PORT"].flatMap { Int($0) } ?? 5432,
            username: variables["KEEL_POSTGRES_USER"] ?? "postgres",
            password: variables["KEEL_POSTGRES_PASSWORD"],
            database: variables["KEEL_POSTGRES_DATABASE"],
            schema: schema
        )
        // Tests run in parallel against a server that others share: keep the pools small.
        configuration.poolSize = 4
        configuration.openTimeout = .seconds(15)
        return configuration
    }

    /// A client configuration for the test server, for a client of the test's own.
    static func clientConfiguration() throws -> PostgresClient.Configuration {
        let store = try configuration(schema: "unused")
        var client = PostgresClient.Configuration(
            host: store.host,
            port: store.port,
            username: store.username,
            password: store.password,
            database: store.database,
            tls: .disable
        )
        client.options.maximumConnections = 4
        return client
    }

    /// A schema name no other test uses.
    static func freshSchema(_ label: String) -> String {
        "keeltest_\(label)_\(String(UInt64.random(in: 0...UInt64.max), radix: 36))"
    }

    /// Opens a store on a fresh schema, runs `body`, closes the store and drops the schema.
    static func withFreshStore<Result>(
        _ label: String,
        _ body: (PostgresEventStore) async throws -> Result
    ) async throws -> Result {
        let schema = freshSchema(label)
        let store = try await PostgresEventStore.open(configuration: configuration(schema: schema))
        do {
            let result = try await body(store)
            await store.close()
            try await dropSchema(schema)
            return result
        } catch {
            await store.close()
            try? await dropSchema(schema)
            throw error
        }
    }

    /// A connection of the test's own, beside the stores' pools.
    static func connect() async throws -> PostgresConnection {
        let configuration = try configuration(schema: "unused")
        return try await PostgresConnection.connect(
            configuration: PostgresConnection.Configuration(
                host: configuration.host,
                port: configuration.port,
                username: configuration.username,
                password: configuration.password,
                database: configuration.database,
                tls: .disable
            ),
            id: 1,
            logger: logger
        )
    }

    /// Runs `body` with a connection of the test's own, and closes it.
    static func withConnection<Result>(_ body: (PostgresConnection) async throws -> Result) async throws -> Result {
        let connection = try await connect()
        do {
            let result = try await body(connection)
            try? await connection.close()
            return result
        } catch {
            try? await connection.close()
            throw error
        }
    }

    static func dropSchema(_ schema: String) async throws {
        _ = try await withConnection { connection in
            try await connection.query(
                PostgresQuery(unsafeSQL: "DROP SCHEMA IF EXISTS \"\(schema)\" CASCADE"),
                logger: logger
            )
        }
    }

    static let logger = Logger(label: "keel.postgres.tests", factory: { _ in SwiftLogNoOpLogHandler() })

    /// An event with a recognisable tag (in its custom metadata and its payload).
    static func event(_ tag: String) -> EventData {
        EventData(
            type: "test.tagged",
            metadata: EventMetadata(
                id: EventID(high: UInt64.random(in: 0...UInt64.max), low: UInt64.random(in: 0...UInt64.max)),
                time: 1_700_000_000_000_000_000,
                custom: ["tag": tag]
            ),
            payload: Array(tag.utf8)
        )
    }
}

/// Forwards every call to a store, and signals the first time a caller starts waiting for events
/// beyond `threshold`: how a test knows that a subscription has read everything and parks (or is
/// about to park) in the store's `waitForHead(beyond:)`.
struct ParkingProbe: EventStore {
    let base: any EventStore
    let threshold: UInt64
    let parking = Signal()

    func append(
        _ events: [EventData],
        to stream: StreamID,
        expecting expected: ExpectedVersion
    ) async throws(EventStoreError) -> AppendResult {
        try await self.base.append(events, to: stream, expecting: expected)
    }

    func readStream(
        _ stream: StreamID,
        from version: UInt64,
        direction: ReadDirection,
        limit: Int
    ) async throws(EventStoreError) -> [RecordedEvent] {
        try await self.base.readStream(stream, from: version, direction: direction, limit: limit)
    }

    func readAll(from position: UInt64, limit: Int) async throws(EventStoreError) -> [RecordedEvent] {
        try await self.base.readAll(from: position, limit: limit)
    }

    func streamVersion(_ stream: StreamID) async throws(EventStoreError) -> UInt64? {
        try await self.base.streamVersion(stream)
    }

    func headPosition() async throws(EventStoreError) -> UInt64 {
        try await self.base.headPosition()
    }

    func deleteStream(_ stream: StreamID, expecting expected: ExpectedVersion) async throws(EventStoreError) {
        try await self.base.deleteStream(stream, expecting: expected)
    }

    func setStreamMetadata(_ metadata: StreamMetadata, for stream: StreamID) async throws(EventStoreError) {
        try await self.base.setStreamMetadata(metadata, for: stream)
    }

    func streamMetadata(for stream: StreamID) async throws(EventStoreError) -> StreamMetadata {
        try await self.base.streamMetadata(for: stream)
    }

    func waitForHead(beyond head: UInt64) async {
        if head >= self.threshold { self.parking.signal() }
        await self.base.waitForHead(beyond: head)
    }
}

/// A one-shot signal: `wait()` suspends until `signal()` has been called.
final class Signal: Sendable {
    private let state = Mutex<(signalled: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    func signal() {
        let waiters = self.state.withLock { state -> [CheckedContinuation<Void, Never>] in
            guard !state.signalled else { return [] }
            state.signalled = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    func wait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let signalled = self.state.withLock { state -> Bool in
                if state.signalled { return true }
                state.waiters.append(continuation)
                return false
            }
            if signalled { continuation.resume() }
        }
    }
}

/// A counter that tasks can wait on: `wait(for:)` suspends until the count reaches a value.
final class Countdown: Sendable {
    private let state = Mutex<(count: Int, waiters: [(Int, CheckedContinuation<Void, Never>)])>((0, []))

    var count: Int { self.state.withLock { $0.count } }

    func increment() {
        let ready = self.state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.count += 1
            var ready: [CheckedContinuation<Void, Never>] = []
            state.waiters.removeAll { waiter in
                guard state.count >= waiter.0 else { return false }
                ready.append(waiter.1)
                return true
            }
            return ready
        }
        for waiter in ready { waiter.resume() }
    }

    func wait(for target: Int) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let reached = self.state.withLock { state -> Bool in
                if state.count >= target { return true }
                state.waiters.append((target, continuation))
                return false
            }
            if reached { continuation.resume() }
        }
    }
}

/// A Boolean that tasks share: set once by one, read by the others.
final class Flag: Sendable {
    private let value = Atomic<Bool>(false)

    var isSet: Bool { self.value.load(ordering: .acquiring) }

    func set() { self.value.store(true, ordering: .releasing) }
}
