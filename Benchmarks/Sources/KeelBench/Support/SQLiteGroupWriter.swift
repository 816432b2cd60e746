import Dispatch
import Foundation
import Synchronization

/// Group commit on SQLite as a careful user would write it: one writer connection on its own
/// thread, and appenders that queue a row and wait until it is committed.
///
/// The writer takes every row queued so far and commits them in one transaction (`BEGIN
/// IMMEDIATE`, one insert each, `COMMIT`, which syncs the WAL under `synchronous=FULL`); then it
/// resumes their appenders and takes what was queued meanwhile. So the rows that arrive while a
/// commit runs share the next one, which is the file store's group commit without its wait for
/// stragglers. An appender is resumed only after its row's transaction committed.
///
/// ```swift
/// let writer = SQLiteGroupWriter(path: directory + "/events.sqlite")
/// await writer.append(row)  // returns once the row is durable
/// await writer.close()
/// ```
///
/// The writer sleeps on a semaphore when the queue is empty; only the append that finds it asleep
/// signals it. It is a `Foundation.Thread` (a pthread), because its `fsync`s block, and must not
/// occupy the cooperative pool, as the file store's writer pthread does not.
final class SQLiteGroupWriter: Sendable {
    /// An appender waiting for its row's commit.
    private struct Pending {
        var row: SQLiteConnection.Row
        var continuation: CheckedContinuation<Void, Never>
    }

    /// The state under the lock.
    private struct State {
        /// The rows queued since the writer last took the queue.
        var queue: [Pending] = []
        /// Whether the writer sleeps on the semaphore (set by the writer, cleared by whoever
        /// signals it, so that it is signalled once per sleep).
        var isWriterAsleep = false
        /// Whether ``close()`` was called.
        var isClosing = false
        /// The task waiting in ``close()`` for the writer to finish.
        var closer: CheckedContinuation<Void, Never>?
        /// Transactions committed.
        var commits = 0
        /// Rows committed.
        var rows = 0
    }

    /// What the writer does next.
    private enum Step {
        /// Commit these rows in one transaction.
        case commit([Pending])
        /// Sleep until an append or ``close()`` signals.
        case sleep
        /// Closing and drained: stop.
        case stop
    }

    private let state = Mutex(State())
    private let wakeUp = DispatchSemaphore(value: 0)

    /// Opens the database and starts the writer thread.
    /// - Parameter path: The database file (created with its table if missing).
    init(path: String) {
        // The connection moves to the writer thread here and is used by it alone from then on,
        // which is SQLite's multi-thread mode contract.
        nonisolated(unsafe) let connection = SQLiteConnection(path: path)
        let thread = Thread { [self] in self.run(connection) }
        thread.name = "sqlite-writer"
        thread.start()
    }

    /// The transactions and rows committed so far; their quotient is the mean group size.
    var committed: (commits: Int, rows: Int) {
        self.state.withLock { ($0.commits, $0.rows) }
    }

    /// Queues `row` and suspends until the transaction that holds it has committed.
    ///
    /// Cancellation does not end the wait: the row is queued and will be committed either way, as
    /// a file store append is.
    /// - Parameter row: The row; its `(stream, version)` must be new.
    func append(_ row: SQLiteConnection.Row) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let wake = self.state.withLock { state -> Bool in
                precondition(!state.isClosing, "append after close")
                state.queue.append(Pending(row: row, continuation: continuation))
                defer { state.isWriterAsleep = false }
                return state.isWriterAsleep
            }
            if wake { self.wakeUp.signal() }
        }
    }

    /// Lets the writer commit what is queued, then stops it and closes the connection; returns when
    /// it has. Call once, after the last ``append(_:)`` returned.
    func close() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let wake = self.state.withLock { state -> Bool in
                precondition(!state.isClosing, "close called twice")
                state.isClosing = true
                state.closer = continuation
                defer { state.isWriterAsleep = false }
                return state.isWriterAsleep
            }
            if wake { self.wakeUp.signal() }
        }
    }

    /// The writer thread: commits what is queued, one transaction per take, until closed.
    private func run(_ connection: SQLiteConnection) {
        writing: while true {
            let step = self.state.withLock { state -> Step in
                if state.queue.isEmpty {
                    if state.isClosing { return .stop }
                    state.isWriterAsleep = true
                    return .sleep
                }
                var batch: [Pending] = []
                swap(&batch, &state.queue)
                return .commit(batch)
            }
            switch step {
            case .commit(let batch):
                connection.execute("BEGIN IMMEDIATE")
                for pending in batch { connection.insert(pending.row) }
                connection.execute("COMMIT")
                self.state.withLock { state in
                    state.commits += 1
                    state.rows += batch.count
                }
                for pending in batch { pending.continuation.resume() }
            case .sleep:
                self.wakeUp.wait()
            case .stop:
                break writing
            }
        }
        connection.close()
        let closer = self.state.withLock { state in
            defer { state.closer = nil }
            return state.closer
        }
        closer?.resume()
    }
}
