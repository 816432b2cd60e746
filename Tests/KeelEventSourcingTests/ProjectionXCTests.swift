import KeelCore
import KeelEventSourcing
import KeelTestSupport
import XCTest

final class ProjectionXCTests: TimeLimitedTestCase {
    func testReadYourWritesWithUsersByEmailDomain() async throws {
        let store = InMemoryEventStore()
        let runner = try await makeRunner(store: store)
        await runner.start()

        let written = try await store.append(UserEvents.registered(7, domain: "example.com"), to: "user-u7")
        try await runner.waitUntilCaughtUp(to: written.positions.upperBound - 1)
        var users = await UsersByEmailDomain.users(at: "example.com", in: runner.projectionStore)
        XCTAssertEqual(users, ["u7"])

        let changed = try await store.append(UserEvents.changed(7, from: "example.com", to: "keel.dev"), to: "user-u7")
        try await runner.waitUntilCaughtUp(to: changed.positions.lowerBound)
        users = await UsersByEmailDomain.users(at: "example.com", in: runner.projectionStore)
        XCTAssertEqual(users, [])
        users = await UsersByEmailDomain.users(at: "keel.dev", in: runner.projectionStore)
        XCTAssertEqual(users, ["u7"])
        await runner.stop()
    }

    func testTypedReadModelReadsBackCodableValues() async throws {
        let store = InMemoryEventStore()
        let users = AggregateFixtures.repository(store: store)
        try await users.execute("ada") { try $0.register(email: "ada@example.com", name: "Ada") }
        let changed = try await users.execute("ada") { try $0.changeEmail(to: "ada@example.org") }
        let runner = ProjectionRunner(
            projection: UserCards(),
            eventStore: store,
            projectionStore: ProjectionStore(keyValueStore: InMemoryStateStore().namespace("user-cards"))
        )
        await runner.start()
        try await runner.waitUntilCaughtUp(to: changed.positions.upperBound - 1)
        let card = try await runner.projectionStore.value(UserCard.self, forKey: "user/ada")
        XCTAssertEqual(card, UserCard(name: "Ada", email: "ada@example.org", emailChanges: 1))
        do {
            _ = try await runner.projectionStore.value(String.self, forKey: "user/ada")
            XCTFail("a UserCard decoded as a String")
        } catch {
            XCTAssertEqual(error.code, .decodingFailed)
            XCTAssertEqual(error.key, "user/ada")
        }
        await runner.stop()
    }

    func testRebuildGivesTheSameReadModel() async throws {
        let store = InMemoryEventStore()
        let last = try await UserEvents.appendMix(count: 10, to: store)
        let runner = try await makeRunner(store: store)
        await runner.start()
        try await runner.waitUntilCaughtUp(to: last)
        let before = await UsersByEmailDomain.users(at: "moved.org", in: runner.projectionStore)
        try await runner.rebuild()
        try await runner.waitUntilCaughtUp(to: last)
        let after = await UsersByEmailDomain.users(at: "moved.org", in: runner.projectionStore)
        XCTAssertEqual(before, after)
        XCTAssertEqual(before, ["u0", "u4", "u8"])
        await runner.stop()
    }
}
