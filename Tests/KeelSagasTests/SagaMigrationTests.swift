import KeelCore
import KeelEventSourcing
import KeelSagas
import KeelTesting
import Synchronization
import Testing

/// Version 1 of a transfer saga: amounts in cents, no currency.
struct TransferV1: Saga {
    static let name = "transfer"

    struct Input: Codable, Sendable {
        var id: String
        var cents: Int
    }

    struct Debit: Codable, Sendable {
        var key: String
        var cents: Int
    }

    let world: ShopWorld

    func run(_ input: Input, saga: SagaContext) async throws -> String {
        let debit = try await saga.step("debit", .idempotent) { step in
            Debit(key: step.idempotencyKey, cents: input.cents)
        }
        _ = try await saga.step("hold", .idempotent) { _ in try await world.validate(OrderDraft(id: input.id)) }
        _ = try await saga.step("credit", .idempotent) { _ in try await world.confirm(OrderDraft(id: input.id)) }
        return "moved \(debit.cents)"
    }
}

/// Version 2 of the transfer saga: amounts carry their currency. Its migrations read what
/// version 1 journaled; `migrated` counts the calls of each.
struct TransferV2: Saga {
    static let name = "transfer"
    static let version = 2

    struct Money: Codable, Sendable, Equatable {
        var cents: Int
        var currency: String
    }

    struct Input: Codable, Sendable {
        var id: String
        var amount: Money
    }

    struct Debit: Codable, Sendable {
        var key: String
        var amount: Money
    }

    /// Calls of each migration, by payload.
    static let migrated = Mutex<[String: Int]>([:])
    /// Payloads whose migration throws, to show what a failed migration does.
    static let refused = Mutex<Set<String>>([])

    static func count(_ payload: String) throws {
        migrated.withLock { $0[payload, default: 0] += 1 }
        if refused.withLock({ $0.contains(payload) }) {
            throw ShopWorld.Failure(operation: "migrating \(payload)")
        }
    }

    static let migrations: [SagaMigration] = [
        .typed(.input, from: 1, decoding: TransferV1.Input.self) { old in
            try count("input")
            return Input(id: old.id, amount: Money(cents: old.cents, currency: "EUR"))
        },
        .typed(.step("debit"), from: 1, decoding: TransferV1.Debit.self) { old in
            try count("debit")
            return Debit(key: old.key, amount: Money(cents: old.cents, currency: "EUR"))
        },
        .raw(.step("credit"), from: 1) { json in
            try count("credit")
            return json
        },
        .typed(.output, from: 1, decoding: String.self) { old in
            try count("output")
            return old + " EUR"
        },
    ]

    let world: ShopWorld

    func run(_ input: Input, saga: SagaContext) async throws -> String {
        let debit = try await saga.step("debit", .idempotent) { step in
            Debit(key: step.idempotencyKey, amount: input.amount)
        } compensate: { _, _ in
            world.record("refund debit")
        }
        _ = try await saga.step("hold", .idempotent) { _ in try await world.validate(OrderDraft(id: input.id)) }
        _ = try await saga.step("credit", .idempotent) { _ in try await world.confirm(OrderDraft(id: input.id)) }
        // New in version 2: a step after the ones version 1 journaled.
        try await saga.step("notify", .idempotent) { _ in world.record("notify") }
        return "moved \(debit.amount.cents) \(debit.amount.currency)"
    }
}

@Suite("Saga migrations", .serialized, .timeLimit(.minutes(2)))
struct SagaMigrationTests {
    static let wallClock = WallClock.fixed(nanosecondsSinceEpoch: 1_700_000_000_000_000_000)

    /// The two journals: a durable one (an event store, payloads as JSON) and an in-memory one
    /// (payloads kept as values of version 1's types).
    enum Journal: String, CaseIterable, Sendable {
        case store, memory
    }

    /// Makes runners over one journal, as successive processes would.
    struct Journals {
        let store = InMemoryEventStore()
        let memory = InMemorySagaJournal()

        func runner(_ journal: Journal) -> SagaRunner {
            switch journal {
            case .store:
                SagaRunner(store: self.store, clock: TestClock(), wallClock: wallClock, random: RandomSource(seed: 5))
            case .memory:
                SagaRunner(
                    journal: self.memory,
                    clock: TestClock(),
                    wallClock: wallClock,
                    random: RandomSource(seed: 5)
                )
            }
        }
    }

    init() {
        TransferV2.migrated.withLock { $0 = [:] }
        TransferV2.refused.withLock { $0 = [] }
    }

    /// Runs `saga` on `runner` until the step that calls `operation` is under way, then shuts the
    /// runner down as a crash would stop it: the step under way is journaled, nothing after it.
    func interrupt<S: Saga>(
        _ saga: S,
        input: S.Input,
        on runner: SagaRunner,
        at operation: String,
        world: ShopWorld
    ) async {
        let gate = world.gate(operation)
        let run = Task { try await runner.run(saga, id: "t-1", input: input) }
        await gate.arrival()
        await runner.shutdown()
        gate.open()
        _ = try? await run.value
    }

    /// Journals holding transfer `t-1` as version 1 left it: stopped while `hold` ran.
    func stoppedByVersion1(_ journal: Journal) async -> (Journals, ShopWorld) {
        let journals = Journals()
        let world = ShopWorld()
        await self.interrupt(
            TransferV1(world: world),
            input: TransferV1.Input(id: "t-1", cents: 500),
            on: journals.runner(journal),
            at: "validate",
            world: world
        )
        return (journals, world)
    }

    @Test(
        "a run journaled by version 1 resumes under version 2 with its payloads migrated",
        arguments: Journal.allCases
    )
    func resumesMigrated(journal: Journal) async throws {
        let (journals, world) = await self.stoppedByVersion1(journal)
        #expect(world.log == ["validate"])

        let upgraded = journals.runner(journal)
        upgraded.register(TransferV2(world: world))
        #expect(try await upgraded.recover().map(\.id) == ["t-1"])
        let outcome = try await upgraded.outcome(TransferV2.self, id: "t-1")
        // The body saw version 2's shapes: the debit journaled by version 1, in euros.
        #expect(outcome.output == "moved 500 EUR")
        #expect(world.log == ["validate", "confirm", "notify"])
        #expect(TransferV2.migrated.withLock { $0 } == ["input": 1, "debit": 1])
    }

    @Test("what version 2 journaled itself is read as it is, after a second crash", arguments: Journal.allCases)
    func migratesOnlyWhatTheOldVersionWrote(journal: Journal) async throws {
        let (journals, world) = await self.stoppedByVersion1(journal)
        // Version 2 resumes the run (a run of its id resumes it) and is stopped while its own
        // `credit` is under way: `credit` completes, journaled by version 2, and `notify` does not start.
        let second = journals.runner(journal)
        await self.interrupt(
            TransferV2(world: world),
            input: TransferV2.Input(id: "t-1", amount: TransferV2.Money(cents: 1, currency: "USD")),
            on: second,
            at: "confirm",
            world: world
        )
        #expect(world.log == ["validate", "confirm"])
        #expect(try await second.status(TransferV2.name, id: "t-1")?.phase == .running)

        // `credit` was journaled by version 2: its migration from version 1 must not touch it
        // (it would count, and a refusal would stop the saga).
        TransferV2.refused.withLock { $0 = ["credit"] }
        let third = journals.runner(journal)
        third.register(TransferV2(world: world))
        try await third.recover()
        let outcome = try await third.outcome(TransferV2.self, id: "t-1")
        #expect(outcome.output == "moved 500 EUR")
        #expect(world.log == ["validate", "confirm", "notify"])
        #expect(TransferV2.migrated.withLock { $0 } == ["input": 2, "debit": 2])
    }

    @Test("the output of a saga that version 1 completed reads migrated", arguments: Journal.allCases)
    func migratesTheOutput(journal: Journal) async throws {
        let journals = Journals()
        let world = ShopWorld()
        let first = journals.runner(journal)
        let done = try await first.run(
            TransferV1(world: world),
            id: "t-1",
            input: TransferV1.Input(id: "t-1", cents: 500)
        )
        #expect(done.output == "moved 500")
        let upgraded = journals.runner(journal)
        #expect(try await upgraded.outcome(TransferV2.self, id: "t-1").output == "moved 500 EUR")
        // Run again under the default reuse policy, the existing outcome comes back migrated too.
        let again = try await upgraded.run(
            TransferV2(world: world),
            id: "t-1",
            input: TransferV2.Input(id: "t-1", amount: TransferV2.Money(cents: 1, currency: "USD"))
        )
        #expect(again.output == "moved 500 EUR")
        #expect(TransferV2.migrated.withLock { $0 } == ["output": 2])
    }

    @Test("a run that a newer version journaled is not resumed by older code", arguments: Journal.allCases)
    func refusesANewerJournal(journal: Journal) async throws {
        let journals = Journals()
        let world = ShopWorld()
        await self.interrupt(
            TransferV2(world: world),
            input: TransferV2.Input(id: "t-1", amount: TransferV2.Money(cents: 500, currency: "EUR")),
            on: journals.runner(journal),
            at: "validate",
            world: world
        )
        let rolledBack = journals.runner(journal)
        rolledBack.register(TransferV1(world: world))
        await #expect(throws: SagaError.self) { try await rolledBack.recover() }
        do {
            try await rolledBack.recover()
        } catch {
            #expect(error.code == .journalFromNewerVersion)
            #expect(error.message.contains("version 2"))
        }
        #expect(try await rolledBack.status(TransferV1.name, id: "t-1")?.phase == .running)
        #expect(world.log == ["validate"])
        // Run again by the old code, it is refused the same way, and nothing runs.
        await #expect(throws: SagaError.self) {
            try await rolledBack.run(TransferV1(world: world), id: "t-1", input: TransferV1.Input(id: "t-1", cents: 1))
        }
        #expect(world.log == ["validate"])
    }

    @Test("a migration that fails stops the saga for an operator instead of compensating", arguments: Journal.allCases)
    func failedMigrationNeedsAnOperator(journal: Journal) async throws {
        let (journals, world) = await self.stoppedByVersion1(journal)
        TransferV2.refused.withLock { $0 = ["debit"] }
        let upgraded = journals.runner(journal)
        upgraded.register(TransferV2(world: world))
        try await upgraded.recover()
        let outcome = try await upgraded.outcome(TransferV2.self, id: "t-1")
        guard case .needsIntervention(let intervention) = outcome else {
            Issue.record("expected needsIntervention, got \(outcome.phase)")
            return
        }
        #expect(intervention.cause.step == "debit")
        #expect(intervention.cause.message.contains("cannot migrate the output of debit from version 1"))
        // Nothing was compensated: the debit's compensation did not run.
        #expect(world.log == ["validate"])
    }

    @Test("a typed migration reshapes JSON on its own")
    func migrationOnItsOwn() throws {
        let migration = TransferV2.migrations[0]
        #expect(migration.payload == .input)
        #expect(migration.sourceVersion == 1)
        let migrated = try migration.migrate(#"{"id":"t-9","cents":42}"#)
        #expect(migrated.contains(#""currency":"EUR""#))
        #expect(migrated.contains(#""cents":42"#))
        #expect(throws: (any Error).self) { try migration.migrate(#"{"id":"t-9"}"#) }
    }
}
