import KeelCore
import KeelEventSourcing
import KeelSagas
import KeelTesting
import Testing

@Suite("The in-memory saga journal", .timeLimit(.minutes(2)))
struct InMemorySagaJournalTests {
    /// One fixed wall-clock time for every entry, so that two journals' timelines can be compared.
    static let wallClock = WallClock.fixed(nanosecondsSinceEpoch: 1_700_000_000_000_000_000)

    static let configuration = SagaRunner.Configuration(
        compensationAttempts: 2,
        compensationBackoff: .immediate,
        retriableAttempts: 2,
        retriableBackoff: .immediate
    )

    func memoryRunner(_ journal: InMemorySagaJournal = InMemorySagaJournal()) -> SagaRunner {
        SagaRunner(
            journal: journal,
            configuration: Self.configuration,
            clock: TestClock(),
            wallClock: Self.wallClock,
            random: RandomSource(seed: 3)
        )
    }

    func storeRunner(_ store: any EventStore = InMemoryEventStore()) -> SagaRunner {
        SagaRunner(
            store: store,
            configuration: Self.configuration,
            clock: TestClock(),
            wallClock: Self.wallClock,
            random: RandomSource(seed: 3)
        )
    }

    @Test(
        "a saga ends, acts and reads back as it does journaled in an event store",
        arguments: [[], ["pay"], ["confirm"], ["confirm", "refund"]]
    )
    func sameAsTheStore(failing: [String]) async throws {
        var results: [(outcome: SagaPhaseAndLog, timeline: String, history: SagaHistory)] = []
        for runner in [self.storeRunner(), self.memoryRunner()] {
            let world = ShopWorld()
            for operation in failing { world.fail(operation) }
            let outcome = try await runner.run(OrderSaga(world: world), id: "o-1", input: OrderDraft(id: "o-1"))
            results.append(
                (
                    SagaPhaseAndLog(phase: outcome.phase, output: outcome.output, log: world.log),
                    try await runner.timeline(OrderSaga.name, id: "o-1"),
                    try await runner.history(OrderSaga.name, id: "o-1")
                )
            )
        }
        let (store, memory) = (results[0], results[1])
        #expect(memory.outcome == store.outcome)
        #expect(memory.timeline == store.timeline)
        #expect(memory.history == store.history)
        #expect(memory.timeline.split(separator: "\n").count >= 6)
    }

    @Test("interventions, an operator's retry and the reuse policies work on it")
    func operatorsAndReuse() async throws {
        let journal = InMemorySagaJournal()
        let runner = self.memoryRunner(journal)
        let world = ShopWorld()
        world.fail("confirm")
        world.fail("refund")
        let failed = try await runner.run(OrderSaga(world: world), id: "o-1", input: OrderDraft(id: "o-1"))
        #expect(failed.phase == .needsIntervention)
        #expect(try await runner.interventions().map(\.id) == ["o-1"])
        world.fail("refund", times: 0)
        #expect(try await runner.retry(OrderSaga.self, id: "o-1").phase == .compensated)
        #expect(try await runner.interventions().isEmpty)
        #expect(world.balance == 100 && world.stock == 10 && world.reserved == 0)

        do {
            _ = try await runner.run(
                OrderSaga(world: world),
                id: "o-1",
                input: OrderDraft(id: "o-1"),
                reuse: .rejectDuplicate
            )
            Issue.record("ran a duplicate")
        } catch {
            #expect(error.code == .duplicateSaga)
        }
        let existing = try await runner.run(OrderSaga(world: world), id: "o-1", input: OrderDraft(id: "o-1"))
        #expect(existing.phase == .compensated)
        world.fail("confirm", times: 0)
        let second = try await runner.run(
            OrderSaga(world: world),
            id: "o-1",
            input: OrderDraft(id: "o-1"),
            reuse: .allowAfterFailure
        )
        #expect(second.output == "receipt-o-1")
        #expect(world.applications["o-1#2/pay"] == 1)
        #expect(try await runner.status(OrderSaga.name, id: "o-1")?.run == 2)
        #expect(journal.count == 1)
    }

    @Test("a new runner over the same journal resumes what a shut-down runner left unfinished")
    func recoveryByANewRunner() async throws {
        let journal = InMemorySagaJournal()
        let world = ShopWorld()
        let gate = world.gate("reserve")
        let first = self.memoryRunner(journal)
        let run = Task { try await first.run(OrderSaga(world: world), id: "o-1", input: OrderDraft(id: "o-1")) }
        await gate.arrival()
        // The runner stops the saga at its next step; the step under way finishes and is journaled.
        await first.shutdown()
        gate.open()
        do {
            _ = try await run.value
            Issue.record("the run went on after the shutdown")
        } catch {
            #expect((error as? SagaError)?.code == .suspended)
        }
        #expect(world.log == ["validate", "pay", "reserve"])
        #expect(try await first.status(OrderSaga.name, id: "o-1")?.phase == .running)

        let second = self.memoryRunner(journal)
        second.register(OrderSaga(world: world))
        #expect(try await second.recover().map(\.id) == ["o-1"])
        let outcome = try await second.outcome(OrderSaga.self, id: "o-1")
        #expect(outcome.output == "receipt-o-1")
        // The recorded steps returned their outputs: only the pivot ran after the restart.
        #expect(world.log == ["validate", "pay", "reserve", "confirm"])
        #expect(world.applications == ["o-1/pay": 1, "o-1/reserve": 1])
    }

    /// A journal holding order `o-1`, unfinished: its runner was shut down while `reserve` ran.
    func orderStoppedAtReserve() async -> InMemorySagaJournal {
        let journal = InMemorySagaJournal()
        let world = ShopWorld()
        let gate = world.gate("reserve")
        let runner = self.memoryRunner(journal)
        let run = Task { try await runner.run(OrderSaga(world: world), id: "o-1", input: OrderDraft(id: "o-1")) }
        await gate.arrival()
        await runner.shutdown()
        gate.open()
        _ = try? await run.value
        return journal
    }

    @Test("a run registers its saga only when none of its name is: recovery resumes with the registered one")
    func runRegistersOnlyTheFirst() async throws {
        let journal = await self.orderStoppedAtReserve()

        // Registered by hand, then run with another instance: the registration stays.
        let registered = ShopWorld()
        let other = ShopWorld()
        let second = self.memoryRunner(journal)
        second.register(OrderSaga(world: registered))
        _ = try await second.run(OrderSaga(world: other), id: "o-2", input: OrderDraft(id: "o-2"))
        #expect(try await second.recover().map(\.id) == ["o-1"])
        #expect(try await second.outcome(OrderSaga.self, id: "o-1").output == "receipt-o-1")
        #expect(registered.log == ["confirm"])
        #expect(other.log == ["validate", "pay", "reserve", "confirm"])
    }

    @Test("a run registers its saga when none of its name is registered")
    func runRegistersWhenNoneIs() async throws {
        let journal = await self.orderStoppedAtReserve()

        let ran = ShopWorld()
        let second = self.memoryRunner(journal)
        _ = try await second.run(OrderSaga(world: ran), id: "o-2", input: OrderDraft(id: "o-2"))
        #expect(try await second.recover().map(\.id) == ["o-1"])
        #expect(try await second.outcome(OrderSaga.self, id: "o-1").output == "receipt-o-1")
        #expect(ran.log == ["validate", "pay", "reserve", "confirm", "confirm"])
    }

    @Test("outputs are kept as values: one that cannot be encoded fails its step only in a durable journal")
    func keptValues() async throws {
        let memory = self.memoryRunner()
        let kept = try await memory.run(OpaqueSaga(), id: "x-1", input: 7)
        #expect(kept.output == Opaque(value: 7))
        #expect(try await memory.outcome(OpaqueSaga.self, id: "x-1").output == Opaque(value: 7))

        let store = self.storeRunner()
        let encoded = try await store.run(OpaqueSaga(), id: "x-1", input: 7)
        guard case .compensated(let cause) = encoded else {
            Issue.record("expected compensated, got \(encoded.phase)")
            return
        }
        #expect(cause.message.contains("encodingFailed"))
    }

    @Test("with no span recorded, a saga's steps share one trace: a new one, or the caller's")
    func stepsShareTheTrace() async throws {
        let runner = self.memoryRunner()
        let first = try #require(try await runner.run(TracingSaga(), id: "t-1", input: 0).output)
        let second = try #require(try await runner.run(TracingSaga(), id: "t-2", input: 0).output)
        #expect(Set(first).count == 1)
        #expect(Set(second).count == 1)
        #expect(first[0] != second[0])

        let caller = TraceContext.makeRoot(using: RandomSource(seed: 1), correlationID: "checkout-9")
        let inside = try await TraceContext.$current.withValue(caller) {
            try #require(try await runner.run(TracingSaga(), id: "t-3", input: 0).output)
        }
        #expect(inside == Array(repeating: "\(caller.traceID) checkout-9", count: 3))
    }
}

/// What a run did, to compare two journals' runs.
struct SagaPhaseAndLog: Equatable {
    var phase: SagaStatus.Phase
    var output: String?
    var log: [String]
}

/// A value that does not encode.
struct Opaque: Codable, Sendable, Equatable {
    var value: Int

    struct CannotEncode: Error {}

    func encode(to encoder: any Encoder) throws {
        throw CannotEncode()
    }
}

/// One step whose output does not encode.
struct OpaqueSaga: Saga {
    static let name = "opaque"

    func run(_ input: Int, saga: SagaContext) async throws -> Opaque {
        try await saga.step("make") { _ in Opaque(value: input) }
    }
}

/// Three steps, each returning the trace id and correlation id it ran under.
struct TracingSaga: Saga {
    static let name = "tracing"

    func run(_ input: Int, saga: SagaContext) async throws -> [String] {
        var seen: [String] = []
        for step in ["a", "b", "c"] {
            seen.append(
                try await saga.step(step) { _ in
                    let context = TraceContext.current
                    return "\(context?.traceID.description ?? "none") \(context?.correlationID ?? "none")"
                }
            )
        }
        return seen
    }
}
