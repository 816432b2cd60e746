import Foundation
import KeelEventSourcing
import KeelPostgres
import Logging
import PostgresNIO
import Testing
import XCTest

/// Runs `body` with a running client on the test server, then shuts the client down.
private func withClient<T: Sendable>(_ body: (PostgresClient) async throws -> T) async throws -> T {
    let client = PostgresClient(configuration: try PostgresTestEnvironment.clientConfiguration())
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { await client.run() }
        defer { group.cancelAll() }
        return try await body(client)
    }
}

@Suite("PostgreSQL state store", .enabled(if: PostgresTestEnvironment.isEnabled), .timeLimit(.minutes(1)))
struct PostgresStateStoreTests {
    @Test("puts, deletes, prefixes and namespaces, read back from memory and from the table")
    func roundTrip() async throws {
        let schema = PostgresTestEnvironment.freshSchema("state")
        try await withClient { client in
            let store = try await PostgresStateStore.open(client: client, schema: schema)
            let settings = store.namespace("settings")
            try await settings.put(Array("dark".utf8), forKey: "theme")
            try await settings.put([1], forKey: "a%_1")
            try await settings.put([2], forKey: "a%_2")
            try await settings.put([3], forKey: "ab")
            #expect(try await settings.value(forKey: "theme") == Array("dark".utf8))
            #expect(await settings.keys(withPrefix: "a%_") == ["a%_1", "a%_2"])
            var batch = KeyValueBatch()
            batch.deleteAll(withPrefix: "a%_")
            batch.delete("theme")
            try await settings.commit(batch)
            #expect(await settings.keys(withPrefix: "") == ["ab"])
            #expect(store.namespaces() == ["settings"])

            let reopened = try await PostgresStateStore.open(client: client, schema: schema)
            #expect(reopened.keys(withPrefix: "", in: "settings") == ["ab"])
            #expect(try reopened.value(forKey: "ab", in: "settings") == [3])
            #expect(try reopened.value(forKey: "theme", in: "settings") == nil)
        }
    }

    @Test("a commit over two namespaces lands whole or not at all")
    func atomicAcrossNamespaces() async throws {
        let schema = PostgresTestEnvironment.freshSchema("atomic")
        try await withClient { client in
            let store = try await PostgresStateStore.open(client: client, schema: schema)
            var good = KeyValueBatch()
            good.put([1], forKey: "checkpoint")
            var bad = KeyValueBatch()
            // PostgreSQL's text holds no NUL: the second namespace's write fails on the server.
            bad.put([2], forKey: "row\u{0}")
            var changes = StateChanges()
            changes.append(good, in: "read-model")
            changes.append(bad, in: "journal")
            let error = await #expect(throws: KeyValueStoreError.self) { try await store.commit(changes) }
            #expect(error?.code == .storeFailed)
            #expect(try store.value(forKey: "checkpoint", in: "read-model") == nil)

            var both = StateChanges()
            both.append(good, in: "read-model")
            var fine = KeyValueBatch()
            fine.put([2], forKey: "row")
            both.append(fine, in: "journal")
            try await store.commit(both)
            let reopened = try await PostgresStateStore.open(client: client, schema: schema)
            #expect(try reopened.value(forKey: "checkpoint", in: "read-model") == [1])
            #expect(try reopened.value(forKey: "row", in: "journal") == [2])
        }
    }

    @Test("after a failed commit the store reads its table again before the next one")
    func rereadsAfterAFailedCommit() async throws {
        let schema = PostgresTestEnvironment.freshSchema("reread")
        try await withClient { client in
            let store = try await PostgresStateStore.open(client: client, schema: schema)
            // Another writer of the table, which the store's copy does not see.
            let other = try await PostgresStateStore.open(client: client, schema: schema)
            try await other.namespace("n").put([7], forKey: "elsewhere")
            #expect(try store.value(forKey: "elsewhere", in: "n") == nil)
            await #expect(throws: KeyValueStoreError.self) {
                try await store.namespace("n").put([1], forKey: "bad\u{0}")
            }
            try await store.namespace("n").put([2], forKey: "good")
            // The failure's outcome could have been unknown: the copy was read again.
            #expect(try store.value(forKey: "elsewhere", in: "n") == [7])
            #expect(try store.value(forKey: "good", in: "n") == [2])
        }
    }

    @Test("64 concurrent commits all land, and the copy in memory matches the table")
    func concurrentCommits() async throws {
        let schema = PostgresTestEnvironment.freshSchema("concurrent")
        try await withClient { client in
            let store = try await PostgresStateStore.open(client: client, schema: schema)
            let counters = store.namespace("counters")
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<64 {
                    group.addTask {
                        var batch = KeyValueBatch()
                        batch.put([UInt8(index)], forKey: "last")
                        batch.put([UInt8(index)], forKey: "k\(index)")
                        try await counters.commit(batch)
                    }
                }
                try await group.waitForAll()
            }
            #expect(await counters.keys(withPrefix: "k").count == 64)
            let reopened = try await PostgresStateStore.open(client: client, schema: schema)
            // Commits land in the order they were called: the table's `last` is the memory's.
            let last = try await counters.value(forKey: "last")
            #expect(try reopened.value(forKey: "last", in: "counters") == last)
            let keys = await counters.keys(withPrefix: "")
            #expect(reopened.keys(withPrefix: "", in: "counters") == keys)
        }
    }

    @Test("a commit called by a cancelled task still lands, and its caller learns so")
    func cancelledCaller() async throws {
        let schema = PostgresTestEnvironment.freshSchema("cancelled")
        try await withClient { client in
            let store = try await PostgresStateStore.open(client: client, schema: schema)
            let task = Task {
                withUnsafeCurrentTask { $0?.cancel() }
                try await store.namespace("n").put([9], forKey: "k")
            }
            try await task.value
            let reopened = try await PostgresStateStore.open(client: client, schema: schema)
            #expect(try reopened.value(forKey: "k", in: "n") == [9])
        }
    }

    @Test("after close, reads and commits fail with closed; a bad schema name is refused")
    func closedAndInvalid() async throws {
        try await withClient { client in
            let store = try await PostgresStateStore.open(
                client: client,
                schema: PostgresTestEnvironment.freshSchema("closed")
            )
            try await store.namespace("n").put([1], forKey: "k")
            await store.close()
            #expect(throws: KeyValueStoreError.self) { try store.value(forKey: "k", in: "n") }
            let error = await #expect(throws: KeyValueStoreError.self) {
                try await store.namespace("n").put([2], forKey: "k")
            }
            #expect(error?.code == .closed)
            let invalid = await #expect(throws: KeyValueStoreError.self) {
                _ = try await PostgresStateStore.open(client: client, schema: "x\"; DROP TABLE y; --")
            }
            #expect(invalid?.code == .invalidNamespace)
        }
    }
}

final class PostgresStateStoreXCTests: XCTestCase {
    func testCommitAndReopen() async throws {
        guard PostgresTestEnvironment.isEnabled else {
            throw XCTSkip("no KEEL_POSTGRES_HOST: start Integrations/Scripts/postgres-server.sh")
        }
        let schema = PostgresTestEnvironment.freshSchema("xc")
        try await withClient { client in
            let store = try await PostgresStateStore.open(client: client, schema: schema)
            try await store.namespace("a").put([1, 2, 3], forKey: "k")
            let reopened = try await PostgresStateStore.open(client: client, schema: schema)
            XCTAssertEqual(try reopened.value(forKey: "k", in: "a"), [1, 2, 3])
        }
    }
}
