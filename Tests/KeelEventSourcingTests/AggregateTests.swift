import KeelCore
import KeelEventSourcing
import KeelTesting
import Synchronization
import Testing

@Suite("Aggregates", .timeLimit(.minutes(2)))
struct AggregateTests {
    // MARK: Invariants

    @Test("a user registers, changes email, and loads back with both changes", arguments: StoreKind.allCases)
    func happyPath(_ kind: StoreKind) async throws {
        try await kind.withStore { store in
            let users = AggregateFixtures.repository(store: store)
            let registered = try await users.execute("42", expecting: .new) { user in
                try user.register(email: "ada@example.com", name: "Ada")
            }
            #expect(registered.version == 0)
            #expect(registered.attempts == 1)
            #expect(registered.events == [.registered(UserRegistered(email: "ada@example.com", name: "Ada"))])
            let changed = try await users.execute("42", expecting: .existing) { user in
                try user.changeEmail(to: "ada@example.org")
            }
            #expect(changed.version == 1)
            #expect(changed.aggregate.email == "ada@example.org")

            let loaded = try await users.load("42")
            #expect(loaded.version == 1)
            #expect(loaded.exists)
            #expect(loaded.expectedVersion == .exactly(1))
            #expect(loaded.eventsReplayed == 2)
            #expect(loaded.aggregate == changed.aggregate)
            #expect(loaded.aggregate.emails == ["ada@example.com", "ada@example.org"])
            #expect(loaded.aggregate.name == "Ada")

            let stored = try await store.readStream("user-42")
            #expect(stored.map(\.type) == [UserRegistered.eventType, UserEmailChanged.eventType])
            #expect(try await store.streamVersion("$snapshot-user-42") == nil, "the policy is never")
        }
    }

    @Test("registering twice fails with the domain error and writes nothing")
    func registerTwice() async throws {
        let store = InMemoryEventStore()
        let users = AggregateFixtures.repository(store: store)
        try await users.execute("1") { try $0.register(email: "a@x", name: "A") }
        await #expect(throws: UserError.alreadyRegistered) {
            try await users.execute("1") { try $0.register(email: "b@x", name: "B") }
        }
        #expect(try await store.streamVersion("user-1") == 0)
        #expect(try await users.load("1").aggregate.email == "a@x")
    }

    @Test("changing the email before registering fails with the domain error and writes nothing")
    func changeBeforeRegistering() async throws {
        let store = InMemoryEventStore()
        let users = AggregateFixtures.repository(store: store)
        await #expect(throws: UserError.notRegistered) {
            try await users.execute("1") { try $0.changeEmail(to: "b@x") }
        }
        #expect(try await store.streamVersion("user-1") == nil)
        let loaded = try await users.load("1")
        #expect(loaded.version == nil)
        #expect(!loaded.exists)
        #expect(loaded.expectedVersion == .noStream)
        #expect(loaded.aggregate == User())
    }

    @Test("existence expectations: new fails on an existing stream, existing fails on a new one")
    func existence() async throws {
        let users = AggregateFixtures.repository(store: InMemoryEventStore())
        let runs = RunCounter()
        await #expect {
            try await users.execute("1", expecting: .existing) { _ in
                runs.increment()
                return []
            }
        } throws: { ($0 as? AggregateError)?.code == .notFound }
        try await users.execute("1", expecting: .new) { try $0.register(email: "a@x", name: "A") }
        await #expect {
            try await users.execute("1", expecting: .new) { _ in
                runs.increment()
                return []
            }
        } throws: { ($0 as? AggregateError)?.code == .alreadyExists }
        #expect(runs.value == 0, "the command never runs when the expectation fails")
        #expect(AggregateExistence.any.isSatisfied(by: nil) && AggregateExistence.any.isSatisfied(by: 3))
    }

    @Test("a command that emits nothing writes nothing and keeps the version")
    func emptyCommand() async throws {
        let store = InMemoryEventStore()
        let users = AggregateFixtures.repository(store: store)
        try await users.execute("1") { try $0.register(email: "a@x", name: "A") }
        let head = try await store.headPosition()
        let saved = try await users.execute("1") { _ in [] }
        #expect(saved.version == 0)
        #expect(saved.events.isEmpty)
        #expect(saved.positions.isEmpty)
        #expect(try await store.headPosition() == head)
    }

    @Test("a single-event aggregate uses its DomainEvent type as its Event")
    func singleEventAggregate() async throws {
        let counters = AggregateFixtures.repository(CounterAggregate.self, store: InMemoryEventStore())
        for by in 1...4 {
            try await counters.execute("c") { _ in [Counted(by: by)] }
        }
        let loaded = try await counters.load("c")
        #expect(loaded.aggregate.total == 10)
        #expect(loaded.version == 3)
        #expect(counters.streamID(for: "c") == "counter-c")
        #expect(counters.snapshotStreamID(for: "c") == "$snapshot-counter-c")
    }

    // MARK: Metadata

    @Test("events carry a random id, the injected time and the caller's trace context")
    func metadata() async throws {
        let store = InMemoryEventStore()
        let users = AggregateFixtures.repository(store: store, seed: 77)
        let context = TraceContext.makeRoot(using: RandomSource(seed: 5), correlationID: "order-9")
        try await TraceContext.$current.withValue(context) {
            try await users.execute("1") { try $0.register(email: "a@x", name: "A") }
        }
        try await users.execute("1") { try $0.changeEmail(to: "b@x") }
        let stored = try await store.readStream("user-1")
        let expectedIDs = RandomSource(seed: 77)
        #expect(stored[0].metadata.id == EventID.random(using: expectedIDs))
        #expect(stored[1].metadata.id == EventID.random(using: expectedIDs))
        #expect(stored.map(\.metadata.time) == [AggregateFixtures.epoch + 1_000, AggregateFixtures.epoch + 2_000])
        #expect(stored[0].metadata.correlationID == "order-9")
        #expect(stored[0].metadata.traceID == context.traceID)
        #expect(stored[0].metadata.spanID == context.spanID)
        #expect(stored[1].metadata.correlationID == nil)
        #expect(stored[1].metadata.traceID == nil)
    }

    // MARK: Loading failures

    @Test("an event of another aggregate in the stream fails the load instead of being left out")
    func foreignEvent() async throws {
        let store = InMemoryEventStore()
        let users = AggregateFixtures.repository(store: store)
        try await users.execute("1") { try $0.register(email: "a@x", name: "A") }
        let foreign = try AggregateFixtures.serializer().encode(
            Counted(by: 1),
            metadata: EventMetadata(id: EventID(high: 1, low: 1), time: 0)
        )
        try await store.append(foreign, to: "user-1")
        let error = await #expect(throws: AggregateError.self) { try await users.load("1") }
        #expect(error?.code == .unknownEvent)
        #expect(error?.stream == "user-1")
    }

    @Test("a corrupt event fails the load with the codec's error")
    func corruptEvent() async throws {
        let store = InMemoryEventStore()
        let users = AggregateFixtures.repository(store: store)
        try await store.append(
            EventData(
                type: UserRegistered.eventType,
                metadata: EventMetadata(id: EventID(high: 1, low: 1), time: 0),
                payload: [0xFF]
            ),
            to: "user-1"
        )
        let error = await #expect(throws: AggregateError.self) { try await users.load("1") }
        #expect(error?.code == .eventCoding)
        #expect(error?.codecError?.code == .decodingFailed)
    }

    @Test("a stream whose metadata hides its first events fails the load instead of building part of the state")
    func incompleteStream() async throws {
        let store = InMemoryEventStore()
        let users = AggregateFixtures.repository(store: store)
        try await users.execute("1") { try $0.register(email: "a@x", name: "A") }
        try await users.execute("1") { try $0.changeEmail(to: "b@x") }
        try await store.setStreamMetadata(StreamMetadata(maxCount: 1), for: "user-1")
        let error = await #expect(throws: AggregateError.self) { try await users.load("1") }
        #expect(error?.code == .incompleteStream)
    }

    @Test("a deleted stream fails to load; reusing its id fails as incomplete instead of starting mid-history")
    func deletedStream() async throws {
        let store = InMemoryEventStore()
        let users = AggregateFixtures.repository(store: store)
        try await users.execute("1") { try $0.register(email: "a@x", name: "A") }
        try await store.deleteStream("user-1", expecting: .exactly(0))
        let deleted = await #expect(throws: AggregateError.self) { try await users.load("1") }
        #expect(deleted?.code == .store)
        #expect(deleted?.storeError?.code == .streamDeleted)

        try await store.append(
            try AggregateFixtures.serializer().encode(
                UserEmailChanged(previous: nil, email: "b@x"),
                metadata: EventMetadata(id: EventID(high: 2, low: 2), time: 0)
            ),
            to: "user-1",
            expecting: .noStream
        )
        let reused = await #expect(throws: AggregateError.self) { try await users.load("1") }
        #expect(reused?.code == .incompleteStream)
    }

    // MARK: Optimistic concurrency

    @Test("two loads of one version: the second save conflicts with the store's error", arguments: StoreKind.allCases)
    func conflictBetweenLoads(_ kind: StoreKind) async throws {
        try await kind.withStore { store in
            let first = AggregateFixtures.repository(store: store, seed: 1)
            let second = AggregateFixtures.repository(store: store, seed: 2)
            try await first.execute("1") { try $0.register(email: "a@x", name: "A") }

            let loadedByFirst = try await first.load("1")
            let loadedBySecond = try await second.load("1")
            let saved = try await first.save(
                try loadedByFirst.aggregate.changeEmail(to: "b@x"),
                for: "1",
                loaded: loadedByFirst
            )
            #expect(saved.version == 1)
            let error = await #expect(throws: AggregateError.self) {
                try await second.save(
                    try loadedBySecond.aggregate.changeEmail(to: "c@x"),
                    for: "1",
                    loaded: loadedBySecond
                )
            }
            #expect(error?.code == .conflict)
            #expect(error?.storeError?.code == .wrongExpectedVersion)
            #expect(error?.storeError?.expected == .exactly(0))
            #expect(error?.storeError?.actualVersion == 1)
            #expect(try await first.load("1").aggregate.emails == ["a@x", "b@x"])
        }
    }

    @Test("two writers creating one aggregate: the second conflicts on noStream")
    func conflictOnCreate() async throws {
        let store = InMemoryEventStore()
        let users = AggregateFixtures.repository(store: store)
        let loadedA = try await users.load("1")
        let loadedB = try await users.load("1")
        try await users.save(try loadedA.aggregate.register(email: "a@x", name: "A"), for: "1", loaded: loadedA)
        let error = await #expect(throws: AggregateError.self) {
            try await users.save(try loadedB.aggregate.register(email: "b@x", name: "B"), for: "1", loaded: loadedB)
        }
        #expect(error?.code == .conflict)
        #expect(error?.storeError?.expected == .noStream)
    }

    @Test("execute without retry fails on a conflict, running the command once", arguments: StoreKind.allCases)
    func executeConflictWithoutRetry(_ kind: StoreKind) async throws {
        try await kind.withStore { base in
            let other = AggregateFixtures.repository(store: base, seed: 2)
            try await other.execute("1") { try $0.register(email: "a@x", name: "A") }
            let store = RecordingStore(base, interferenceLimit: 1) {
                try await other.execute("1") { try $0.changeEmail(to: "other@x") }
            }
            let users = AggregateFixtures.repository(store: store)
            let runs = RunCounter()
            let error = await #expect(throws: AggregateError.self) {
                try await users.execute("1") { user in
                    runs.increment()
                    return try user.changeEmail(to: "mine@x")
                }
            }
            #expect(runs.value == 1)
            #expect(error?.code == .conflict)
            #expect(error?.attempts == 1)
            #expect(error?.storeError?.code == .wrongExpectedVersion)
            #expect(try await users.load("1").aggregate.emails == ["a@x", "other@x"])
        }
    }

    @Test("retry reloads and re-runs the command: both changes are kept", arguments: StoreKind.allCases)
    func retryOnConflict(_ kind: StoreKind) async throws {
        try await kind.withStore { base in
            let other = AggregateFixtures.repository(store: base, seed: 2)
            try await other.execute("1") { try $0.register(email: "a@x", name: "A") }
            let store = RecordingStore(base, interferenceLimit: 1) {
                try await other.execute("1") { try $0.changeEmail(to: "other@x") }
            }
            let users = AggregateFixtures.repository(store: store)
            let seen = Lock<[[String]]>([])
            let saved = try await users.execute("1", retry: .attempts(3)) { user in
                seen.withLock { $0.append(user.emails) }
                return try user.changeEmail(to: "mine@x")
            }
            // The first run saw only the registration; the second, the other writer's change too.
            #expect(seen.withLock { $0 } == [["a@x"], ["a@x", "other@x"]])
            #expect(saved.attempts == 2)
            #expect(saved.version == 2)
            #expect(saved.events == [.emailChanged(UserEmailChanged(previous: "other@x", email: "mine@x"))])
            let loaded = try await users.load("1")
            #expect(loaded.aggregate.emails == ["a@x", "other@x", "mine@x"])
            #expect(store.appends.filter { !$0.succeeded }.map(\.expected) == [.exactly(0)])
        }
    }

    @Test("retry gives up after its attempts with the typed conflict", arguments: [1, 2, 4])
    func retryGivesUp(_ attempts: Int) async throws {
        let base = InMemoryEventStore()
        let other = AggregateFixtures.repository(store: base, seed: 2)
        try await other.execute("1") { try $0.register(email: "a@x", name: "A") }
        let interfering = RunCounter()
        let store = RecordingStore(base, interferenceLimit: .max) {
            interfering.increment()
            try await other.execute("1") { try $0.changeEmail(to: "other-\(interfering.value)@x") }
        }
        let recorder = InMemoryRecorder()
        let users = AggregateFixtures.repository(store: store, telemetry: recorder)
        let runs = RunCounter()
        let error = await #expect(throws: AggregateError.self) {
            try await users.execute("1", retry: .attempts(attempts)) { user in
                runs.increment()
                return try user.changeEmail(to: "mine@x")
            }
        }
        #expect(runs.value == attempts)
        #expect(error?.code == .conflict)
        #expect(error?.attempts == attempts)
        #expect(error?.storeError?.code == .wrongExpectedVersion)
        #expect(error?.storeError?.actualVersion == UInt64(attempts))
        #expect(recorder.counter("keel.aggregate.conflicts", dimensions: [("category", "user")]) == Int64(attempts))
        #expect(try await base.readStream("user-1").count == 1 + attempts, "only the other writer's events")
    }

    /// The clock's offsets at each run of a command whose every append conflicts, retried
    /// `attempts` times in all with `backoff` by a repository drawing from `seed`. The clock moves
    /// from the end of one wait to the end of the next, for each of the `attempts - 1` waits
    /// unless `waits` is false (a backoff that never sleeps).
    static func conflictRunTimes(
        attempts: Int,
        backoff: Backoff,
        seed: UInt64,
        waits: Bool = true
    ) async throws -> [Duration] {
        let base = InMemoryEventStore()
        let other = AggregateFixtures.repository(store: base, seed: 2)
        try await other.execute("1") { try $0.register(email: "a@x", name: "A") }
        let interfering = RunCounter()
        let store = RecordingStore(base, interferenceLimit: .max) {
            interfering.increment()
            try await other.execute("1") { try $0.changeEmail(to: "other-\(interfering.value)@x") }
        }
        let clock = TestClock()
        let users = AggregateFixtures.repository(store: store, seed: seed, clock: clock)
        let runs = OffsetLog()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                let error = await #expect(throws: AggregateError.self) {
                    try await users.execute("1", retry: .attempts(attempts, backoff: backoff)) { user in
                        runs.record(clock.now.offset)
                        return try user.changeEmail(to: "mine@x")
                    }
                }
                #expect(error?.code == .conflict)
                #expect(error?.attempts == attempts)
            }
            for _ in 1..<attempts where waits {
                await clock.waitForSleepers(count: 1)
                clock.advanceToNextSleeper()
            }
            try await group.waitForAll()
        }
        return runs.values
    }

    static let conflictBackoffs: [Backoff] = [
        .constant(.milliseconds(250)),
        .linear(initial: .milliseconds(100), increment: .milliseconds(50), maximum: .milliseconds(220)),
        .exponential(initial: .milliseconds(100), multiplier: 3, maximum: .seconds(2), jitter: false),
    ]

    @Test(
        "conflict retries wait exactly the delays of their Backoff, on the repository's clock",
        arguments: AggregateTests.conflictBackoffs
    )
    func conflictRetriesFollowTheBackoff(_ backoff: Backoff) async throws {
        let times = try await Self.conflictRunTimes(attempts: 5, backoff: backoff, seed: 1)
        var expected: [Duration] = [.zero]
        for delay in backoff.makeDelays(using: RandomSource(seed: 1)).prefix(4) {
            expected.append(expected.last! + delay)
        }
        #expect(times == expected)
    }

    @Test("by default a conflict is retried at once: the clock never moves")
    func conflictRetriesAreImmediateByDefault() async throws {
        #expect(ConflictRetry.attempts(5).backoff == .immediate)
        let times = try await Self.conflictRunTimes(attempts: 5, backoff: .immediate, seed: 1, waits: false)
        #expect(times == Array(repeating: .zero, count: 5))
    }

    @Test("a jittered conflict backoff draws from the repository's random source")
    func conflictJitterComesFromTheRepository() async throws {
        let backoff = Backoff.exponential(initial: .seconds(1), maximum: .seconds(8))
        let first = try await Self.conflictRunTimes(attempts: 5, backoff: backoff, seed: 7)
        let again = try await Self.conflictRunTimes(attempts: 5, backoff: backoff, seed: 7)
        let other = try await Self.conflictRunTimes(attempts: 5, backoff: backoff, seed: 8)
        #expect(first == again, "the same seed gives the same waits")
        #expect(first != other, "another seed gives other waits")
        // Full jitter: each wait is drawn below its cap (1, 2, 4, 8 s), not the cap itself.
        let waits = zip(first.dropFirst(), first).map { $0 - $1 }
        let caps: [Duration] = [.seconds(1), .seconds(2), .seconds(4), .seconds(8)]
        #expect(waits.count == caps.count)
        for (wait, cap) in zip(waits, caps) {
            #expect(wait > .zero && wait < cap, "wait \(wait) under cap \(cap)")
        }
    }

    @Test(
        "16 tasks changing one user with retry: every change applied once, versions contiguous",
        arguments: StoreKind.allCases
    )
    func concurrentCommands(_ kind: StoreKind) async throws {
        try await kind.withStore { store in
            let users = AggregateFixtures.repository(store: store, snapshots: .every(4))
            try await users.execute("1") { try $0.register(email: "start@x", name: "A") }
            let runs = RunCounter()
            try await withThrowingTaskGroup(of: SavedAggregate<User>.self) { group in
                for index in 0..<16 {
                    group.addTask {
                        try await users.execute("1", retry: .attempts(17)) { user in
                            runs.increment()
                            return try user.changeEmail(to: "u\(index)@x")
                        }
                    }
                }
                var versions: [UInt64] = []
                for try await saved in group {
                    versions.append(try #require(saved.version))
                }
                #expect(versions.sorted() == Array(1...16))
            }
            #expect(runs.value >= 16)
            let loaded = try await users.load("1")
            #expect(loaded.version == 16)
            #expect(loaded.aggregate.emails.count == 17)
            #expect(Set(loaded.aggregate.emails) == Set(["start@x"] + (0..<16).map { "u\($0)@x" }))
            let stored = try await store.readStream("user-1")
            #expect(stored.map(\.version) == Array(0...16))
            // Each change records the address it replaced: the chain is unbroken.
            let serializer = AggregateFixtures.serializer()
            let changes = try stored.dropFirst().map { try serializer.decode($0, as: UserEmailChanged.self) }
            var previous = "start@x"
            for change in changes {
                #expect(change.previous == previous)
                previous = change.email
            }
        }
    }

    @Test("policies describe themselves and check their bounds")
    func policies() {
        #expect(ConflictRetry.disabled.maxAttempts == 1)
        #expect(ConflictRetry.attempts(5).maxAttempts == 5)
        #expect("\(ConflictRetry.attempts(5))" == "up to 5 attempts")
        #expect(ConflictRetry.disabled.backoff == .immediate)
        #expect(ConflictRetry.attempts(5).backoff == .immediate)
        #expect(
            "\(ConflictRetry.attempts(3, backoff: .constant(.milliseconds(5))))"
                == "up to 3 attempts, backoff constant(0.005 seconds)"
        )
        #expect(SnapshotPolicy.never.eventInterval == nil)
        #expect(!SnapshotPolicy.never.isDue(eventsSinceSnapshot: 1_000))
        #expect(SnapshotPolicy.every(3).isDue(eventsSinceSnapshot: 3))
        #expect(!SnapshotPolicy.every(3).isDue(eventsSinceSnapshot: 2))
        #expect("\(SnapshotPolicy.every(3))" == "every 3 events")
    }
}
