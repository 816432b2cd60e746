import KeelEventSourcing
import KeelPostgres
import PostgresNIO
import Testing

/// The writer groups the appends queued while a transaction commits. The tests make the
/// grouping certain rather than likely: a connection of the test's own holds the head row's lock,
/// so that the writer's transaction waits for it while the test queues appends behind it.
@Suite("PostgresEventStore group commit", .enabled(if: PostgresTestEnvironment.isEnabled), .timeLimit(.minutes(1)))
struct PostgresGroupCommitTests {
    /// Locks the schema's head row in a transaction on `connection` until `body` returns.
    static func holdingHeadLock<Result>(
        schema: String,
        on connection: PostgresConnection,
        _ body: () async throws -> Result
    ) async throws -> Result {
        let logger = PostgresTestEnvironment.logger
        try await connection.query("BEGIN", logger: logger)
        try await connection.query(
            PostgresQuery(unsafeSQL: "SELECT position FROM \"\(schema)\".head FOR UPDATE"),
            logger: logger
        )
        do {
            let result = try await body()
            try await connection.query("COMMIT", logger: logger)
            return result
        } catch {
            _ = try? await connection.query("ROLLBACK", logger: logger)
            throw error
        }
    }

    @Test(
        "a stream deleted between a batch's unlocked read and its write: the batch goes again under the lock and sees it"
    )
    func deletionBetweenReadAndWrite() async throws {
        let schema = PostgresTestEnvironment.freshSchema("moved")
        let store = try await PostgresEventStore.open(
            configuration: PostgresTestEnvironment.configuration(schema: schema)
        )
        try await store.append(PostgresTestEnvironment.event("first"), to: "s", expecting: .noStream)
        let before = store.statistics
        let outcome = try await PostgresTestEnvironment.withConnection { other in
            try await Self.holdingHeadLock(schema: schema, on: other) {
                // The batch reads the stream at version 0 and waits for the head to write.
                let append = Task {
                    try await store.append(PostgresTestEnvironment.event("second"), to: "s", expecting: .exactly(0))
                }
                await store.waitForStatistics { $0.lockRequests > before.lockRequests }
                // Meanwhile another process deletes the stream, as `deleteStream` does.
                try await other.query(
                    PostgresQuery(
                        unsafeSQL: """
                            UPDATE "\(schema)".streams SET is_deleted = true, truncate_before = 1 WHERE stream = 's'
                            """
                    ),
                    logger: PostgresTestEnvironment.logger
                )
                try await other.query(
                    PostgresQuery(unsafeSQL: "UPDATE \"\(schema)\".head SET generation = generation + 1"),
                    logger: PostgresTestEnvironment.logger
                )
                return append
            }
        }
        let error = await #expect(throws: EventStoreError.self) { try await outcome.value }
        #expect(error?.code == .wrongExpectedVersion)
        #expect(store.statistics.lockedRetries == before.lockedRetries + 1)
        #expect(try await store.headPosition() == 1)
        await store.close()
        try await PostgresTestEnvironment.dropSchema(schema)
    }

    @Test(
        "a writer that knows its streams writes in one round trip; another process's append makes it read again, and a stale expectation fails"
    )
    func cacheAcrossProcesses() async throws {
        let schema = PostgresTestEnvironment.freshSchema("cache")
        let configuration = try PostgresTestEnvironment.configuration(schema: schema)
        let here = try await PostgresEventStore.open(configuration: configuration)
        let there = try await PostgresEventStore.open(configuration: configuration)
        try await here.append(PostgresTestEnvironment.event("h0"), to: "s", expecting: .noStream)
        let warm = here.statistics
        // Known stream, unmoved head: planned from the writer's cache.
        try await here.append(PostgresTestEnvironment.event("h1"), to: "s", expecting: .exactly(0))
        #expect(here.statistics.cachedBatches == warm.cachedBatches + 1)
        #expect(here.statistics.lockedRetries == warm.lockedRetries)

        // Another process appends to the same stream: the first writer's copy is stale now.
        try await there.append(PostgresTestEnvironment.event("t2"), to: "s", expecting: .exactly(1))
        let before = here.statistics
        let error = await #expect(throws: EventStoreError.self) {
            try await here.append(PostgresTestEnvironment.event("h2"), to: "s", expecting: .exactly(1))
        }
        #expect(error?.code == .wrongExpectedVersion)
        // The cached attempt wrote nothing (the head had moved); the locked retry saw version 2.
        #expect(here.statistics.cachedBatches == before.cachedBatches + 1)
        #expect(here.statistics.lockedRetries == before.lockedRetries + 1)
        let written = try await here.append(PostgresTestEnvironment.event("h3"), to: "s", expecting: .exactly(2))
        #expect(written.streamVersion == 3 && written.positions == 3..<4)
        let tags = try await here.readStream("s", from: 0, direction: .forwards, limit: 10).map {
            $0.metadata.custom["tag"]
        }
        #expect(tags == ["h0", "h1", "t2", "h3"])
        await here.close()
        await there.close()
        try await PostgresTestEnvironment.dropSchema(schema)
    }

    @Test("64 concurrent appends commit in fewer transactions than appends")
    func concurrentAppendsShareTransactions() async throws {
        let schema = PostgresTestEnvironment.freshSchema("group")
        let store = try await PostgresEventStore.open(
            configuration: PostgresTestEnvironment.configuration(schema: schema)
        )
        let before = store.statistics
        let results = try await PostgresTestEnvironment.withConnection { blocker in
            try await withThrowingTaskGroup(of: AppendResult.self) { group in
                try await Self.holdingHeadLock(schema: schema, on: blocker) {
                    for index in 0..<64 {
                        group.addTask {
                            try await store.append(
                                PostgresTestEnvironment.event("g\(index)"),
                                to: StreamID("group-\(index % 8)")
                            )
                        }
                    }
                    // Every append is queued (or taken by the writer, which waits for the lock).
                    await store.waitForStatistics { $0.enqueuedAppends >= before.enqueuedAppends + 64 }
                }
                var results: [AppendResult] = []
                for try await result in group { results.append(result) }
                return results
            }
        }
        let after = store.statistics
        #expect(results.count == 64)
        #expect(Set(results.flatMap { Array($0.positions) }) == Set(0..<64))
        #expect(after.committedAppends - before.committedAppends == 64)
        // The first batch may hold one append or several; the rest wait behind the lock and go
        // in one more transaction.
        let transactions = after.committedTransactions - before.committedTransactions
        #expect(transactions >= 1 && transactions <= 2, "64 appends took \(transactions) transactions")
        // Nobody moved the head while the batches waited for it: no batch went again under the lock.
        #expect(after.lockedRetries == before.lockedRetries)
        #expect(try await store.readAll(from: 0, limit: 100).map(\.position) == Array(0..<64))
        await store.close()
        try await PostgresTestEnvironment.dropSchema(schema)
    }

    @Test("a conflicting append in a batch fails alone; the others commit")
    func conflictsFailAlone() async throws {
        let schema = PostgresTestEnvironment.freshSchema("conflict")
        let store = try await PostgresEventStore.open(
            configuration: PostgresTestEnvironment.configuration(schema: schema)
        )
        try await store.append(PostgresTestEnvironment.event("k0"), to: "known-1", expecting: .noStream)
        let before = store.statistics

        typealias Outcome = (name: String, result: Result<AppendResult, EventStoreError>)
        let outcomes = try await PostgresTestEnvironment.withConnection { blocker in
            try await withThrowingTaskGroup(of: Outcome.self) { group in
                try await Self.holdingHeadLock(schema: schema, on: blocker) {
                    // Each append is queued before the next is made, so that the queue's order is
                    // the order below.
                    var queued = 0
                    func add(
                        _ name: String,
                        _ tags: [String],
                        to stream: StreamID,
                        expecting expected: ExpectedVersion
                    ) async {
                        group.addTask {
                            do throws(EventStoreError) {
                                let result = try await store.append(
                                    tags.map { PostgresTestEnvironment.event($0) },
                                    to: stream,
                                    expecting: expected
                                )
                                return (name, .success(result))
                            } catch {
                                return (name, .failure(error))
                            }
                        }
                        queued += 1
                        let target = before.enqueuedAppends + queued
                        await store.waitForStatistics { $0.enqueuedAppends >= target }
                    }
                    // The writer takes this one alone and waits for the lock...
                    await add("first", ["f0"], to: "first-1", expecting: .any)
                    await store.waitForStatistics { $0.takenAppends >= before.takenAppends + 1 }
                    // ...while these queue behind it, to be taken as one batch.
                    await add("a", ["a0"], to: "fresh-1", expecting: .noStream)
                    await add("b", ["b0"], to: "fresh-1", expecting: .noStream)
                    await add("c", ["c0"], to: "known-1", expecting: .exactly(5))
                    await add("d", ["d0"], to: "known-1", expecting: .exactly(0))
                    await add("e", ["e0", "e1"], to: "fresh-2", expecting: .any)
                    await add("f", [], to: "known-1", expecting: .streamExists)
                }
                var outcomes: [String: Result<AppendResult, EventStoreError>] = [:]
                for try await outcome in group { outcomes[outcome.name] = outcome.result }
                return outcomes
            }
        }
        let after = store.statistics
        #expect(after.committedTransactions - before.committedTransactions == 2)
        #expect(after.takenAppends - before.takenAppends == 7)

        #expect(try outcomes["first"]?.get().positions == 1..<2)
        let a = try #require(try outcomes["a"]?.get())
        #expect(a.streamVersion == 0)
        let conflictB = try #require(outcomes["b"].flatMap { try? $0.failure() })
        #expect(
            conflictB.code == .wrongExpectedVersion && conflictB.actualVersion == 0 && conflictB.stream == "fresh-1"
        )
        let conflictC = try #require(outcomes["c"].flatMap { try? $0.failure() })
        #expect(
            conflictC.code == .wrongExpectedVersion && conflictC.actualVersion == 0 && conflictC.expected == .exactly(5)
        )
        let d = try #require(try outcomes["d"]?.get())
        #expect(d.streamVersion == 1)
        let e = try #require(try outcomes["e"]?.get())
        #expect(e.streamVersion == 1)
        let f = try #require(try outcomes["f"]?.get())
        #expect(f.streamVersion == 1 && f.positions.isEmpty)
        // The accepted appends of the second batch got contiguous positions, in queue order.
        #expect(a.positions == 2..<3 && d.positions == 3..<4 && e.positions == 4..<6)
        #expect(try await store.headPosition() == 6)
        #expect(try await store.readStream("fresh-1").map { $0.metadata.custom["tag"] } == ["a0"])
        await store.close()
        try await PostgresTestEnvironment.dropSchema(schema)
    }
}

extension Result {
    /// The failure, or a thrown error when the result is a success.
    func failure() throws -> Failure {
        guard case .failure(let error) = self else { throw UnexpectedSuccess() }
        return error
    }
}

struct UnexpectedSuccess: Error {}
