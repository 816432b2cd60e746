import KeelCore
import KeelEventSourcing
import KeelSagas
import KeelTesting
import Testing

@Suite("The seed's order saga", .timeLimit(.minutes(2)))
struct OrderSagaTests {
    static let steps = ["validate", "pay", "reserve", "confirm"]
    static let compensations = ["pay": "refund", "reserve": "release"]

    func makeRunner(_ store: any EventStore = InMemoryEventStore(), clock: TestClock = TestClock()) -> SagaRunner {
        SagaRunner(
            store: store,
            configuration: .init(
                compensationAttempts: 3,
                compensationBackoff: .immediate,
                retriableAttempts: 3,
                retriableBackoff: .immediate
            ),
            clock: clock,
            random: RandomSource(seed: 7)
        )
    }

    @Test("completes: every step once, in order, and the money and stock moved")
    func completes() async throws {
        let world = ShopWorld()
        let runner = self.makeRunner()
        let outcome = try await runner.run(OrderSaga(world: world), id: "o-1", input: OrderDraft(id: "o-1"))
        #expect(outcome.output == "receipt-o-1")
        #expect(world.log == ["validate", "pay", "reserve", "confirm"])
        #expect(world.balance == 70 && world.merchant == 30)
        #expect(world.stock == 8 && world.reserved == 2)
        #expect(world.applications == ["o-1/pay": 1, "o-1/reserve": 1])
        let status = try await runner.status(OrderSaga.name, id: "o-1")
        #expect(status?.phase == .completed)
        let timeline = try await runner.timeline(OrderSaga.name, id: "o-1")
        #expect(timeline.contains("started order.place o-1 (run 1)"))
        #expect(timeline.contains("pivot confirm: completed"))
        #expect(timeline.hasSuffix("finished: completed"))
    }

    @Test("a failure at each step compensates exactly the steps that completed, newest first", arguments: steps)
    func failureAtEachStep(_ failing: String) async throws {
        let world = ShopWorld()
        world.fail(failing)
        let runner = self.makeRunner()
        let outcome = try await runner.run(OrderSaga(world: world), id: "o-1", input: OrderDraft(id: "o-1"))
        guard case .compensated(let cause) = outcome else {
            Issue.record("expected compensated, got \(outcome.phase)")
            return
        }
        #expect(cause.step == failing)
        #expect(cause.errorType == "Failure")
        let index = Self.steps.firstIndex(of: failing)!
        let ran = Array(Self.steps[..<index])
        let undone = ran.reversed().compactMap { Self.compensations[$0] }
        #expect(world.log == ran + ["\(failing) failed"] + undone)
        // Conserved: all money back with the customer, all stock back on the shelf.
        #expect(world.balance == 100 && world.merchant == 0)
        #expect(world.stock == 10 && world.reserved == 0)
        #expect(world.confirmed.isEmpty)
    }

    @Test(
        "a compensation that keeps failing ends in intervention; the other compensations still run",
        arguments: ["refund", "release"]
    )
    func failingCompensation(_ failing: String) async throws {
        let world = ShopWorld()
        world.fail("confirm")
        world.fail(failing)
        let runner = self.makeRunner()
        let outcome = try await runner.run(OrderSaga(world: world), id: "o-1", input: OrderDraft(id: "o-1"))
        guard case .needsIntervention(let intervention) = outcome else {
            Issue.record("expected needsIntervention, got \(outcome.phase)")
            return
        }
        #expect(intervention.cause.step == "confirm")
        let step = failing == "refund" ? "pay" : "reserve"
        #expect(intervention.failedCompensations.map(\.step) == [step])
        // Three attempts (the configuration's), then the other compensation still ran.
        #expect(world.log.filter { $0 == "\(failing) failed" }.count == 3)
        let other = failing == "refund" ? "release" : "refund"
        #expect(world.log.contains(other))

        let listed = try await runner.interventions()
        #expect(listed.map(\.id) == ["o-1"])
        #expect(listed.first?.failedCompensations.map(\.step) == [step])

        // The operator fixes the cause and retries: the failed compensation runs again, the saga
        // ends compensated, and it leaves the list.
        world.fail(failing, times: 0)
        let retried = try await runner.retry(OrderSaga.self, id: "o-1")
        #expect(retried.phase == .compensated)
        #expect(world.balance == 100 && world.stock == 10 && world.reserved == 0)
        #expect(try await runner.interventions().isEmpty)
        #expect(try await runner.timeline(OrderSaga.name, id: "o-1").contains("reopened by an operator"))
    }

    @Test("an operator resolves an intervention by hand")
    func resolve() async throws {
        let world = ShopWorld()
        world.fail("confirm")
        world.fail("refund")
        let runner = self.makeRunner()
        _ = try await runner.run(OrderSaga(world: world), id: "o-1", input: OrderDraft(id: "o-1"))
        await #expect(throws: SagaError.self) { try await runner.resolve(OrderSaga.name, id: "nope", note: "") }
        try await runner.resolve(OrderSaga.name, id: "o-1", note: "refunded by bank transfer")
        #expect(try await runner.interventions().isEmpty)
        #expect(try await runner.status(OrderSaga.name, id: "o-1")?.phase == .resolved)
        do {
            try await runner.resolve(OrderSaga.name, id: "o-1", note: "again")
            Issue.record("resolved twice")
        } catch {
            #expect(error.code == .notInIntervention)
        }
    }

    @Test("cancelling the saga's task while a step runs compensates what completed", arguments: steps)
    func cancellationAtEachStep(_ parked: String) async throws {
        let world = ShopWorld()
        let gate = world.gate(parked)
        let runner = self.makeRunner()
        let task = Task {
            try await runner.run(OrderSaga(world: world), id: "o-1", input: OrderDraft(id: "o-1"))
        }
        await gate.arrival()
        task.cancel()
        let outcome = try await task.value
        let index = Self.steps.firstIndex(of: parked)!
        let ran = Array(Self.steps[..<index])
        if parked == "confirm" {
            // The pivot was cancelled before it completed: it failed, so the saga compensates.
            #expect(outcome.phase == .compensated)
        }
        guard case .compensated(let cause) = outcome else {
            Issue.record("expected compensated, got \(outcome.phase)")
            return
        }
        #expect(cause.isCancellation)
        #expect(cause.step == parked)
        #expect(world.log == ran + ran.reversed().compactMap { Self.compensations[$0] })
        #expect(world.balance == 100 && world.stock == 10)
    }

    @Test("cancelling between steps stops before the next one and compensates")
    func cancellationBetweenSteps() async throws {
        let world = ShopWorld()
        let runner = self.makeRunner()
        struct CancelAfterPay: Saga {
            static let name = "order.cancel-between"
            let world: ShopWorld
            func run(_ order: OrderDraft, saga: SagaContext) async throws -> String {
                _ = try await saga.step("pay", .idempotent) { step in
                    try await world.pay(order, amount: 30, key: step.idempotencyKey)
                } compensate: { payment, _ in
                    try await world.refund(payment)
                }
                withUnsafeCurrentTask { $0?.cancel() }
                _ = try await saga.step("reserve") { step in try await world.reserve(order, key: step.idempotencyKey) }
                return "unreachable"
            }
        }
        // In a task of its own: the saga cancels the task it runs in.
        let outcome = try await Task {
            try await runner.run(CancelAfterPay(world: world), id: "o-1", input: OrderDraft(id: "o-1"))
        }.value
        guard case .compensated(let cause) = outcome else {
            Issue.record("expected compensated, got \(outcome.phase)")
            return
        }
        #expect(cause.isCancellation && cause.step == nil)
        #expect(world.log == ["pay", "refund"])
    }

    @Test("compensations run and succeed even though the saga's task is cancelled")
    func compensationIsShielded() async throws {
        let world = ShopWorld()
        let gate = world.gate("refund")
        world.fail("reserve")
        let runner = self.makeRunner()
        let task = Task { try await runner.run(OrderSaga(world: world), id: "o-1", input: OrderDraft(id: "o-1")) }
        await gate.arrival()
        task.cancel()
        gate.open()
        let outcome = try await task.value
        #expect(outcome.phase == .compensated)
        #expect(world.log == ["validate", "pay", "reserve failed", "refund"])
        #expect(world.balance == 100)
    }
}
