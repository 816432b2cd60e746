import KeelCore
import KeelEventSourcing
import KeelTesting
import XCTest

/// The store from XCTest: the conformance checks run as one async test, as a user's XCTest suite
/// would run them against a store of their own.
final class EventStoreXCTests: XCTestCase {
    func testInMemoryStorePassesEveryConformanceCheck() async throws {
        try await EventStoreConformance.runAll { InMemoryEventStore() }
    }

    func testAConflictWritesNothingAndReportsTheActualVersion() async throws {
        let store = InMemoryEventStore()
        let event = EventData(
            type: "test.happened",
            metadata: EventMetadata(id: EventID(high: 1, low: 1), time: 0),
            payload: [1, 2, 3]
        )
        try await store.append([event, event], to: "x-1", expecting: .noStream)
        do {
            try await store.append([event], to: "x-1", expecting: .exactly(0))
            XCTFail("a stale expected version was accepted")
        } catch {
            XCTAssertEqual(error.code, .wrongExpectedVersion)
            XCTAssertEqual(error.actualVersion, 1)
        }
        let head = try await store.headPosition()
        XCTAssertEqual(head, 2)
    }
}
