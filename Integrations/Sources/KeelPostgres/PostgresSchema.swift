/// The SQL of one store schema: its tables, its migrations and the statements the store runs,
/// with the schema's name spliced in once.
///
/// The schema's name is checked (``isValidName(_:)``) before it is spliced into SQL, so that no
/// statement built here can be altered by it; every value is bound as a parameter.
struct PostgresSchema: Sendable {
    /// One step of the schema's history, applied in a transaction of its own.
    struct Migration: Sendable {
        /// Its number: migrations are applied in order, 1, 2, 3, …
        let version: Int
        /// What it does, in words, recorded in the migrations table.
        let description: String
        /// Its statements, run one after the other.
        let statements: [String]
    }

    /// The schema, as written in SQL (quoted).
    let quoted: String
    /// The LISTEN/NOTIFY channel on which every commit announces the new head.
    let channel: String
    /// The key of the transaction-level advisory lock that migrations hold.
    let migrationLockKey: Int64

    init(name: String) {
        precondition(Self.isValidName(name), "invalid schema name \(name)")
        self.quoted = "\"\(name)\""
        self.channel = "\(name)_events"
        var hash: UInt64 = 14_695_981_039_346_656_037
        for byte in "keel.postgres.migrations.\(name)".utf8 {
            hash = (hash ^ UInt64(byte)) &* 1_099_511_628_211
        }
        self.migrationLockKey = Int64(bitPattern: hash)
    }

    /// Whether `name` can name a store's schema: a lowercase letter or `_`, then up to 47
    /// lowercase letters, digits or `_` (so that the notification channel fits PostgreSQL's
    /// 63-byte identifiers).
    static func isValidName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard let first = bytes.first, bytes.count <= 48 else { return false }
        func isLetter(_ byte: UInt8) -> Bool { (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || byte == 95 }
        func isDigit(_ byte: UInt8) -> Bool { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) }
        return isLetter(first) && bytes.dropFirst().allSatisfy { isLetter($0) || isDigit($0) }
    }

    // MARK: Migrations

    /// The newest schema version this build knows.
    static let latestVersion = 4

    var createSchema: String { "CREATE SCHEMA IF NOT EXISTS \(self.quoted)" }

    var createMigrationsTable: String {
        """
        CREATE TABLE IF NOT EXISTS \(self.quoted).schema_migrations (
            version integer PRIMARY KEY,
            description text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )
        """
    }

    var currentVersion: String { "SELECT coalesce(max(version), 0)::integer FROM \(self.quoted).schema_migrations" }

    var recordMigration: String {
        "INSERT INTO \(self.quoted).schema_migrations (version, description) VALUES ($1, $2)"
    }

    /// Every migration, in order; the last one's version is ``latestVersion``.
    var migrations: [Migration] {
        let schema = self.quoted
        return [
            Migration(
                version: 1,
                description: "events, streams and head",
                statements: [
                    """
                    CREATE TABLE \(schema).events (
                        position bigint PRIMARY KEY,
                        stream text NOT NULL,
                        version bigint NOT NULL,
                        event_id uuid NOT NULL,
                        type text NOT NULL,
                        schema_version integer NOT NULL,
                        time bigint NOT NULL,
                        metadata jsonb NOT NULL,
                        payload bytea NOT NULL,
                        recorded_at timestamptz NOT NULL DEFAULT now(),
                        UNIQUE (stream, version)
                    )
                    """,
                    """
                    CREATE TABLE \(schema).streams (
                        stream text PRIMARY KEY,
                        last_version bigint,
                        is_deleted boolean NOT NULL DEFAULT false,
                        max_count bigint,
                        truncate_before bigint
                    )
                    """,
                    """
                    CREATE TABLE \(schema).head (
                        only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
                        position bigint NOT NULL
                    )
                    """,
                    "INSERT INTO \(schema).head (only_row, position) VALUES (true, 0)",
                ]
            ),
            Migration(
                version: 2,
                description: "index events by id",
                statements: ["CREATE INDEX events_event_id ON \(schema).events (event_id)"]
            ),
            Migration(
                version: 3,
                description: "key-value state",
                statements: [
                    """
                    CREATE TABLE \(schema).keel_state (
                        namespace text NOT NULL,
                        key text NOT NULL,
                        value bytea NOT NULL,
                        PRIMARY KEY (namespace, key)
                    )
                    """
                ]
            ),
            Migration(
                version: 4,
                description: "head generation, moved by deletions",
                statements: ["ALTER TABLE \(schema).head ADD COLUMN generation bigint NOT NULL DEFAULT 0"]
            ),
        ]
    }

    // MARK: Statements

    private static let eventColumns =
        "position, stream, version, event_id, type, schema_version, time, metadata::text, payload"

    var lockHead: String { "SELECT position FROM \(self.quoted).head FOR UPDATE" }

    var readHead: String { "SELECT position FROM \(self.quoted).head" }

    /// The head's position and generation, and the state of each stream named in `$1` that
    /// exists, read together without a lock: one row per stream found, or one row with no stream.
    var readBatchState: String {
        """
        SELECT h.position, h.generation, s.stream, s.last_version, s.is_deleted
        FROM \(self.quoted).head h LEFT JOIN \(self.quoted).streams s ON s.stream = ANY($1::text[])
        """
    }

    var readStreamStates: String {
        "SELECT stream, last_version, is_deleted FROM \(self.quoted).streams WHERE stream = ANY($1::text[])"
    }

    /// Writes a batch: its events, its streams' new last versions and the new head, and notifies
    /// the head on the channel (delivered when the transaction commits).
    var writeBatch: String {
        let schema = self.quoted
        return """
            WITH new_events AS (
                INSERT INTO \(schema).events
                    (position, stream, version, event_id, type, schema_version, time, metadata, payload)
                SELECT e.position, e.stream, e.version, e.event_id, e.type, e.schema_version, e.time,
                    e.metadata::jsonb, e.payload
                FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::uuid[], $5::text[], $6::integer[],
                    $7::bigint[], $8::text[], $9::bytea[])
                    AS e(position, stream, version, event_id, type, schema_version, time, metadata, payload)
            ), touched AS (
                INSERT INTO \(schema).streams (stream, last_version, is_deleted)
                SELECT s.stream, s.last_version, false
                FROM unnest($10::text[], $11::bigint[]) AS s(stream, last_version)
                ON CONFLICT (stream) DO UPDATE SET last_version = EXCLUDED.last_version, is_deleted = false
            ), moved AS (
                UPDATE \(schema).head SET position = $12
            )
            SELECT pg_notify($13, $12::text)
            """
    }

    /// `writeBatch` on condition: it writes, and returns one row, only if the head's position is
    /// still `$14` and its generation `$15` once its row is locked (PostgreSQL re-reads a row that
    /// a concurrent transaction changed before it updates it); otherwise it writes nothing and
    /// returns no row.
    var writeBatchIfUnchanged: String {
        let schema = self.quoted
        return """
            WITH moved AS (
                UPDATE \(schema).head SET position = $12 WHERE position = $14 AND generation = $15
                RETURNING position
            ), new_events AS (
                INSERT INTO \(schema).events
                    (position, stream, version, event_id, type, schema_version, time, metadata, payload)
                SELECT e.position, e.stream, e.version, e.event_id, e.type, e.schema_version, e.time,
                    e.metadata::jsonb, e.payload
                FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::uuid[], $5::text[], $6::integer[],
                    $7::bigint[], $8::text[], $9::bytea[])
                    AS e(position, stream, version, event_id, type, schema_version, time, metadata, payload)
                WHERE EXISTS (SELECT 1 FROM moved)
            ), touched AS (
                INSERT INTO \(schema).streams (stream, last_version, is_deleted)
                SELECT s.stream, s.last_version, false
                FROM unnest($10::text[], $11::bigint[]) AS s(stream, last_version)
                WHERE EXISTS (SELECT 1 FROM moved)
                ON CONFLICT (stream) DO UPDATE SET last_version = EXCLUDED.last_version, is_deleted = false
            )
            SELECT pg_notify($13, $12::text) FROM moved
            """
    }

    var readAll: String {
        "SELECT \(Self.eventColumns) FROM \(self.quoted).events WHERE position >= $1 ORDER BY position LIMIT $2"
    }

    func readStream(ascending: Bool) -> String {
        """
        SELECT \(Self.eventColumns) FROM \(self.quoted).events
        WHERE stream = $1 AND version >= $2 AND version <= $3
        ORDER BY version \(ascending ? "ASC" : "DESC") LIMIT $4
        """
    }

    var readStreamState: String {
        "SELECT last_version, is_deleted, max_count, truncate_before FROM \(self.quoted).streams WHERE stream = $1"
    }

    var markDeleted: String {
        "UPDATE \(self.quoted).streams SET is_deleted = true, truncate_before = $2 WHERE stream = $1"
    }

    /// Moves the head's generation, under its row lock: appends checked against the state from
    /// before a deletion then take the locked path.
    var moveGeneration: String {
        "UPDATE \(self.quoted).head SET generation = generation + 1"
    }

    var writeMetadata: String {
        """
        INSERT INTO \(self.quoted).streams (stream, max_count, truncate_before) VALUES ($1, $2, $3)
        ON CONFLICT (stream) DO UPDATE SET max_count = EXCLUDED.max_count, truncate_before = EXCLUDED.truncate_before
        """
    }
}
