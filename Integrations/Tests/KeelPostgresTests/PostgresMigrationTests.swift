import KeelEventSourcing
import KeelPostgres
import PostgresNIO
import Testing

@Suite("PostgresEventStore migrations", .enabled(if: PostgresTestEnvironment.isEnabled), .timeLimit(.minutes(1)))
struct PostgresMigrationTests {
    /// The versions recorded in `schema`'s migrations table, with when each was applied.
    static func recordedMigrations(_ schema: String) async throws -> [(version: Int32, appliedAt: String)] {
        try await PostgresTestEnvironment.withConnection { connection in
            let rows = try await connection.query(
                PostgresQuery(
                    unsafeSQL: "SELECT version, applied_at::text FROM \"\(schema)\".schema_migrations ORDER BY version"
                ),
                logger: PostgresTestEnvironment.logger
            )
            var recorded: [(Int32, String)] = []
            for try await row in rows.decode((Int32, String).self) { recorded.append(row) }
            return recorded
        }
    }

    @Test("two stores opening a new schema at once migrate it once between them")
    func concurrentOpensOnAFreshSchema() async throws {
        let schema = PostgresTestEnvironment.freshSchema("migrate2")
        let configuration = try PostgresTestEnvironment.configuration(schema: schema)
        async let opening1 = PostgresEventStore.open(configuration: configuration)
        async let opening2 = PostgresEventStore.open(configuration: configuration)
        let (first, second) = try await (opening1, opening2)
        let recorded = try await Self.recordedMigrations(schema)
        #expect(recorded.map(\.version) == [1, 2, 3, 4])
        #expect(first.appliedMigrations + second.appliedMigrations == 4)
        // Both work on the one log.
        try await first.append(PostgresTestEnvironment.event("x"), to: "m-1", expecting: .noStream)
        try await second.append(PostgresTestEnvironment.event("y"), to: "m-1", expecting: .exactly(0))
        #expect(try await first.readStream("m-1").count == 2)
        await first.close()
        await second.close()
        try await PostgresTestEnvironment.dropSchema(schema)
    }

    @Test("opening a current schema applies no migration")
    func secondOpenDoesNotMigrate() async throws {
        let schema = PostgresTestEnvironment.freshSchema("migrate1")
        let configuration = try PostgresTestEnvironment.configuration(schema: schema)
        let first = try await PostgresEventStore.open(configuration: configuration)
        #expect(first.appliedMigrations == 4)
        try await first.append(PostgresTestEnvironment.event("kept"), to: "m-1", expecting: .noStream)
        await first.close()
        let recorded = try await Self.recordedMigrations(schema)

        let second = try await PostgresEventStore.open(configuration: configuration)
        #expect(second.appliedMigrations == 0)
        let again = try await Self.recordedMigrations(schema)
        #expect(again.map(\.version) == recorded.map(\.version))
        #expect(again.map(\.appliedAt) == recorded.map(\.appliedAt))
        #expect(try await second.readStream("m-1").map { $0.metadata.custom["tag"] } == ["kept"])
        #expect(try await second.headPosition() == 1)
        await second.close()
        try await PostgresTestEnvironment.dropSchema(schema)
    }

    @Test("a schema newer than this build is refused with a typed error")
    func newerSchemaIsRefused() async throws {
        let schema = PostgresTestEnvironment.freshSchema("newer")
        let configuration = try PostgresTestEnvironment.configuration(schema: schema)
        let store = try await PostgresEventStore.open(configuration: configuration)
        await store.close()
        _ = try await PostgresTestEnvironment.withConnection { connection in
            try await connection.query(
                PostgresQuery(
                    unsafeSQL:
                        "INSERT INTO \"\(schema)\".schema_migrations (version, description) VALUES (999, 'future')"
                ),
                logger: PostgresTestEnvironment.logger
            )
        }
        do {
            let reopened = try await PostgresEventStore.open(configuration: configuration)
            await reopened.close()
            Issue.record("a schema at version 999 was opened")
        } catch {
            #expect(error.code == .corrupted)
            let cause = try #require(error.cause as? PostgresSchemaVersionError)
            #expect(cause == PostgresSchemaVersionError(schema: schema, foundVersion: 999, supportedVersion: 4))
            #expect(error.message.contains("version 999"))
        }
        try await PostgresTestEnvironment.dropSchema(schema)
    }

    @Test("an invalid configuration is refused before connecting")
    func invalidConfiguration() async throws {
        var configuration = try PostgresTestEnvironment.configuration(schema: "Bad-Name")
        await #expect(throws: EventStoreError.self) {
            _ = try await PostgresEventStore.open(configuration: configuration)
        }
        configuration.schema = "fine"
        configuration.poolSize = 0
        do {
            _ = try await PostgresEventStore.open(configuration: configuration)
            Issue.record("a pool of no connection was accepted")
        } catch {
            #expect(error.code == .invalidArgument)
        }
    }
}
