import KeelCore
import KeelEventSourcing
import KeelSagas
import KeelTesting
import Testing

@Suite("Recovery after a crash", .timeLimit(.minutes(2)))
struct SagaRecoveryTests {
    func makeRunner(_ store: any EventStore) -> SagaRunner {
        SagaRunner(
            store: store,
            configuration: .init(
                compensationAttempts: 2,
                compensationBackoff: .immediate,
                retriableBackoff: .immediate
            ),
            clock: TestClock(),
            random: RandomSource(seed: 11)
        )
    }

    @Test(
        "a crash at any journal append, then recovery by a new runner, ends the saga as an uninterrupted run would",
        arguments: [nil, "reserve", "confirm"],
        [false, true]
    )
    func crashAtEveryAppend(failing: String?, writesBeforeCrash: Bool) async throws {
        // Count the appends of an uninterrupted run first.
        let reference = InMemoryEventStore()
        let referenceWorld = ShopWorld()
        if let failing { referenceWorld.fail(failing) }
        let expected = try await self.makeRunner(reference).run(
            OrderSaga(world: referenceWorld),
            id: "o-1",
            input: OrderDraft(id: "o-1")
        )
        let appends = Int(try await reference.headPosition())
        #expect(appends >= 10)

        for crashAt in 1...appends {
            let world = ShopWorld()
            if let failing { world.fail(failing) }
            let store = InMemoryEventStore()
            let crashing = CrashingStore(base: store, crashAtAppend: crashAt, writes: writesBeforeCrash)
            do {
                _ = try await self.makeRunner(crashing).run(
                    OrderSaga(world: world),
                    id: "o-1",
                    input: OrderDraft(id: "o-1")
                )
                Issue.record("crash at append \(crashAt) of \(appends): the run did not notice")
            } catch {
                #expect(error.code == .journalUnavailable, "crash at \(crashAt)")
            }

            // A new runner — a new process — on what the store kept.
            let runner = self.makeRunner(store)
            runner.register(OrderSaga(world: world))
            let resumed = try await runner.recover()
            if crashAt == 1 && !writesBeforeCrash {
                // The start never reached the journal: run() failed, and there is nothing to resume.
                #expect(resumed.isEmpty)
                #expect(world.log.isEmpty)
                continue
            }
            let outcome: SagaOutcome<String>
            if resumed.isEmpty {
                // The crash came after the finish was written: the outcome is in the journal.
                outcome = try await runner.outcome(OrderSaga.self, id: "o-1")
            } else {
                #expect(resumed.map(\.id) == ["o-1"])
                outcome = try await runner.outcome(OrderSaga.self, id: "o-1")
            }
            #expect(
                outcome.phase == expected.phase,
                "crash at append \(crashAt) of \(appends), failing \(failing ?? "none")"
            )
            // No idempotency key was applied twice, and money and stock add up.
            #expect(world.applications.values.allSatisfy { $0 == 1 }, "crash at \(crashAt): \(world.applications)")
            #expect(world.balance + world.merchant == 100)
            #expect(world.stock + world.reserved == 10)
            switch outcome {
            case .completed:
                #expect(world.merchant == 30 && world.reserved == 2 && world.confirmed == ["o-1"])
            case .compensated:
                #expect(world.merchant == 0 && world.reserved == 0 && world.confirmed.isEmpty)
            case .needsIntervention(let intervention):
                Issue.record("crash at \(crashAt): needs intervention: \(intervention)")
            }
            #expect(try await runner.recover().isEmpty, "a finished saga is not resumed again")
        }
    }

    struct InDoubt: Saga {
        static let name = "order.in-doubt"
        let world: ShopWorld
        let compensates: Bool

        func run(_ order: OrderDraft, saga: SagaContext) async throws -> String {
            _ = try await saga.step("reserve", .idempotent) { step in
                try await world.reserve(order, key: step.idempotencyKey)
            } compensate: { reservation, _ in
                try await world.release(reservation)
            }
            if self.compensates {
                _ = try await saga.step("pay") { step in
                    try await world.pay(order, amount: 30, key: step.idempotencyKey)
                } compensate: { payment, _ in
                    try await world.refund(payment)
                }
            } else {
                _ = try await saga.step("notify") { _ in try await world.ship(order) }
            }
            return "done"
        }
    }

    @Test("a step that is not idempotent, found started and not completed, is not run again", arguments: [true, false])
    func inDoubt(compensates: Bool) async throws {
        let world = ShopWorld()
        let store = InMemoryEventStore()
        // Appends: started, reserve started, reserve completed, then the second step's start is
        // written and the process dies before its action runs.
        let crashing = CrashingStore(base: store, crashAtAppend: 4, writes: true)
        let saga = InDoubt(world: world, compensates: compensates)
        await #expect(throws: SagaError.self) {
            try await self.makeRunner(crashing).run(saga, id: "o-1", input: OrderDraft(id: "o-1"))
        }
        let runner = self.makeRunner(store)
        runner.register(saga)
        #expect(try await runner.recover().count == 1)
        let outcome = try await runner.outcome(InDoubt.self, id: "o-1")
        // Either way the second step never ran again, and the reservation was released.
        #expect(world.log == ["reserve", "release"])
        if compensates {
            // Its effect may have happened and could be undone only with an output nobody has.
            guard case .needsIntervention(let intervention) = outcome else {
                Issue.record("expected needsIntervention, got \(outcome.phase)")
                return
            }
            #expect(intervention.cause.step == "pay")
            #expect(intervention.cause.message.hasPrefix("stepInDoubt"))
        } else {
            guard case .compensated(let cause) = outcome else {
                Issue.record("expected compensated, got \(outcome.phase)")
                return
            }
            #expect(cause.step == "notify")
        }
    }

    @Test("a step found in doubt by a run in the caller's task carries SagaError.stepInDoubt")
    func inDoubtErrorInProcess() async throws {
        let (store, saga) = await self.crashWithPayInDoubt()
        // Submitting it again resumes it here, so the failure still holds its error.
        let outcome = try await self.makeRunner(store).run(saga, id: "o-1", input: OrderDraft(id: "o-1"))
        guard case .needsIntervention(let intervention) = outcome else {
            Issue.record("expected needsIntervention, got \(outcome.phase)")
            return
        }
        #expect((intervention.cause.error as? SagaError)?.code == .stepInDoubt)
    }

    /// Runs the in-doubt saga until its process dies at the fourth journal append (pay's start is
    /// written, its completion is not).
    /// - Returns: The store as the crash left it, and the saga.
    func crashWithPayInDoubt() async -> (InMemoryEventStore, InDoubt) {
        let store = InMemoryEventStore()
        let saga = InDoubt(world: ShopWorld(), compensates: true)
        await #expect(throws: SagaError.self) {
            try await self.makeRunner(CrashingStore(base: store, crashAtAppend: 4, writes: true)).run(
                saga,
                id: "o-1",
                input: OrderDraft(id: "o-1")
            )
        }
        return (store, saga)
    }

    @Test("a step found in doubt stays in doubt when the process dies again during the compensation")
    func inDoubtAcrossASecondCrash() async throws {
        let (store, saga) = await self.crashWithPayInDoubt()
        // The first recovery journals pay as in doubt, then dies as it starts compensating.
        let second = self.makeRunner(CrashingStore(base: store, crashAtAppend: 2))
        second.register(saga)
        try await second.recover()
        await #expect(throws: SagaError.self) { try await second.outcome(InDoubt.self, id: "o-1") }
        // The second recovery must still know that pay's effect is unknown.
        let third = self.makeRunner(store)
        third.register(saga)
        try await third.recover()
        let outcome = try await third.outcome(InDoubt.self, id: "o-1")
        guard case .needsIntervention(let intervention) = outcome else {
            Issue.record("expected needsIntervention, got \(outcome.phase)")
            return
        }
        #expect(intervention.cause.step == "pay")
        #expect(saga.world.log == ["reserve", "release"])
    }

    @Test("an idempotent step found started runs again with the same idempotency key")
    func idempotentStepRunsAgain() async throws {
        let world = ShopWorld()
        let store = InMemoryEventStore()
        // started, validate ×2, pay started; the crash hits pay's completion, after its effect.
        let crashing = CrashingStore(base: store, crashAtAppend: 5)
        await #expect(throws: SagaError.self) {
            try await self.makeRunner(crashing).run(OrderSaga(world: world), id: "o-1", input: OrderDraft(id: "o-1"))
        }
        #expect(world.log == ["validate", "pay"])
        let runner = self.makeRunner(store)
        runner.register(OrderSaga(world: world))
        try await runner.recover()
        #expect(try await runner.outcome(OrderSaga.self, id: "o-1").output == "receipt-o-1")
        // pay ran twice with the key o-1/pay, and took the money once.
        #expect(world.applications["o-1/pay"] == 1)
        #expect(world.balance == 70)
        let timeline = try await runner.timeline(OrderSaga.name, id: "o-1")
        #expect(timeline.contains("step pay: attempt 2"))
    }

    @Test("submitting an unfinished saga again resumes it with the input its journal records")
    func resumeWithTheJournaledInput() async throws {
        let world = ShopWorld()
        let store = InMemoryEventStore()
        await #expect(throws: SagaError.self) {
            try await self.makeRunner(CrashingStore(base: store, crashAtAppend: 4)).run(
                OrderSaga(world: world),
                id: "o-1",
                input: OrderDraft(id: "o-1", quantity: 2)
            )
        }
        let runner = self.makeRunner(store)
        let outcome = try await runner.run(
            OrderSaga(world: world),
            id: "o-1",
            input: OrderDraft(id: "o-1", quantity: 9)
        )
        #expect(outcome.output == "receipt-o-1")
        // The journal's two widgets, not the resubmission's nine.
        #expect(world.reserved == 2)
    }

    @Test("a damaged journal does not keep recovery from resuming the others, and is named")
    func damagedJournal() async throws {
        let world = ShopWorld()
        let store = InMemoryEventStore()
        for id in ["o-1", "o-2"] {
            await #expect(throws: SagaError.self) {
                try await self.makeRunner(CrashingStore(base: store, crashAtAppend: 4)).run(
                    OrderSaga(world: world),
                    id: id,
                    input: OrderDraft(id: id)
                )
            }
        }
        try await store.append(
            EventData(
                type: "saga.unheard-of",
                metadata: EventMetadata(id: EventID(high: 9, low: 9), time: 0),
                payload: []
            ),
            to: "saga-order.place:o-1"
        )
        let runner = self.makeRunner(store)
        runner.register(OrderSaga(world: world))
        do {
            try await runner.recover()
            Issue.record("recovered a damaged journal")
        } catch {
            #expect(error.code == .journalCorrupt)
            #expect(error.message.contains("saga-order.place:o-1"))
        }
        #expect(try await runner.outcome(OrderSaga.self, id: "o-2").output == "receipt-o-2")
    }

    @Test("recovery names a journal whose saga type is not registered, after resuming the others")
    func unknownSaga() async throws {
        let store = InMemoryEventStore()
        let world = ShopWorld()
        await #expect(throws: SagaError.self) {
            try await self.makeRunner(CrashingStore(base: store, crashAtAppend: 3)).run(
                OrderSaga(world: world),
                id: "o-1",
                input: OrderDraft(id: "o-1")
            )
        }
        let runner = self.makeRunner(store)
        do {
            try await runner.recover()
            Issue.record("recovered an unregistered saga")
        } catch {
            #expect(error.code == .unknownSaga)
            #expect(error.message.contains("order.place o-1"))
        }
    }

    @Test("a journal entry of a newer schema version, or of an unknown type, is a typed error")
    func badJournal() async throws {
        let store = InMemoryEventStore()
        let world = ShopWorld()
        _ = try await self.makeRunner(store).run(OrderSaga(world: world), id: "o-1", input: OrderDraft(id: "o-1"))
        let runner = self.makeRunner(store)
        try await store.append(
            EventData(
                type: "saga.finished",
                schemaVersion: 9,
                metadata: EventMetadata(id: EventID(high: 1, low: 1), time: 0),
                payload: []
            ),
            to: "saga-order.place:o-1"
        )
        do {
            _ = try await runner.status(OrderSaga.name, id: "o-1")
            Issue.record("read a newer journal")
        } catch {
            #expect(error.code == .journalFromNewerVersion)
        }
        try await store.append(
            EventData(
                type: "saga.unheard-of",
                metadata: EventMetadata(id: EventID(high: 1, low: 2), time: 0),
                payload: []
            ),
            to: "saga-order.place:o-2"
        )
        do {
            _ = try await runner.status(OrderSaga.name, id: "o-2")
            Issue.record("read an unknown entry")
        } catch {
            #expect(error.code == .journalCorrupt)
        }
    }
}
