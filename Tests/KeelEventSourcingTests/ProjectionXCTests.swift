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
