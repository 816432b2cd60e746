import KeelEventSourcing
import KeelPostgres
import KeelTesting
import Testing

@Suite("PostgresEventStore conformance", .enabled(if: PostgresTestEnvironment.isEnabled), .timeLimit(.minutes(1)))
struct PostgresEventStoreConformanceTests {
    @Test(arguments: EventStoreConformance.checks)
    func conformance(_ check: EventStoreConformance.Check) async throws {
        try await PostgresTestEnvironment.withFreshStore("conformance") { store in
            try await check.run(on: store)
        }
    }
}
