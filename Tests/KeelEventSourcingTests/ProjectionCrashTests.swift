import Foundation
import KeelCore
import KeelEventSourcing
import KeelTestSupport
import Testing

/// The read model and the checkpoint are one atomic commit: whatever a crash interrupts, after
/// reopening the read model holds exactly the events before the stored checkpoint.
@Suite("Projection checkpoints across crashes", .timeLimit(.minutes(10)))
struct ProjectionCrashTests {
    /// Checks that the read model in `projectionStore` is exactly the events before its checkpoint.
    static func expectInStep(_ projectionStore: ProjectionStore, events: any EventStore) async throws -> UInt64 {
        let checkpoint = try await projectionStore.checkpoint()
        let userEvents = try await events.readAll(from: 0, limit: .max)
            .filter { $0.position < checkpoint && $0.stream.category == "user" }
        #expect(try await UsersByEmailDomain.applied(in: projectionStore) == userEvents.count)
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

    /// Where a kill trial's child process stops before the test kills it.
    enum KillPoint: String, CaseIterable, Sendable {
        /// Nowhere in particular: the child runs free and dies after a random number of applies,
        /// wherever the runner is (reading, applying, in the middle of a commit's write).
        case anywhere
        /// In the projection's apply of a chosen event: after it built its writes, before the
        /// page's commit.
        case inApply
        /// Right after a chosen commit is durable, before the runner hears that it returned.
        case afterCommit
    }

    @Test(
        "a runner SIGKILLed anywhere, in apply or just after a commit reopens in step, and catching up applies each event once",
        arguments: KillPoint.allCases,
        0..<2
    )
    func killAndReopen(point: KillPoint, round: Int) async throws {
        await CrashTrialLane.enter()
        defer { CrashTrialLane.leave() }
        // KEEL_PROJECTION_KILL_SEED replays a trial; its page size and stopping point follow from the seed.
        let seed =
            ProcessInfo.processInfo.environment["KEEL_PROJECTION_KILL_SEED"].flatMap { UInt64($0) }
            ?? UInt64.random(in: 0...UInt64.max)
        let random = RandomSource(seed: seed)
        let pageSize = 1 + random.next(upperBound: 6)
        let count = 1 + random.next(upperBound: 40)
        let stop: String
        switch point {
        case .anywhere: stop = "none"
        case .inApply: stop = "apply:\(count)"
        // Odd and even commits both, so that a commit split in two could not hide.
        case .afterCommit: stop = "commit:\(2 * (count / 2) + 1 + round)"
        }
        let trial =
            "seed \(seed), page size \(pageSize), \(point) (\(stop == "none" ? "after \(count) applies" : stop))"
        TestLog.line("projection kill trial: \(trial)")

        let directory = TemporaryDirectory("proj-kill")
        defer { directory.remove() }
        let child = try CrashChild(tool: "KeelCrashProjector", arguments: [directory.path, String(pageSize), stop])
        var lines: [String] = []
        var isAtPoint = false
        var applies = 0
        while !isAtPoint, let line = await child.nextLine() {
            lines.append(line)
            if line.hasPrefix("applied ") { applies += 1 }
            isAtPoint = point == .anywhere ? applies == count : line == "stopped"
        }
        let stderr = child.sigkill()
        // Lines written before the kill count too: each was written after what it reports.
        while let line = await child.nextLine() { lines.append(line) }
        #expect(!CrashChild.hasSanitizerReport(stderr), "\(trial): the child reported\n\(stderr)")
        try #require(
            lines.first == "ready" && isAtPoint,
            "\(trial): the child said \(lines.suffix(3)), stderr \(stderr)"
        )

        // What the child reported: the events applied, in order, and the checkpoint of the last
        // durable commit, which splits them into the committed ones and those applied since. (A
        // page is handled while the commit of the page before it runs, so the applies of the
        // next page may come before a commit's line.)
        var applied: [UInt64] = []
        var durable: UInt64 = 0
        for line in lines {
            let fields = line.split(separator: " ")
            if fields.count == 2, fields[0] == "applied", let position = UInt64(fields[1]) { applied.append(position) }
            if fields.count == 3, fields[0] == "committed", let checkpoint = UInt64(fields[2]) {
                #expect(checkpoint >= durable, "\(trial): the checkpoint went back")
                durable = checkpoint
            }
        }
        let committed = applied.filter { $0 < durable }
        let pending = applied.filter { $0 >= durable }
        switch point {
        case .anywhere: break
        case .inApply: #expect(!pending.isEmpty, "\(trial): the child stopped outside a page")
        case .afterCommit: #expect(!committed.isEmpty, "\(trial): the child stopped before a commit")
        }

        let store = try FileEventStore(directory: directory.path)
        let keyValueStore = try await EventStoreKeyValueStore.open(store: store, namespace: "projection.users")
        let projectionStore = ProjectionStore(keyValueStore: keyValueStore)
        _ = try await Self.expectInStep(projectionStore, events: store)
        let seen = await UsersByEmailDomain.seen(in: projectionStore)
        switch point {
        case .anywhere:
            // Every durable commit is there; the kill may have landed in the commit after the
            // last reported one (whole or absent: `expectInStep`), never past what was applied.
            #expect(seen.count >= committed.count && seen == Array(applied.prefix(seen.count)), "\(trial)")
        case .inApply:
            // The same, and the page of the apply that never returned is not committed.
            #expect(seen.count >= committed.count && seen == Array(applied.prefix(seen.count)), "\(trial)")
            #expect(!seen.contains(applied.last ?? .max), "\(trial)")
        case .afterCommit:
            // The commit the child stopped in never returned: no later commit started.
            #expect(seen == committed, "\(trial)")
        }

        // Catching up applies every event the kill left out, and none twice.
        var configuration = ProjectionRunner.Configuration()
        configuration.pageSize = pageSize
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
        #expect(try await UsersByEmailDomain.applied(in: projectionStore) == userEvents.count, "\(trial)")
        #expect(await UsersByEmailDomain.seen(in: projectionStore) == userEvents.map(\.position), "\(trial)")
        await store.close()
        TestLog.line(
            "projection kill trial: seed \(seed): killed with \(committed.count) events in durable commits, "
                + "\(pending.count) applied since, \(seen.count) in the reopened read model, \(userEvents.count) after catching up"
        )
    }
}
