import KeelEventSourcing
import KeelPostgres
import KeelTesting
import XCTest

final class PostgresEventStoreXCTests: TimeLimitedTestCase {
    override func setUp() async throws {
        guard PostgresTestEnvironment.isEnabled else {
            throw XCTSkip("KEEL_POSTGRES_HOST is not set: no PostgreSQL server to test against")
        }
    }

    /// Every conformance check, each on a store on a fresh schema.
    func testConformanceRunAll() async throws {
        var opened: [(store: PostgresEventStore, schema: String)] = []
        do {
            try await EventStoreConformance.runAll {
                let schema = PostgresTestEnvironment.freshSchema("xctest")
                let store = try await PostgresEventStore.open(
                    configuration: PostgresTestEnvironment.configuration(schema: schema)
                )
                opened.append((store, schema))
                return store
            }
        } catch {
            for (store, schema) in opened {
                await store.close()
                try? await PostgresTestEnvironment.dropSchema(schema)
            }
            throw error
        }
        XCTAssertEqual(opened.count, EventStoreConformance.checks.count)
        for (store, schema) in opened {
            await store.close()
            try await PostgresTestEnvironment.dropSchema(schema)
        }
    }

    /// After `close()`, calls throw `closed` and a parked `waitForHead` returns.
    func testCloseEndsWaitsAndRefusesCalls() async throws {
        let schema = PostgresTestEnvironment.freshSchema("xclose")
        let store = try await PostgresEventStore.open(
            configuration: PostgresTestEnvironment.configuration(schema: schema)
        )
        try await store.append(PostgresTestEnvironment.event("a"), to: "close-1")
        let probe = ParkingProbe(base: store, threshold: 1)
        let waiter = Task { await probe.waitForHead(beyond: 1) }
        await probe.parking.wait()
        await store.close()
        await waiter.value
        do {
            try await store.append(PostgresTestEnvironment.event("b"), to: "close-1")
            XCTFail("an append after close succeeded")
        } catch {
            XCTAssertEqual(error.code, .closed)
        }
        do {
            _ = try await store.readAll(from: 0, limit: 10)
            XCTFail("a read after close succeeded")
        } catch {
            XCTAssertEqual(error.code, .closed)
        }
        await store.waitForHead(beyond: 100)
        try await PostgresTestEnvironment.dropSchema(schema)
    }
}
