import KeelCore
import KeelEventSourcing
import KeelTestSupport
import XCTest

/// Aggregates from XCTest, as a user's XCTest suite would check its own aggregate.
final class AggregateXCTests: TimeLimitedTestCase {
    func testTheUserInvariantsHoldThroughTheRepository() async throws {
        let users = AggregateFixtures.repository(store: InMemoryEventStore())

        do {
            try await users.execute("7") { try $0.changeEmail(to: "early@x") }
            XCTFail("changing the email of an unregistered user must fail")
        } catch let error as UserError {
            XCTAssertEqual(error, .notRegistered)
        }

        try await users.execute("7", expecting: .new) { try $0.register(email: "ada@x", name: "Ada") }
        do {
            try await users.execute("7") { try $0.register(email: "again@x", name: "Ada") }
            XCTFail("registering twice must fail")
        } catch let error as UserError {
            XCTAssertEqual(error, .alreadyRegistered)
        }
        let saved = try await users.execute("7") { try $0.changeEmail(to: "ada@y") }

        let loaded = try await users.load("7")
        XCTAssertEqual(loaded.version, 1)
        XCTAssertEqual(saved.version, 1)
        XCTAssertEqual(loaded.aggregate.emails, ["ada@x", "ada@y"])
    }

    func testAStaleSaveConflictsAndSnapshotsSpeedUpLoadsInAFileStore() async throws {
        let directory = TemporaryDirectory("aggregate-xctest")
        defer { directory.remove() }
        let store = try FileEventStore(directory: directory.path, configuration: FileStoreFixtures.configuration())
        let users = AggregateFixtures.repository(store: store, snapshots: .every(2))
        try await users.execute("1") { try $0.register(email: "a@x", name: "A") }
        let stale = try await users.load("1")
        try await users.execute("1") { try $0.changeEmail(to: "b@x") }

        do {
            try await users.save(try stale.aggregate.changeEmail(to: "c@x"), for: "1", loaded: stale)
            XCTFail("a save after another writer must conflict")
        } catch let error as AggregateError {
            XCTAssertEqual(error.code, .conflict)
            XCTAssertEqual(error.storeError?.code, .wrongExpectedVersion)
            XCTAssertEqual(error.storeError?.actualVersion, 1)
        }

        let loaded = try await users.load("1")
        XCTAssertEqual(loaded.eventsReplayed, 0)
        XCTAssertEqual(loaded.version, 1)
        XCTAssertEqual(loaded.aggregate.emails, ["a@x", "b@x"])
        await store.close()

        // Reopened, the store still serves the snapshot.
        let reopened = try FileEventStore(directory: directory.path, configuration: FileStoreFixtures.configuration())
        let again = try await AggregateFixtures.repository(store: reopened, snapshots: .every(2)).load("1")
        XCTAssertEqual(again.aggregate, loaded.aggregate)
        XCTAssertEqual(again.eventsReplayed, 0)
        await reopened.close()
    }
}
