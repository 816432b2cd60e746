import KeelCore
import KeelEventSourcing
import Testing

/// The read model and the checkpoint are one atomic commit: whatever a crash interrupts, after
/// reopening the read model holds exactly the events before the stored checkpoint.
@Suite("Projection checkpoints across crashes")
struct ProjectionCrashTests {
    /// Checks that the read model in `projectionStore` is exactly the events before its checkpoint.
    static func expectInStep(_ projectionStore: ProjectionStore, events: any EventStore) async throws -> UInt64 {
        let checkpoint = try await projectionStore.checkpoint()
        let userEvents = try await events.readAll(from: 0, limit: .max)
            .filter { $0.position < checkpoint && $0.stream.category == "user" }
        #expect(await UsersByEmailDomain.applied(in: projectionStore) == userEvents.count)
        #expect(await UsersByEmailDomain.seen(in: projectionStore) == userEvents.map(\.position))
        for domain in ["example.com", "keel.dev", "moved.org"] {
            #expect(
                await UsersByEmailDomain.users(at: domain, in: projectionStore)
                    == (try await UserEvents.expectedUsers(at: domain, in: events, before: checkpoint))
            )
        }
        return checkpoint
    }

    @Test(
        "a store that fails after N appends leaves the read model and the checkpoint in step",
        arguments: [0, 1, 2, 3, 5, 8]
    )
    func failingAppends(budget: Int) async throws {
        let eventsDirectory = TemporaryDirectory("proj-events")
        let modelDirectory = TemporaryDirectory("proj-model")
        defer {
            eventsDirectory.remove()
            modelDirectory.remove()
        }
        let events = try FileEventStore(directory: eventsDirectory.path)
        let last = try await UserEvents.appendMix(count: 30, to: events)
        var configuration = ProjectionRunner.Configuration()
        configuration.pageSize = 4

        let modelStore = try FileEventStore(directory: modelDirectory.path)
        let crashing = FailingEventStore(modelStore, failAfter: budget)
        let keyValueStore = try await EventStoreKeyValueStore.open(store: crashing, namespace: "users")
        let runner = ProjectionRunner(
            projection: UsersByEmailDomain(),
            eventStore: events,
            projectionStore: ProjectionStore(keyValueStore: keyValueStore),
            configuration: configuration
        )
        await runner.start()
        let failure = await #expect(throws: ProjectionError.self) { try await runner.waitUntilCaughtUp(to: last) }
        #expect(failure?.code == .storage)
        await runner.stop()
        await modelStore.close()

        // Reopen, as after a restart, and check that nothing is half-committed.
        let reopenedModel = try FileEventStore(directory: modelDirectory.path)
        let reopened = ProjectionStore(
            keyValueStore: try await EventStoreKeyValueStore.open(store: reopenedModel, namespace: "users")
        )
        let checkpoint = try await Self.expectInStep(reopened, events: events)
        #expect(checkpoint == UInt64(budget * 4))

        // Resuming completes the read model without applying anything twice.
        let resumed = ProjectionRunner(
            projection: UsersByEmailDomain(),
            eventStore: events,
            projectionStore: reopened,
            configuration: configuration
        )
        await resumed.start()
        try await resumed.waitUntilCaughtUp(to: last)
        await resumed.stop()
        #expect(try await Self.expectInStep(reopened, events: events) == last + 1)
        await reopenedModel.close()
        await events.close()
    }

    @Test("closing the store under a running runner (a kill) and reopening finds them in step", arguments: 0..<4)
    func killAndReopen(trial: Int) async throws {
        let directory = TemporaryDirectory("proj-kill")
        defer { directory.remove() }
        var configuration = ProjectionRunner.Configuration()
        configuration.pageSize = 3 + trial
        do {
            let store = try FileEventStore(directory: directory.path)
            let runner = try await makeRunner(store: store, configuration: configuration)
            await runner.start()
            // Appends and commits interleave; the close lands wherever the runner happens to be.
            let last = try await UserEvents.appendMix(count: 10 + 5 * trial, to: store)
            try await runner.waitUntilCaughtUp(to: last / 2)
            await store.close()
            await runner.stop()
        }
        let store = try FileEventStore(directory: directory.path)
        let keyValueStore = try await EventStoreKeyValueStore.open(store: store, namespace: "projection.users")
        let projectionStore = ProjectionStore(keyValueStore: keyValueStore)
        let checkpoint = try await Self.expectInStep(projectionStore, events: store)
        #expect(checkpoint > 0)

        let resumed = ProjectionRunner(
            projection: UsersByEmailDomain(),
            eventStore: store,
            projectionStore: projectionStore,
            configuration: configuration
        )
        await resumed.start()
        let userEvents = try await store.readAll(from: 0, limit: .max).filter { $0.stream.category == "user" }
        let lastUserEvent = try #require(userEvents.last?.position)
        try await resumed.waitUntilCaughtUp(to: lastUserEvent)
        await resumed.stop()
        #expect(await UsersByEmailDomain.applied(in: projectionStore) == userEvents.count)
        #expect(await UsersByEmailDomain.seen(in: projectionStore) == userEvents.map(\.position))
        await store.close()
    }
}
