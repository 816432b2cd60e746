import KeelCore
import KeelEventSourcing
import Testing

/// The aggregate's id on the events a repository appends, whatever view of the store reads them.
@Suite("Aggregate ids on recorded events", .timeLimit(.minutes(2)))
struct AggregateIDTests {
    @Test(
        "every event a repository appends carries its aggregate's id, in stream and global reads",
        arguments: StoreKind.allCases
    )
    func recordedOnEveryEvent(_ kind: StoreKind) async throws {
        try await kind.withStore { store in
            let users = AggregateFixtures.repository(store: store, snapshots: .every(2))
            // An id with dashes, which slicing the stream name at its first `-` would cut.
            try await users.execute("7f3a-01") { try $0.register(email: "ada@example.com", name: "Ada") }
            try await users.execute("7f3a-01") { try $0.changeEmail(to: "ada@example.org") }
            try await users.execute("42") { try $0.register(email: "bob@example.com", name: "Bob") }

            let stream = try await store.readStream("user-7f3a-01")
            #expect(stream.map(\.aggregateID) == ["7f3a-01", "7f3a-01"])
            #expect(stream.map(\.metadata.aggregateID) == ["7f3a-01", "7f3a-01"])
            #expect(stream.allSatisfy { $0.metadata.custom[EventMetadata.aggregateIDKey] == "7f3a-01" })

            let all = try await store.readAll(from: 0, limit: 100)
            let byStream = Dictionary(grouping: all, by: \.stream.name).mapValues { $0.map(\.aggregateID) }
            #expect(byStream["user-7f3a-01"] == ["7f3a-01", "7f3a-01"])
            #expect(byStream["user-42"] == ["42"])
            // The snapshot the policy wrote after the second event names its aggregate too.
            #expect(byStream["$snapshot-user-7f3a-01"] == ["7f3a-01"])
        }
    }

    @Test("the id survives a file store's close and reopen")
    func survivesReopen() async throws {
        let directory = TemporaryDirectory("aggregate-id")
        defer { directory.remove() }
        var store = try FileEventStore(directory: directory.path, configuration: FileStoreFixtures.configuration())
        try await AggregateFixtures.repository(store: store).execute("ada") {
            try $0.register(email: "ada@example.com", name: "Ada")
        }
        await store.close()
        store = try FileEventStore(directory: directory.path, configuration: FileStoreFixtures.configuration())
        #expect(try await store.readAll(from: 0, limit: 10).map(\.aggregateID) == ["ada"])
        await store.close()
    }

    @Test("a namespaced view and the shared store beneath it both give the id, whatever the stream is called there")
    func throughNamespacedViews() async throws {
        let shared = InMemoryEventStore()
        let view = NamespacedEventStore(namespace: "accounts", base: shared)
        let users = AggregateFixtures.repository(store: view)
        try await users.execute("ada") { try $0.register(email: "ada@example.com", name: "Ada") }

        let local = try #require(try await view.readAll(from: 0, limit: 10).first)
        #expect(local.stream == "user-ada")
        #expect(local.aggregateID == "ada")
        #expect(users.aggregateID(of: local) == "ada")

        let global = try #require(try await shared.readAll(from: 0, limit: 10).first)
        #expect(global.stream == "accounts/user-ada")
        #expect(global.aggregateID == "ada")
    }

    @Test("an event appended before the id was recorded reads with none; the repository derives it from its stream")
    func eventsFromBefore() async throws {
        let store = InMemoryEventStore()
        // As a repository of the previous release appended it: metadata without the id.
        let old = EventData(
            type: UserRegistered.eventType,
            metadata: EventMetadata(id: EventID(high: 1, low: 2), time: AggregateFixtures.epoch),
            payload: try JSONEventCodec().encode(UserRegistered(email: "old@example.com", name: "Old"))
        )
        try await store.append(old, to: "user-old-1", expecting: .noStream)
        let users = AggregateFixtures.repository(store: store)
        #expect(try await users.load("old-1").aggregate.email == "old@example.com")
        try await users.execute("old-1") { try $0.changeEmail(to: "new@example.com") }
        try await store.append(old, to: "counter-9")
        try await store.append(old, to: "notes")

        let events = try await store.readAll(from: 0, limit: 10)
        #expect(events.map(\.aggregateID) == [nil, "old-1", nil, nil])
        #expect(events.map { users.aggregateID(of: $0) } == ["old-1", "old-1", nil, nil])
    }
}
