import KeelEventSourcing
import PostgresNIO
import Synchronization

/// The schema of a store is newer than this build of Keel knows how to use: a newer version of
/// the application migrated it.
///
/// ``PostgresEventStore/open(configuration:)`` throws an ``EventStoreError`` with code
/// ``EventStoreError/Code/corrupted`` whose ``EventStoreError/cause`` is this error; match it to
/// tell an old binary from damaged data.
public struct PostgresSchemaVersionError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The schema.
    public var schema: String
    /// The version recorded in the schema's migrations table.
    public var foundVersion: Int
    /// The newest version this build knows.
    public var supportedVersion: Int

    /// Creates the error.
    /// - Parameters:
    ///   - schema: The schema.
    ///   - foundVersion: The version recorded in the schema.
    ///   - supportedVersion: The newest version this build knows.
    public init(schema: String, foundVersion: Int, supportedVersion: Int) {
        self.schema = schema
        self.foundVersion = foundVersion
        self.supportedVersion = supportedVersion
    }

    /// The versions in words.
    public var description: String {
        "schema \(self.schema) is at version \(self.foundVersion), newer than the \(self.supportedVersion) this build "
            + "of KeelPostgres supports: upgrade the application"
    }
}

extension PostgresEventStore {
    static let closedError = EventStoreError(code: .closed, message: "the store is closed")

    /// Maps what postgres-nio (or the pool) threw while doing `operation` to an
    /// ``EventStoreError``: ``EventStoreError/Code/closed`` once the store is closed, the error
    /// itself when it already is one, and otherwise ``EventStoreError/Code/io`` with the server's
    /// message (or the connection failure) in words.
    func storeError(_ error: any Error, during operation: String, stream: StreamID? = nil) -> EventStoreError {
        if let error = error as? EventStoreError { return error }
        if self.state.withLock({ $0.isClosed }) { return Self.closedError }
        return EventStoreError(
            code: .io,
            stream: stream,
            message: "\(operation) failed: \(Self.describe(error))",
            cause: error
        )
    }

    /// A PostgreSQL error in words: the server's message and SQLSTATE, or the connection failure.
    static func describe(_ error: any Error) -> String {
        if let error = error as? PSQLError {
            if let server = error.serverInfo, let message = server[.message] {
                let state = server[.sqlState].map { " (SQLSTATE \($0))" } ?? ""
                let detail = server[.detail].map { ": \($0)" } ?? ""
                return "PostgreSQL: \(message)\(detail)\(state)"
            }
            var text = "PostgreSQL connection: \(error.code)"
            if let underlying = error.underlying { text += " (\(underlying))" }
            return text
        }
        return String(describing: error)
    }
}
