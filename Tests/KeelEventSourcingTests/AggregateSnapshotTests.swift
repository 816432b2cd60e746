import KeelCore
import KeelEventSourcing
import Testing

@Suite("Aggregate snapshots", .timeLimit(.minutes(2)))
struct AggregateSnapshotTests {
    /// Registers user `id` and changes its email `changes` times, one event per command.
    private func populate(
        _ users: AggregateRepository<User>,
        id: String = "1",
        changes: Int
    ) async throws -> [SavedAggregate<User>] {
        var saved = [try await users.execute(id) { try $0.register(email: "e0@x", name: "A") }]
        for index in 0..<changes {
            saved.append(try await users.execute(id) { try $0.changeEmail(to: "e\(index + 1)@x") })
        }
        return saved
    }

    private func envelopes(_ store: any EventStore, id: String = "1") async throws -> [SnapshotEnvelope] {
        let snapshots = try await store.readAll(from: 0, limit: 10_000).filter {
            $0.stream.name == "$snapshot-user-\(id)"
        }
        return try snapshots.map { try JSONEventCodec().decode(SnapshotEnvelope.self, from: $0.payload) }
    }

    @Test(
        "every 3 events: snapshots at versions 2 and 5; a load reads the snapshot and the tail only",
        arguments: StoreKind.allCases
    )
    func everyN(_ kind: StoreKind) async throws {
        try await kind.withStore { base in
            let store = RecordingStore(base)
            let recorder = InMemoryRecorder()
            let users = AggregateFixtures.repository(store: store, snapshots: .every(3), telemetry: recorder)
            let saved = try await self.populate(users, changes: 6)
            #expect(saved.map(\.version) == Array(0...6))
            #expect(
                saved.map(\.snapshot.description) == [
                    "not due", "not due", "written (stream version 2)", "not due", "not due",
                    "written (stream version 5)", "not due",
                ]
            )
            let envelopes = try await self.envelopes(base)
            #expect(envelopes.map(\.streamVersion) == [2, 5])
            #expect(envelopes.map(\.schemaVersion) == [1, 1])
            #expect(recorder.counter("keel.aggregate.snapshot.written", dimensions: [("category", "user")]) == 2)
            #expect(try await base.streamMetadata(for: "$snapshot-user-1") == StreamMetadata(maxCount: 2))

            let readsBefore = store.reads.count
            let loaded = try await users.load("1")
            let reads = Array(store.reads.dropFirst(readsBefore))
            #expect(
                reads == [
                    .init(stream: "$snapshot-user-1", from: .max, direction: .backwards, returned: 1),
                    .init(stream: "user-1", from: 6, direction: .forwards, returned: 1),
                ]
            )
            #expect(loaded.eventsReplayed == 1)
            #expect(loaded.version == 6)
            #expect("\(loaded.snapshot)" == "used (stream version 5)")
            #expect(loaded.aggregate.emails == (0...6).map { "e\($0)@x" })

            // The same state as a repository without snapshots builds from every event.
            let plain = AggregateFixtures.repository(store: base)
            let full = try await plain.load("1")
            #expect(full.aggregate == loaded.aggregate)
            #expect(full.eventsReplayed == 7)
            #expect("\(full.snapshot)" == "disabled")
        }
    }

    @Test("a snapshot at the stream's head: the load reads no events and checks the version")
    func snapshotAtHead() async throws {
        let base = InMemoryEventStore()
        let store = RecordingStore(base)
        let users = AggregateFixtures.repository(store: store, snapshots: .every(3))
        _ = try await self.populate(users, changes: 2)
        let loaded = try await users.load("1")
        #expect(loaded.version == 2)
        #expect(loaded.eventsReplayed == 0)
        #expect("\(loaded.snapshot)" == "used (stream version 2)")
        #expect(loaded.aggregate.emails == ["e0@x", "e1@x", "e2@x"])
    }

    @Test("old snapshots are hidden by the snapshot stream's maxCount")
    func retainedSnapshots() async throws {
        let store = InMemoryEventStore()
        let users = AggregateFixtures.repository(store: store, snapshots: .every(1))
        _ = try await self.populate(users, changes: 4)
        let visible = try await store.readStream("$snapshot-user-1")
        #expect(visible.count == 2)
        #expect(try await self.envelopes(store).map(\.streamVersion) == [0, 1, 2, 3, 4])
    }

    @Test(
        "a snapshot of another schema version is ignored, reported, and replaced on the next save",
        arguments: StoreKind.allCases
    )
    func staleSnapshot(_ kind: StoreKind) async throws {
        try await kind.withStore { store in
            let oldRelease = AggregateFixtures.repository(store: store, snapshots: .every(3))
            _ = try await self.populate(oldRelease, changes: 3)
            #expect(try await self.envelopes(store).map(\.schemaVersion) == [1])

            let recorder = InMemoryRecorder()
            let newRelease = AggregateFixtures.repository(
                UserNextRelease.self,
                store: store,
                snapshots: .every(3),
                telemetry: recorder
            )
            let loaded = try await newRelease.load("1")
            #expect("\(loaded.snapshot)" == "stale (version 1, current 2)")
            #expect(loaded.snapshot.isIgnored)
            #expect(loaded.eventsReplayed == 4)
            #expect(loaded.aggregate.user.emails == ["e0@x", "e1@x", "e2@x", "e3@x"])
            #expect(
                recorder.counter(
                    "keel.aggregate.snapshot.ignored",
                    dimensions: [("category", "user"), ("reason", "stale")]
                ) == 1
            )

            // 4 replayed + 1 new event is past the interval: the next save writes a v2 snapshot.
            let saved = try await newRelease.execute("1") { try $0.user.changeEmail(to: "e4@x") }
            #expect("\(saved.snapshot)" == "written (stream version 4)")
            #expect(try await self.envelopes(store).map(\.schemaVersion) == [1, 2])
            let reloaded = try await newRelease.load("1")
            #expect("\(reloaded.snapshot)" == "used (stream version 4)")
            #expect(reloaded.aggregate.user.emails.last == "e4@x")
        }
    }

    @Test(
        "a corrupt snapshot is ignored and reported; the state is rebuilt from the events",
        arguments: ["garbage envelope", "garbage state", "not a snapshot"]
    )
    func corruptSnapshot(_ corruption: String) async throws {
        let store = InMemoryEventStore()
        let recorder = InMemoryRecorder()
        let users = AggregateFixtures.repository(store: store, snapshots: .every(100), telemetry: recorder)
        _ = try await self.populate(users, changes: 2)
        let bad: EventData
        switch corruption {
        case "garbage envelope":
            bad = EventData(
                type: "$snapshot",
                metadata: EventMetadata(id: EventID(high: 1, low: 1), time: 0),
                payload: Array("{not json".utf8)
            )
        case "garbage state":
            // The right schema version and a plausible stream version, but a state that does not decode.
            bad = try AggregateFixtures.snapshotEvent(
                SnapshotEnvelope(schemaVersion: 1, streamVersion: 1, payload: Array(#"{"emails":7}"#.utf8))
            )
        default:
            bad = try AggregateFixtures.serializer().encode(
                Counted(by: 1),
                metadata: EventMetadata(id: EventID(high: 1, low: 1), time: 0)
            )
        }
        try await store.append(bad, to: "$snapshot-user-1")

        let loaded = try await users.load("1")
        guard case .unreadable(let error) = loaded.snapshot else {
            Issue.record("expected an unreadable snapshot, got \(loaded.snapshot)")
            return
        }
        #expect(error.code == .snapshotUnreadable)
        #expect(error.stream == "$snapshot-user-1")
        #expect(loaded.snapshot.isIgnored)
        #expect(loaded.eventsReplayed == 3)
        #expect(loaded.version == 2)
        #expect(loaded.aggregate.emails == ["e0@x", "e1@x", "e2@x"])
        #expect(
            recorder.counter(
                "keel.aggregate.snapshot.ignored",
                dimensions: [("category", "user"), ("reason", "unreadable")]
            ) == 1
        )
        // Commands still work on the rebuilt state.
        let saved = try await users.execute("1") { try $0.changeEmail(to: "e3@x") }
        #expect(saved.aggregate.emails.count == 4)
    }

    @Test("a snapshot claiming a version the stream does not have is ignored")
    func snapshotAheadOfStream() async throws {
        let store = InMemoryEventStore()
        let recorder = InMemoryRecorder()
        let users = AggregateFixtures.repository(store: store, snapshots: .every(100), telemetry: recorder)
        _ = try await self.populate(users, changes: 1)
        var wrong = User()
        wrong.email = "wrong@x"
        try await store.append(
            try AggregateFixtures.snapshotEvent(SnapshotEnvelope(encoding: wrong, schemaVersion: 1, streamVersion: 9)),
            to: "$snapshot-user-1"
        )
        let loaded = try await users.load("1")
        #expect("\(loaded.snapshot)" == "ahead of stream (snapshot at 9, stream at 1)")
        #expect(loaded.aggregate.emails == ["e0@x", "e1@x"])
        #expect(loaded.version == 1)
        #expect(
            recorder.counter(
                "keel.aggregate.snapshot.ignored",
                dimensions: [("category", "user"), ("reason", "ahead_of_stream")]
            ) == 1
        )
    }

    @Test("a failed snapshot write does not fail the command; it is reported and retried on the next save")
    func snapshotWriteFailure() async throws {
        let base = InMemoryEventStore()
        let recorder = InMemoryRecorder()
        let failing = RecordingStore(base, failSnapshotAppends: true)
        let users = AggregateFixtures.repository(store: failing, snapshots: .every(2), telemetry: recorder)
        try await users.execute("1") { try $0.register(email: "e0@x", name: "A") }
        let saved = try await users.execute("1") { try $0.changeEmail(to: "e1@x") }
        guard case .failed(let error) = saved.snapshot else {
            Issue.record("expected a failed snapshot, got \(saved.snapshot)")
            return
        }
        #expect(error.code == .snapshotWriteFailed)
        #expect(error.storeError?.code == .io)
        #expect(saved.version == 1)
        #expect(recorder.counter("keel.aggregate.snapshot.write_failed", dimensions: [("category", "user")]) == 1)
        #expect(try await base.readStream("user-1").count == 2, "the events are stored")

        // With a working store, the next save writes the overdue snapshot.
        let healthy = AggregateFixtures.repository(store: base, snapshots: .every(2))
        let next = try await healthy.execute("1") { try $0.changeEmail(to: "e2@x") }
        #expect("\(next.snapshot)" == "written (stream version 2)")
    }

    @Test("snapshot + a tail holding an old-version event: the tail event is upcast", arguments: StoreKind.allCases)
    func snapshotAndUpcastTail(_ kind: StoreKind) async throws {
        try await kind.withStore { store in
            let users = AggregateFixtures.repository(store: store, snapshots: .every(2))
            _ = try await self.populate(users, changes: 1)
            #expect(try await self.envelopes(store).map(\.streamVersion) == [1])
            // An older release appends a v1 email change after the snapshot.
            try await store.append(AggregateFixtures.emailChangedV1("legacy@x"), to: "user-1", expecting: .exactly(1))

            let loaded = try await users.load("1")
            #expect("\(loaded.snapshot)" == "used (stream version 1)")
            #expect(loaded.eventsReplayed == 1)
            #expect(loaded.version == 2)
            #expect(loaded.aggregate.emails == ["e0@x", "e1@x", "legacy@x"])
            #expect(loaded.aggregate.email == "legacy@x")
        }
    }

    @Test("with the policy never, the snapshot stream is neither written nor read")
    func never() async throws {
        let base = InMemoryEventStore()
        let store = RecordingStore(base)
        let users = AggregateFixtures.repository(store: store)
        let saved = try await self.populate(users, changes: 5)
        #expect(saved.allSatisfy { "\($0.snapshot)" == "not due" })
        #expect(store.reads.allSatisfy { $0.stream == "user-1" })
        #expect(store.appends.allSatisfy { $0.stream == "user-1" })
    }
}
