import Foundation
import KeelCore
import KeelEventSourcing
import KeelTesting
import Testing

@Suite("ProjectionRunner", .timeLimit(.minutes(2)))
struct ProjectionRunnerTests {
    @Test("catches up on stored events, then follows live ones")
    func catchUpThenLive() async throws {
        let store = InMemoryEventStore()
        let stored = try await UserEvents.appendMix(count: 30, to: store)
        var configuration = ProjectionRunner.Configuration()
        configuration.pageSize = 7
        let runner = try await makeRunner(store: store, configuration: configuration)
        await runner.start()
        try await runner.waitUntilCaughtUp(to: stored)
        let model = runner.projectionStore
        #expect(
            await UsersByEmailDomain.users(at: "example.com", in: model)
                == (try await UserEvents.expectedUsers(at: "example.com", in: store, before: stored + 1))
        )
        #expect(try await UsersByEmailDomain.applied(in: model) == 38)

        // Live: a registration and a change of domain, read back at once.
        let registered = try await store.append(UserEvents.registered(100, domain: "example.com"), to: "user-u100")
        try await runner.waitUntilCaughtUp(to: registered.positions.lowerBound)
        #expect(await UsersByEmailDomain.users(at: "example.com", in: model).contains("u100"))
        let changed = try await store.append(
            UserEvents.changed(100, from: "example.com", to: "other.net"),
            to: "user-u100"
        )
        try await runner.waitUntilCaughtUp(to: changed.positions.lowerBound)
        #expect(!(await UsersByEmailDomain.users(at: "example.com", in: model).contains("u100")))
        #expect(await UsersByEmailDomain.users(at: "other.net", in: model) == ["u100"])
        #expect(try await UsersByEmailDomain.applied(in: model) == 40)
        await runner.stop()
        #expect(await runner.running == false)
    }

    @Test("a key-value store sharing the event store does not make the runner chase its own commits")
    func sharedStoreSettles() async throws {
        let store = InMemoryEventStore()
        let last = try await UserEvents.appendMix(count: 5, to: store)
        let runner = try await makeRunner(store: store)
        await runner.start()
        try await runner.waitUntilCaughtUp(to: last)
        // The commit appended one key-value event; the runner passes it without committing again.
        let head = try await store.headPosition()
        try await runner.waitUntilCaughtUp(to: head - 1)
        #expect(try await store.headPosition() == head)
        #expect(try await runner.lag() == 0)
        await runner.stop()
    }

    @Test("a wait for a position the runner's view hides returns once the runner has passed it")
    func waitForAHiddenPosition() async throws {
        let shared = InMemoryEventStore()
        let mine = NamespacedEventStore(namespace: "mine", base: shared)
        let theirs = NamespacedEventStore(namespace: "theirs", base: shared)
        let runner = ProjectionRunner(
            projection: UsersByEmailDomain(),
            eventStore: mine,
            projectionStore: ProjectionStore(keyValueStore: InMemoryStateStore().namespace("users"))
        )
        await runner.start()
        try await mine.append(UserEvents.registered(1, domain: "example.com"), to: "user-u1")
        // Another namespace's event, after the last one this runner sees: it never reaches the
        // projection, yet a caller that holds its position (a command's receipt from another
        // service) must not wait for the next event of this namespace.
        let hidden = try await theirs.append(UserEvents.registered(2, domain: "example.com"), to: "user-u2")
        try await runner.waitUntilCaughtUp(to: hidden.positions.lowerBound)
        #expect(try await runner.checkpoint() == hidden.positions.upperBound)
        #expect(try await runner.lag() == 0)
        #expect(await UsersByEmailDomain.users(at: "example.com", in: runner.projectionStore) == ["u1"])
        await runner.stop()
    }

    @Test("the checkpoint survives a restart: no event applied twice, none skipped")
    func resumesAfterRestart() async throws {
        let store = InMemoryEventStore()
        let projection = UsersByEmailDomain()
        var configuration = ProjectionRunner.Configuration()
        configuration.pageSize = 4
        let first = try await UserEvents.appendMix(count: 20, to: store)
        let runner = try await makeRunner(store: store, projection: projection, configuration: configuration)
        await runner.start()
        try await runner.waitUntilCaughtUp(to: first)
        await runner.stop()
        let stoppedAt = try await runner.projectionStore.checkpoint()
        #expect(stoppedAt > first)

        let second = try await UserEvents.appendMix(count: 20, to: store, offset: 20)
        // A new runner and a freshly opened key-value store, as after a process restart.
        let restarted = try await makeRunner(store: store, projection: projection, configuration: configuration)
        #expect(try await restarted.checkpoint() == stoppedAt)
        await restarted.start()
        try await restarted.waitUntilCaughtUp(to: second)
        await restarted.stop()

        let userEvents = try await store.readAll(from: 0, limit: .max).filter { $0.stream.category == "user" }
        for event in userEvents {
            #expect(projection.poison.calls(at: event.position) == 1, "event \(event.position)")
        }
        let model = restarted.projectionStore
        #expect(try await UsersByEmailDomain.applied(in: model) == userEvents.count)
        #expect(await UsersByEmailDomain.seen(in: model) == userEvents.map(\.position))
        #expect(
            await UsersByEmailDomain.users(at: "moved.org", in: model)
                == (try await UserEvents.expectedUsers(at: "moved.org", in: store, before: second + 1))
        )
    }

    @Test("rebuild resets the read model and replays every event once more")
    func rebuild() async throws {
        let store = InMemoryEventStore()
        let projection = UsersByEmailDomain()
        let last = try await UserEvents.appendMix(count: 12, to: store)
        let runner = try await makeRunner(store: store, projection: projection)
        await runner.start()
        try await runner.waitUntilCaughtUp(to: last)
        let before = await UsersByEmailDomain.users(at: "keel.dev", in: runner.projectionStore)

        try await runner.rebuild()
        #expect(await runner.running)
        try await runner.waitUntilCaughtUp(to: last)
        #expect(await UsersByEmailDomain.users(at: "keel.dev", in: runner.projectionStore) == before)
        #expect(try await UsersByEmailDomain.applied(in: runner.projectionStore) == 15)
        #expect(projection.poison.calls(at: 0) == 2)
        await runner.stop()

        // A stopped runner stays stopped; the reset is immediate and the replay waits for start.
        try await runner.rebuild()
        #expect(await runner.running == false)
        #expect(try await runner.checkpoint() == 0)
        #expect(try await UsersByEmailDomain.applied(in: runner.projectionStore) == 0)
    }

    @Test("lag is the head minus the checkpoint")
    func lag() async throws {
        let store = InMemoryEventStore()
        let keyValueStore = try await EventStoreKeyValueStore.open(store: InMemoryEventStore(), namespace: "lag")
        let runner = ProjectionRunner(
            projection: UsersByEmailDomain(),
            eventStore: store,
            projectionStore: ProjectionStore(keyValueStore: keyValueStore)
        )
        let last = try await UserEvents.appendMix(count: 8, to: store)
        #expect(try await runner.lag() == 10)
        await runner.start()
        try await runner.waitUntilCaughtUp(to: last)
        #expect(try await runner.lag() == 0)
        await runner.stop()
        try await UserEvents.appendMix(count: 3, to: store, offset: 8)  // u8 registers and moves: 4 events
        #expect(try await runner.lag() == 4)
    }

    @Test("waitUntilCaughtUp returns at once when caught up and fails when the runner is not running")
    func waitWhenStopped() async throws {
        let store = InMemoryEventStore()
        let last = try await UserEvents.appendMix(count: 3, to: store)
        let runner = try await makeRunner(store: store)
        let notRunning = await #expect(throws: ProjectionError.self) {
            try await runner.waitUntilCaughtUp(to: last)
        }
        #expect(notRunning?.code == .notRunning)
        await runner.start()
        try await runner.waitUntilCaughtUp(to: last)
        await runner.stop()
        try await runner.waitUntilCaughtUp(to: last)  // stored checkpoint is past it
    }

    @Test("a waiter is resumed by cancellation, and a parked waiter fails when the runner stops")
    func waitCancellationAndStop() async throws {
        let store = InMemoryEventStore()
        let runner = try await makeRunner(store: store)
        await runner.start()
        let waiter = Task { try await runner.waitUntilCaughtUp(to: 1_000) }
        waiter.cancel()
        await #expect(throws: CancellationError.self) { try await waiter.value }

        try await confirmation("the waiter failed with stopped") { stopped in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    do {
                        try await runner.waitUntilCaughtUp(to: 1_000)
                    } catch let error as ProjectionError {
                        if error.code == .stopped || error.code == .notRunning { stopped() }
                    }
                }
                await runner.stop()
                try await group.waitForAll()
            }
        }
    }

    @Test("a poison event is retried with backoff on the injected clock, parked, and the runner goes on")
    func poisonEventParked() async throws {
        let store = InMemoryEventStore()
        let clock = TestClock()
        let projection = UsersByEmailDomain()
        projection.poison.poison("u1")
        var configuration = ProjectionRunner.Configuration()
        configuration.maxAttempts = 3
        configuration.backoff = .exponential(initial: .seconds(1), maximum: .seconds(10), jitter: false)
        let runner = try await makeRunner(
            store: store,
            projection: projection,
            configuration: configuration,
            clock: clock
        )
        let poison = try await store.append(UserEvents.registered(1, domain: "example.com"), to: "user-u1")
            .positions.lowerBound
        let after = try await store.append(UserEvents.registered(2, domain: "example.com"), to: "user-u2")
            .positions.lowerBound
        await runner.start()

        await clock.waitForSleepers(count: 1)
        #expect(projection.poison.calls(at: poison) == 1)
        clock.advance(by: .seconds(1))
        await clock.waitForSleepers(count: 1)
        #expect(projection.poison.calls(at: poison) == 2)
        clock.advance(by: .seconds(2))
        try await runner.waitUntilCaughtUp(to: after)
        #expect(projection.poison.calls(at: poison) == 3)
        #expect(clock.now.offset == .seconds(3))

        let parked = try await runner.parkedEvents()
        #expect(parked.count == 1)
        let event = try #require(parked.first)
        #expect(event.position == poison)
        #expect(event.stream == "user-u1")
        #expect(event.eventType == ProjectedUserRegistered.eventType)
        #expect(event.attempts == 3)
        #expect(event.error == "poisoned u1")
        #expect(await UsersByEmailDomain.users(at: "example.com", in: runner.projectionStore) == ["u2"])
        await runner.stop()
    }

    @Test("a parked event can be retried: failing again updates it, succeeding applies and removes it")
    func parkedEventRetry() async throws {
        let store = InMemoryEventStore()
        let projection = UsersByEmailDomain()
        projection.poison.poison("u1")
        var configuration = ProjectionRunner.Configuration()
        configuration.maxAttempts = 1
        let recorder = InMemoryRecorder()
        let runner = try await makeRunner(
            store: store,
            projection: projection,
            configuration: configuration,
            telemetry: recorder
        )
        let poison = try await store.append(UserEvents.registered(1, domain: "example.com"), to: "user-u1")
            .positions.lowerBound
        let after = try await UserEvents.appendMix(count: 3, to: store, offset: 2)
        await runner.start()
        try await runner.waitUntilCaughtUp(to: after)
        // Parking is logged as an error, with the event and why.
        let logged = recorder.logs(from: "keel.projection")
        #expect(logged.map(\.level) == [.error])
        #expect(logged.first?.metadata["position"] == "\(poison)")
        #expect(logged.first?.metadata["stream"] == "user-u1")
        #expect(logged.first?.metadata["attempts"] == "1")
        #expect(logged.first?.metadata["error"] == "poisoned u1")
        #expect(logged.first?.message.hasSuffix("parking it and going on") == true)
        #expect(try await runner.parkedEvents().map(\.position) == [poison])

        #expect(try await runner.retryParkedEvent(at: poison) == false)
        #expect(try await runner.parkedEvents().map(\.attempts) == [2])

        projection.poison.cure("u1")
        #expect(try await runner.retryParkedEvent(at: poison) == true)
        #expect(try await runner.parkedEvents().isEmpty)
        #expect(await UsersByEmailDomain.users(at: "example.com", in: runner.projectionStore).contains("u1"))
        let missing = await #expect(throws: ProjectionError.self) { try await runner.retryParkedEvent(at: poison) }
        #expect(missing?.code == .parkedEventNotFound)
        await runner.stop()
    }

    @Test("a parked event stored when it was called a dead letter still reads, and retries")
    func parkedEventStoredAsDeadLetter() async throws {
        let store = InMemoryEventStore()
        let poison = try await store.append(UserEvents.registered(1, domain: "example.com"), to: "user-u1")
            .positions.lowerBound
        #expect(poison == 0)
        let keyValueStore = try await EventStoreKeyValueStore.open(store: InMemoryEventStore(), namespace: "old")
        // Exactly what a release whose type was `DeadLetter` committed for this event.
        var batch = KeyValueBatch()
        batch.put(
            Array(
                #"{"position":0,"stream":{"name":"user-u1"},"version":0,"eventType":"user.registered","error":"poisoned u1","attempts":3}"#
                    .utf8
            ),
            forKey: "d/00000000000000000000"
        )
        try await keyValueStore.commit(batch)

        let runner = ProjectionRunner(
            projection: UsersByEmailDomain(),
            eventStore: store,
            projectionStore: ProjectionStore(keyValueStore: keyValueStore)
        )
        let expected = ParkedEvent(
            position: 0,
            stream: "user-u1",
            version: 0,
            eventType: ProjectedUserRegistered.eventType,
            error: "poisoned u1",
            attempts: 3
        )
        #expect(try await runner.parkedEvents() == [expected])
        #expect(try await runner.retryParkedEvent(at: poison))
        #expect(try await runner.parkedEvents().isEmpty)
        #expect(await UsersByEmailDomain.users(at: "example.com", in: runner.projectionStore) == ["u1"])

        // What it writes now has the same fields, so an older reader still reads it.
        let written = try JSONSerialization.jsonObject(with: try JSONEncoder().encode(expected)) as? [String: Any]
        #expect(
            Set(written?.keys.map { $0 } ?? [])
                == ["position", "stream", "version", "eventType", "error", "attempts"]
        )
        #expect((written?["stream"] as? [String: Any])?["name"] as? String == "user-u1")
    }

    @Test("under the stop policy a poison event stops the runner at it, committing the events before")
    func poisonEventStops() async throws {
        let store = InMemoryEventStore()
        let projection = UsersByEmailDomain()
        projection.poison.poison("u3")
        var configuration = ProjectionRunner.Configuration()
        configuration.maxAttempts = 2
        configuration.backoff = .immediate
        configuration.poisonEvents = .stop
        let recorder = InMemoryRecorder()
        let runner = try await makeRunner(
            store: store,
            projection: projection,
            configuration: configuration,
            telemetry: recorder
        )
        var positions: [UInt64] = []
        for index in 0..<5 {
            positions.append(
                try await store.append(UserEvents.registered(index, domain: "keel.dev"), to: StreamID("user-u\(index)"))
                    .positions.lowerBound
            )
        }
        await runner.start()
        let failure = await #expect(throws: ProjectionError.self) {
            try await runner.waitUntilCaughtUp(to: positions[4])
        }
        #expect(failure?.code == .handlerFailed)
        #expect(failure?.position == positions[3])
        await runner.stop()
        #expect(await runner.lastFailure?.code == .handlerFailed)
        #expect(try await runner.checkpoint() == positions[3])
        #expect(await UsersByEmailDomain.users(at: "keel.dev", in: runner.projectionStore) == ["u0", "u1", "u2"])
        #expect(projection.poison.calls(at: positions[3]) == 2)
        let logged = recorder.logs(from: "keel.projection")
        #expect(logged.map(\.level) == [.error])
        #expect(logged.first?.metadata["position"] == "\(positions[3])")
        #expect(logged.first?.message.hasSuffix("stopping the projection") == true)

        projection.poison.cure("u3")
        await runner.start()
        try await runner.waitUntilCaughtUp(to: positions[4])
        #expect(await UsersByEmailDomain.users(at: "keel.dev", in: runner.projectionStore).count == 5)
        await runner.stop()
    }

    @Test("run() returns when its task is cancelled, throws a stopping failure, and refuses to run twice")
    func structuredRun() async throws {
        let store = InMemoryEventStore()
        let projection = UsersByEmailDomain()
        var configuration = ProjectionRunner.Configuration()
        configuration.maxAttempts = 1
        configuration.poisonEvents = .stop
        let runner = try await makeRunner(store: store, projection: projection, configuration: configuration)

        let cancelled = Task { try await runner.run() }
        cancelled.cancel()
        try await cancelled.value  // a cancelled run ends cleanly
        // Appended only now: a run that got going before the cancellation reached it (as under
        // ThreadSanitizer) would otherwise have checkpointed past the poisoned event below.
        try await UserEvents.appendMix(count: 4, to: store)

        projection.poison.poison("u2")
        let failure = await #expect(throws: ProjectionError.self) { try await runner.run() }
        #expect(failure?.code == .handlerFailed)

        projection.poison.cure("u2")
        await runner.start()
        let twice = await #expect(throws: ProjectionError.self) { try await runner.run() }
        #expect(twice?.code == .alreadyRunning)
        await runner.stop()
        #expect(await runner.running == false)
    }

    @Test("the default retries wait 100 ms doubling up to 5 s, as a Backoff without jitter")
    func defaultBackoff() {
        let backoff = ProjectionRunner.Configuration().backoff
        #expect(backoff == .exponential(initial: .milliseconds(100), maximum: .seconds(5), jitter: false))
        #expect(
            Array(backoff.makeDelays(using: RandomSource(seed: 1)).prefix(8)) == [
                .milliseconds(100), .milliseconds(200), .milliseconds(400), .milliseconds(800),
                .milliseconds(1600), .milliseconds(3200), .seconds(5), .seconds(5),
            ]
        )
    }

    static let backoffs: [Backoff] = [
        .constant(.milliseconds(250)),
        .linear(initial: .milliseconds(100), increment: .milliseconds(50), maximum: .milliseconds(220)),
        .exponential(initial: .milliseconds(100), multiplier: 3, maximum: .seconds(2), jitter: false),
        .exponential(initial: .seconds(1), maximum: .seconds(8)),
        .decorrelatedJitter(base: .milliseconds(50), maximum: .seconds(1)),
    ]

    @Test(
        "a poison event's retries wait exactly the delays of the Backoff, jitter drawn from the runner's source",
        arguments: ProjectionRunnerTests.backoffs
    )
    func retriesFollowTheBackoff(backoff: Backoff) async throws {
        let store = InMemoryEventStore()
        let clock = TestClock()
        let projection = UsersByEmailDomain()
        projection.poison.poison("u1")
        var configuration = ProjectionRunner.Configuration()
        configuration.maxAttempts = 5
        configuration.backoff = backoff
        let runner = try await makeRunner(
            store: store,
            projection: projection,
            configuration: configuration,
            clock: clock,
            random: RandomSource(seed: 23)
        )
        let poison = try await store.append(UserEvents.registered(1, domain: "example.com"), to: "user-u1")
            .positions.lowerBound
        await runner.start()

        // Step from each wait's end to the next: the clock stops exactly where each wait ends.
        var ends: [Duration] = []
        for attempt in 1..<configuration.maxAttempts {
            await clock.waitForSleepers(count: 1)
            #expect(projection.poison.calls(at: poison) == attempt)
            clock.advanceToNextSleeper()
            ends.append(clock.now.offset)
        }
        try await runner.waitUntilCaughtUp(to: poison)
        #expect(projection.poison.calls(at: poison) == configuration.maxAttempts)
        #expect(try await runner.parkedEvents().map(\.position) == [poison])
        await runner.stop()

        let delays = Array(backoff.makeDelays(using: RandomSource(seed: 23)).prefix(configuration.maxAttempts - 1))
        var expected: [Duration] = []
        for delay in delays { expected.append((expected.last ?? .zero) + delay) }
        #expect(ends == expected)
    }
}
