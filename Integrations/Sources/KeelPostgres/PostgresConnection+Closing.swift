import Logging
import NIOCore
import PostgresNIO
import Synchronization

/// The connection closed while a transaction was using it.
struct ConnectionClosedError: Error, CustomStringConvertible {
    var description: String { "the connection to the PostgreSQL server closed" }
}

extension PostgresConnection {
    /// Runs `query`, or throws ``ConnectionClosedError`` at once when the connection is closed.
    ///
    /// postgres-nio 1.33.2 never completes a query written to a connection whose channel has
    /// closed, and its pool can lease a connection that closed a moment before (the server
    /// restarted): without this check such a query would wait forever.
    @discardableResult
    func checkedQuery(_ query: PostgresQuery, logger: Logger) async throws -> PostgresRowSequence {
        guard !self.isClosed else { throw ConnectionClosedError() }
        return try await self.query(query, logger: logger)
    }
}

extension PostgresEventStore {
    /// Leases a connection from the store's pool and runs `body` with it, cancelling it if the
    /// connection closes first (see ``cancellingOnClose(_:_:)``).
    func withConnection<Value: Sendable>(
        _ body: @escaping @Sendable (PostgresConnection) async throws -> Value
    ) async throws -> Value {
        try await self.client.withConnection { connection in
            try await Self.cancellingOnClose(connection, body)
        }
    }

    /// Runs `body` with `connection`, and cancels it if the connection closes first.
    ///
    /// postgres-nio 1.33.2 can leave a query waiting forever when the server ends the connection
    /// while the query runs (a server restart terminating a transaction that waits for a lock):
    /// the error reaches the query's row stream, which does not always pass it on. Row streams do
    /// end when their task is cancelled, so the body is cancelled when the connection's close
    /// future completes, and this throws ``ConnectionClosedError``.
    /// - Throws: What `body` throws, or ``ConnectionClosedError``.
    static func cancellingOnClose<Value: Sendable>(
        _ connection: PostgresConnection,
        _ body: @escaping @Sendable (PostgresConnection) async throws -> Value
    ) async throws -> Value {
        try await withThrowingTaskGroup(of: Value?.self) { group in
            group.addTask { try await body(connection) }
            group.addTask {
                await Self.waitUntilClosed(connection)
                return nil
            }
            // The first child to finish decides; the other is cancelled (the watcher returns at
            // once; the body's streams end).
            guard let first = try await group.next() else { throw ConnectionClosedError() }
            group.cancelAll()
            guard let value = first else { throw ConnectionClosedError() }
            return value
        }
    }

    /// Suspends until `connection` closes or the task is cancelled.
    private static func waitUntilClosed(_ connection: PostgresConnection) async {
        let signal = OneShot()
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                if signal.park(continuation, isCancelled: Task.isCancelled) {
                    connection.closeFuture.whenComplete { _ in signal.fire() }
                } else {
                    continuation.resume()
                }
            }
        } onCancel: {
            signal.fire()
        }
    }
}

/// A continuation resumed exactly once, by the first ``fire()``; a ``fire()`` before the
/// continuation is parked makes ``park(_:isCancelled:)`` refuse it.
private final class OneShot: Sendable {
    private enum State {
        case idle
        case parked(CheckedContinuation<Void, Never>)
        case fired
    }

    private let state = Mutex(State.idle)

    /// Parks `continuation`; returns `false` (the caller resumes it) when already fired or
    /// `isCancelled`.
    func park(_ continuation: CheckedContinuation<Void, Never>, isCancelled: Bool) -> Bool {
        self.state.withLock { state in
            guard case .idle = state, !isCancelled else {
                state = .fired
                return false
            }
            state = .parked(continuation)
            return true
        }
    }

    /// Resumes the parked continuation, once.
    func fire() {
        let continuation = self.state.withLock { state -> CheckedContinuation<Void, Never>? in
            defer { state = .fired }
            if case .parked(let continuation) = state { return continuation }
            return nil
        }
        continuation?.resume()
    }
}
