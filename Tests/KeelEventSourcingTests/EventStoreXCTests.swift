import KeelCore
import KeelEventSourcing
import KeelTestSupport
import KeelTesting
import XCTest

/// The store from XCTest: the conformance checks run as one async test, as a user's XCTest suite
/// would run them against a store of their own.
final class EventStoreXCTests: TimeLimitedTestCase {
    func testInMemoryStorePassesEveryConformanceCheck() async throws {
        try await EventStoreConformance.runAll { InMemoryEventStore() }
    }

    func testFileStorePassesEveryConformanceCheckAndSurvivesAReopen() async throws {
        let directory = TemporaryDirectory("xctest")
        defer { directory.remove() }
        var index = 0
        try await EventStoreConformance.runAll {
            index += 1
            return try FileEventStore(directory: "\(directory.path)/\(index)")
        }
        let store = try FileEventStore(directory: "\(directory.path)/1")
        XCTAssertTrue(store.recoveryReport.isClean)
        let events = try await store.readStream("order-1")
        XCTAssertEqual(events.map(\.version), [0, 1, 2])
        await store.close()
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
