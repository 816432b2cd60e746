import KeelEventSourcing
import Logging
import PostgresNIO
import Synchronization

extension PostgresEventStore {
    /// What one migration transaction found.
    private enum MigrationStep: Sendable {
        case current
        case applied(Int)
        case newer(Int)
    }

    /// Brings the schema to ``PostgresSchema/latestVersion``, one migration per transaction.
    ///
    /// Each transaction takes the schema's advisory lock (`pg_advisory_xact_lock`, released when
    /// it ends), creates the schema and the migrations table when missing, reads the schema's
    /// version and applies the next migration, so that two processes opening a new schema at once
    /// apply each migration exactly once between them.
    func migrate() async throws(EventStoreError) {
        var applied = 0
        defer { self.recordMigrations(applied) }
        do {
            applied = try await Self.migrate(
                schema: self.schema,
                named: self.configuration.schema,
                client: self.client,
                logger: self.logger
            )
        } catch let error as PostgresSchemaVersionError {
            throw EventStoreError(code: .corrupted, message: error.description, cause: error)
        } catch {
            throw self.storeError(error, during: "migrating schema \(self.configuration.schema)")
        }
    }

    /// Brings `schema` to ``PostgresSchema/latestVersion`` on `client`, as ``migrate()`` does; for
    /// both stores of the schema (the state store opens it too).
    /// - Returns: How many migrations this call applied.
    /// - Throws: ``PostgresSchemaVersionError`` for a schema newer than this build; the client's
    ///   errors.
    static func migrate(
        schema: PostgresSchema,
        named name: String,
        client: PostgresClient,
        logger: Logger
    ) async throws -> Int {
        var applied = 0
        while true {
            let step = try await client.withConnection { connection in
                try await Self.cancellingOnClose(connection) { connection in
                    try await Self.transaction(on: connection, logger: logger) { connection -> MigrationStep in
                        var key = PostgresBindings()
                        key.append(schema.migrationLockKey)
                        try await connection.checkedQuery(
                            PostgresQuery(unsafeSQL: "SELECT pg_advisory_xact_lock($1)", binds: key),
                            logger: logger
                        )
                        try await connection.checkedQuery(PostgresQuery(unsafeSQL: schema.createSchema), logger: logger)
                        try await connection.checkedQuery(
                            PostgresQuery(unsafeSQL: schema.createMigrationsTable),
                            logger: logger
                        )
                        var version = 0
                        let rows = try await connection.checkedQuery(
                            PostgresQuery(unsafeSQL: schema.currentVersion),
                            logger: logger
                        )
                        for try await found in rows.decode(Int32.self) { version = Int(found) }
                        if version > PostgresSchema.latestVersion { return .newer(version) }
                        guard let migration = schema.migrations.first(where: { $0.version == version + 1 }) else {
                            return .current
                        }
                        for statement in migration.statements {
                            try await connection.checkedQuery(PostgresQuery(unsafeSQL: statement), logger: logger)
                        }
                        var record = PostgresBindings()
                        record.append(Int32(migration.version))
                        record.append(migration.description)
                        try await connection.checkedQuery(
                            PostgresQuery(unsafeSQL: schema.recordMigration, binds: record),
                            logger: logger
                        )
                        return .applied(migration.version)
                    }
                }
            }
            switch step {
            case .current:
                return applied
            case .applied(let version):
                applied += 1
                logger.info("schema \(name) migrated to version \(version)")
            case .newer(let version):
                throw PostgresSchemaVersionError(
                    schema: name,
                    foundVersion: version,
                    supportedVersion: PostgresSchema.latestVersion
                )
            }
        }
    }
}
