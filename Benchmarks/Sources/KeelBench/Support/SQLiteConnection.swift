import CSQLite

/// One SQLite connection to an event table, with its insert statement prepared once: what the
/// SQLite baseline of the group-commit scenario writes through.
///
/// The table is what an event store on SQLite would have: the global position as the row id, and
/// a unique `(stream, version)`, so every insert also updates that index, as the file store
/// checks and records each stream's versions. Any failure stops the process (a benchmark has no
/// one to report it to).
///
/// Not thread-safe: one thread at a time uses a connection (SQLite's multi-thread mode), which is
/// why it is opened with `SQLITE_OPEN_NOMUTEX`.
final class SQLiteConnection {
    /// One row to insert: one event of one stream.
    struct Row: Sendable {
        /// The stream's name.
        var stream: String
        /// The event's version in its stream; unique with `stream`.
        var version: Int64
        /// The event's type.
        var type: String
        /// The event's id, 16 bytes.
        var id: [UInt8]
        /// The event's time.
        var time: Int64
        /// The event's encoded payload.
        var payload: [UInt8]
    }

    /// The table every connection creates if it is missing.
    static let schema = """
        CREATE TABLE IF NOT EXISTS events (
            position INTEGER PRIMARY KEY,
            stream TEXT NOT NULL,
            version INTEGER NOT NULL,
            type TEXT NOT NULL,
            id BLOB NOT NULL,
            time INTEGER NOT NULL,
            payload BLOB NOT NULL,
            UNIQUE (stream, version)
        )
        """

    private let handle: OpaquePointer
    private let insertStatement: OpaquePointer

    /// Opens (creating if needed) the database at `path` in WAL mode with `synchronous=FULL`, so
    /// that every commit syncs the log, and creates the table.
    /// - Parameter path: The database file.
    init(path: String) {
        var handle: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
        precondition(sqlite3_open_v2(path, &handle, flags, nil) == SQLITE_OK, "sqlite3_open_v2 failed: \(path)")
        guard let handle else { preconditionFailure("sqlite3_open_v2 returned no connection") }
        self.handle = handle
        Self.execute(handle, "PRAGMA journal_mode=WAL")
        Self.execute(handle, "PRAGMA synchronous=FULL")
        Self.execute(handle, Self.schema)
        var statement: OpaquePointer?
        let sql = "INSERT INTO events (stream, version, type, id, time, payload) VALUES (?, ?, ?, ?, ?, ?)"
        precondition(sqlite3_prepare_v2(handle, sql, -1, &statement, nil) == SQLITE_OK, "prepare failed: \(sql)")
        guard let statement else { preconditionFailure("sqlite3_prepare_v2 returned no statement") }
        self.insertStatement = statement
    }

    /// Finalizes the statement and closes the connection (the last connection to close checkpoints
    /// the WAL into the database). Call once, last.
    func close() {
        sqlite3_finalize(self.insertStatement)
        let status = sqlite3_close(self.handle)
        precondition(status == SQLITE_OK, "sqlite3_close failed: \(status)")
    }

    /// Runs one SQL statement that returns no rows.
    /// - Parameter sql: The statement (`BEGIN IMMEDIATE`, `COMMIT`).
    func execute(_ sql: String) {
        Self.execute(self.handle, sql)
    }

    /// Inserts one row with the prepared statement, in the transaction that is open (or in its
    /// own, if none is).
    /// - Parameter row: The row.
    func insert(_ row: Row) {
        let statement = self.insertStatement
        sqlite3_reset(statement)
        // SQLITE_TRANSIENT: SQLite copies the bytes before the bind returns.
        let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
        _ = row.stream.withCString { sqlite3_bind_text(statement, 1, $0, -1, transient) }
        sqlite3_bind_int64(statement, 2, row.version)
        _ = row.type.withCString { sqlite3_bind_text(statement, 3, $0, -1, transient) }
        _ = row.id.withUnsafeBytes { sqlite3_bind_blob(statement, 4, $0.baseAddress, Int32($0.count), transient) }
        sqlite3_bind_int64(statement, 5, row.time)
        _ = row.payload.withUnsafeBytes {
            sqlite3_bind_blob(statement, 6, $0.baseAddress, Int32($0.count), transient)
        }
        let status = sqlite3_step(statement)
        precondition(status == SQLITE_DONE, "insert failed: \(String(cString: sqlite3_errmsg(self.handle)))")
    }

    /// The number of rows in the table.
    /// - Returns: `SELECT count(*)`.
    func count() -> Int {
        var statement: OpaquePointer?
        precondition(sqlite3_prepare_v2(self.handle, "SELECT count(*) FROM events", -1, &statement, nil) == SQLITE_OK)
        defer { sqlite3_finalize(statement) }
        precondition(sqlite3_step(statement) == SQLITE_ROW, "count failed")
        return Int(sqlite3_column_int64(statement, 0))
    }

    /// Runs one SQL statement on `handle`, stopping the process if it fails.
    private static func execute(_ handle: OpaquePointer, _ sql: String) {
        let status = sqlite3_exec(handle, sql, nil, nil, nil)
        precondition(status == SQLITE_OK, "\(sql): \(String(cString: sqlite3_errmsg(handle)))")
    }
}
