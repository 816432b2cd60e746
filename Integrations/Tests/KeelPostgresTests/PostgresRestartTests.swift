import Foundation
import KeelEventSourcing
import KeelPostgres
import PostgresNIO
import Synchronization
import XCTest

/// The server restarts (`pg_ctl restart -m fast`, which ends every connection) while appenders
/// run and a subscription waits.
///
/// An XCTest, not a Swift Testing test, on purpose: `swift test` runs XCTest cases one at a time
/// and before the Swift Testing suites, so the restart cannot break another test's connections.
final class PostgresRestartTests: TimeLimitedTestCase {
    override class var timeLimit: Duration { .seconds(120) }

    override func setUp() async throws {
        guard PostgresTestEnvironment.isEnabled else {
            throw XCTSkip("KEEL_POSTGRES_HOST is not set: no PostgreSQL server to test against")
        }
    }

    /// Runs `command` with `/bin/bash -c`; returns its exit status.
    ///
    /// The command runs in a subshell that first closes every descriptor above 2. Foundation's
    /// `Process` on Linux learns that its child exited when a descriptor the child inherited is
    /// closed; a server that the command starts in the background would inherit it too, and
    /// keep it open for as long as it runs.
    static func run(_ command: String) async throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [
            "-c",
            #"( for fd in $(ls /proc/$BASHPID/fd); do if [ "$fd" -gt 2 ]; then eval "exec $fd>&-"; fi; done; "#
                + #"eval "$KEEL_TEST_COMMAND" )"#,
        ]
        var environment = ProcessInfo.processInfo.environment
        environment["KEEL_TEST_COMMAND"] = command
        process.environment = environment
        return try await withCheckedThrowingContinuation { continuation in
            process.terminationHandler = { process in continuation.resume(returning: process.terminationStatus) }
            do {
                try process.run()
            } catch {
                process.terminationHandler = nil
                continuation.resume(throwing: error)
            }
        }
    }

    struct AppenderLog: Sendable {
        var acknowledged: [(position: UInt64, tag: String)] = []
        var failures: [EventStoreError] = []
    }

    /// Appends whose session ends (a batch waiting for the head's lock, then the whole server in
    /// a restart) fail with `io`, then succeed again on the same store; nothing acknowledged is
    /// lost; a subscription parked before the restart hears of an event appended by another
    /// process after it.
    func testServerRestart() async throws {
        let command = try XCTUnwrap(
            PostgresTestEnvironment.restartCommand,
            "KEEL_POSTGRES_RESTART is not set: the restart test needs a command that restarts the server"
        )
        let loadSchema = PostgresTestEnvironment.freshSchema("restart_load")
        let watchSchema = PostgresTestEnvironment.freshSchema("restart_watch")
        let store = try await PostgresEventStore.open(
            configuration: PostgresTestEnvironment.configuration(schema: loadSchema)
        )
        // The watcher and the writer after the restart are two processes on a quiet schema: the
        // watcher learns of the writer's event only through its listener.
        let watchConfiguration = try PostgresTestEnvironment.configuration(schema: watchSchema)
        let watcher = try await PostgresEventStore.open(configuration: watchConfiguration)
        let writer = try await PostgresEventStore.open(configuration: watchConfiguration)
        try await writer.append(PostgresTestEnvironment.event("before"), to: "watch-1", expecting: .noStream)

        let probe = ParkingProbe(base: watcher, threshold: 1)
        let stop = Flag()
        let restarted = Flag()
        let acknowledgedAfterRestart = Countdown()
        let acknowledgedBeforeRestart = Countdown()

        let (watched, logs): ([String], [AppenderLog]) = try await withThrowingTaskGroup(
            of: ([String], AppenderLog?).self
        ) { group in
            group.addTask {
                var tags: [String] = []
                for try await event in probe.subscribe(from: 0) {
                    tags.append(event.metadata.custom["tag"] ?? "")
                    if tags.count == 2 { break }
                }
                return (tags, nil)
            }
            await probe.parking.wait()

            for appender in 0..<4 {
                group.addTask {
                    var log = AppenderLog()
                    var index = 0
                    while !stop.isSet {
                        let tag = "a\(appender)-\(index)"
                        index += 1
                        do throws(EventStoreError) {
                            let result = try await store.append(
                                PostgresTestEnvironment.event(tag),
                                to: StreamID("load-\(appender)")
                            )
                            log.acknowledged.append((result.positions.lowerBound, tag))
                            if restarted.isSet {
                                acknowledgedAfterRestart.increment()
                            } else {
                                acknowledgedBeforeRestart.increment()
                            }
                        } catch {
                            log.failures.append(error)
                        }
                    }
                    return ([], log)
                }
            }
            await acknowledgedBeforeRestart.wait(for: 40)
            // Make sure a batch is in flight when the server goes down: hold the head's lock, so
            // that the next batch the writer takes waits for it inside its transaction.
            let blocker = try await PostgresTestEnvironment.connect()
            try await blocker.query("BEGIN", logger: PostgresTestEnvironment.logger)
            try await blocker.query(
                PostgresQuery(unsafeSQL: "SELECT position FROM \"\(loadSchema)\".head FOR UPDATE"),
                logger: PostgresTestEnvironment.logger
            )
            // Once our lock is held, a batch that has asked for it and not got it waits for it
            // (a batch that got it before us has committed): wait for one.
            await store.waitForStatistics { $0.lockRequests > $0.lockedBatches }
            // The statistics count a request as the writer sends it, so the batch they saw may
            // have got the lock before us and be committing: wait until the server shows a
            // statement waiting for our lock (each check is a round trip; nothing else takes
            // locks here). Then end that statement's session while we still hold the lock: a
            // restart alone ends every session at once, and when ours goes first the waiting
            // batch can get the lock and commit before its own session ends, so that no append
            // fails at all (it happened about once in ten runs).
            let waitDeadline = ContinuousClock.now + .seconds(20)
            var waiting: [Int32] = []
            while waiting.isEmpty && ContinuousClock.now < waitDeadline {
                let rows = try await blocker.query(
                    "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid()",
                    logger: PostgresTestEnvironment.logger
                )
                for try await pid in rows.decode(Int32.self) { waiting.append(pid) }
            }
            XCTAssertFalse(waiting.isEmpty, "no batch waited for the head's lock within 20 s")
            for pid in waiting {
                try await blocker.query(
                    PostgresQuery(unsafeSQL: "SELECT pg_terminate_backend(\(pid))"),
                    logger: PostgresTestEnvironment.logger
                )
            }
            let status = try await Self.run(command)
            // The restart ended the blocker's session, and its transaction with it.
            try? await blocker.close()
            XCTAssertEqual(status, 0, "the restart command failed")
            restarted.set()
            // The same store, not a new one, appends again once the server is back.
            await acknowledgedAfterRestart.wait(for: 40)
            stop.set()

            // After the restart, another process appends to the quiet schema; the parked watcher
            // hears of it only if its listener listens again. Its pool may still hold a dead
            // connection for a moment after the restart: retry an append that fails with io
            // (the event may be written twice; the watcher takes the first).
            let deadline = ContinuousClock.now + .seconds(30)
            while true {
                do {
                    try await writer.append(PostgresTestEnvironment.event("after"), to: "watch-1")
                    break
                } catch let error as EventStoreError where error.code == .io && ContinuousClock.now < deadline {
                    continue
                }
            }

            var watched: [String] = []
            var logs: [AppenderLog] = []
            for try await (tags, log) in group {
                if let log { logs.append(log) } else { watched = tags }
            }
            return (watched, logs)
        }

        XCTAssertEqual(watched, ["before", "after"])
        let failures = logs.flatMap(\.failures)
        XCTAssertFalse(failures.isEmpty, "no append failed while the server restarted")
        XCTAssertTrue(failures.allSatisfy { $0.code == .io }, "failures: \(failures)")
        XCTAssertTrue(failures.allSatisfy { $0.message.contains("PostgreSQL") }, "failures: \(failures)")
        // Every acknowledged append is there, at its position.
        let acknowledged = logs.flatMap(\.acknowledged)
        let head = try await store.headPosition()
        let log = try await store.readAll(from: 0, limit: Int(head) + 1)
        XCTAssertEqual(log.map(\.position), Array(0..<head))
        XCTAssertGreaterThan(acknowledged.count, 80)
        for (position, tag) in acknowledged {
            XCTAssertEqual(log[Int(position)].metadata.custom["tag"], tag, "position \(position)")
        }
        await store.close()
        await watcher.close()
        await writer.close()
        try await PostgresTestEnvironment.dropSchema(loadSchema)
        try await PostgresTestEnvironment.dropSchema(watchSchema)
    }
}
