import Dispatch
import KeelCore
import KeelEventSourcing
import KeelSagas
import KeelTesting
import Synchronization
import Testing

/// Recovery across more than one crash, and right after `recover()`: what the saga crash trials
/// found, made deterministic with stores that fail at a chosen append (a crash as the journal sees
/// it) and an executor that holds the runner's tasks.
@Suite("Saga recovery after repeated crashes", .timeLimit(.minutes(2)))
struct SagaInDoubtTests {
    func makeRunner(_ store: any EventStore, executor: (any TaskExecutor)? = nil) -> SagaRunner {
        SagaRunner(
            store: store,
            configuration: .init(compensationAttempts: 3, compensationBackoff: .immediate),
            clock: TestClock(),
            random: RandomSource(seed: 7),
            executor: executor
        )
    }

    /// The first process dies during the pivot `confirm` (not idempotent): its effect happened,
    /// its completion never reached the journal (appends: started, validate ×2, pay ×2,
    /// reserve ×2, confirm started; the 9th, confirm's completion, fails).
    func crashDuringThePivot(_ base: any EventStore, _ world: ShopWorld) async {
        let first = self.makeRunner(CrashingStore(base: base, crashAtAppend: 9))
        await #expect(throws: SagaError.self) {
            try await first.run(StrictOrderSaga(world: world), id: "o-1", input: OrderDraft(id: "o-1"))
        }
        #expect(world.confirmed == ["o-1"])
    }

    @Test("a pivot in doubt after a crash: the steps before it are compensated and the saga needs an operator")
    func pivotInDoubt() async throws {
        let base = InMemoryEventStore()
        let world = ShopWorld()
        await self.crashDuringThePivot(base, world)
        let outcome = try await self.makeRunner(base).run(
            StrictOrderSaga(world: world),
            id: "o-1",
            input: OrderDraft(id: "o-1")
        )
        #expect(outcome.phase == .needsIntervention)
        #expect(world.balance == 100 && world.stock == 10)
    }

    @Test("a pivot in doubt still needs an operator when the process dies again while compensating")
    func pivotInDoubtAcrossASecondCrash() async throws {
        let base = InMemoryEventStore()
        let world = ShopWorld()
        await self.crashDuringThePivot(base, world)
        // The second process finds the pivot in doubt and journals its failure (append 1), then dies
        // at the first compensation's start (append 2).
        let second = self.makeRunner(CrashingStore(base: base, crashAtAppend: 2))
        await #expect(throws: SagaError.self) {
            try await second.run(StrictOrderSaga(world: world), id: "o-1", input: OrderDraft(id: "o-1"))
        }
        let outcome = try await self.makeRunner(base).run(
            StrictOrderSaga(world: world),
            id: "o-1",
            input: OrderDraft(id: "o-1")
        )
        // The third process replays the pivot's journaled failure like any step's failure: it
        // compensates and ends `compensated`, although the order is confirmed and nobody knows
        // it. The in-doubt mark lives only in the memory of the run that found it
        // (`SagaExecution.step` appends to `inDoubt` when it journals the failure, not when it
        // replays it).
        #expect(outcome.phase == .needsIntervention, "\(outcome)")
        #expect(world.confirmed == ["o-1"])
        #expect(world.balance == 100 && world.stock == 10)
    }

    @Test("outcome(_:id:) right after recover() waits for the resumed saga instead of calling it not running")
    func outcomeRightAfterRecover() async throws {
        let base = InMemoryEventStore()
        let world = ShopWorld()
        // The first process dies at pay's start (the 4th append): the saga is unfinished.
        let first = self.makeRunner(CrashingStore(base: base, crashAtAppend: 4))
        await #expect(throws: SagaError.self) {
            try await first.run(StrictOrderSaga(world: world), id: "o-1", input: OrderDraft(id: "o-1"))
        }
        let executor = HeldExecutor()
        let runner = self.makeRunner(base, executor: executor)
        runner.register(StrictOrderSaga(world: world))
        let resumed = try await runner.recover()
        #expect(resumed.map(\.id) == ["o-1"])
        // The resumed saga's task has not run yet: the executor holds it. A caller whose task is
        // cancelled does not wait, so the probe ends either way: it should stop "while waiting for"
        // the run; with the bug it finds no run (recover() released its claim before the task
        // took it) and says the saga is not running, as a caller that is not cancelled would too.
        let probe = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await runner.outcome(StrictOrderSaga.self, id: "o-1")
        }
        let result = await probe.result
        guard case .failure(let error as SagaError) = result else {
            Issue.record("expected a SagaError, got \(result)")
            return
        }
        #expect(error.message.contains("cancelled while waiting"), "\(error)")
        executor.release()
        await runner.shutdown()
    }

    @Test("a saga submitted again while recover()'s task for it waits runs once: the submission waits for it")
    func runWhileRecoveryWaits() async throws {
        let base = InMemoryEventStore()
        let world = ShopWorld()
        let first = self.makeRunner(CrashingStore(base: base, crashAtAppend: 4))
        await #expect(throws: SagaError.self) {
            try await first.run(StrictOrderSaga(world: world), id: "o-1", input: OrderDraft(id: "o-1"))
        }
        let executor = HeldExecutor()
        let runner = self.makeRunner(base, executor: executor)
        runner.register(StrictOrderSaga(world: world))
        #expect(try await runner.recover().map(\.id) == ["o-1"])
        // Submitting the same order again ("harmless", says `returnExisting`) finds the saga
        // claimed by recovery's task (held by the executor), and waits for its outcome instead of
        // running it a second time.
        let resubmitted = Task {
            try await runner.run(StrictOrderSaga(world: world), id: "o-1", input: OrderDraft(id: "o-1"))
        }
        executor.release()
        await executor.drain()
        let outcome = try await resubmitted.value
        #expect(outcome.output == "receipt-o-1")
        #expect(world.log.filter { $0 == "confirm" }.count == 1, "\(world.log)")
        await runner.shutdown()
    }
}

/// A task executor that holds every job until ``release()``, then runs them, and every later one,
/// on a serial queue.
final class HeldExecutor: TaskExecutor, Sendable {
    private struct State {
        var isHeld = true
        var jobs: [UnownedJob] = []
        /// Jobs scheduled on the queue and not yet run.
        var pending = 0
    }
    private let queue = DispatchQueue(label: "keel.test.held-executor")
    private let state = Lock(State())

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let isHeld = self.state.withLock { state -> Bool in
            if state.isHeld { state.jobs.append(job) }
            return state.isHeld
        }
        if !isHeld { self.schedule(job) }
    }

    /// Runs the held jobs, and from now on runs jobs as they come.
    func release() {
        let jobs = self.state.withLock { state -> [UnownedJob] in
            state.isHeld = false
            defer { state.jobs = [] }
            return state.jobs
        }
        for job in jobs { self.schedule(job) }
    }

    /// Waits until the queue has run every job, those that the jobs enqueued included.
    func drain() async {
        while true {
            await withCheckedContinuation { continuation in self.queue.async { continuation.resume() } }
            if self.state.withLock({ $0.pending == 0 }) { return }
        }
    }

    private func schedule(_ job: UnownedJob) {
        let executor = self.asUnownedTaskExecutor()
        self.state.withLock { $0.pending += 1 }
        self.queue.async {
            job.runSynchronously(on: executor)
            self.state.withLock { $0.pending -= 1 }
        }
    }
}

/// The seed's order saga with a pivot that is not idempotent, so that a crash during it leaves
/// the pivot in doubt.
struct StrictOrderSaga: Saga {
    static let name = "order.strict"
    let world: ShopWorld

    func run(_ order: OrderDraft, saga: SagaContext) async throws -> String {
        let total = try await saga.step("validate", .idempotent) { _ in try await world.validate(order) }
        _ = try await saga.step("pay", .idempotent) { step in
            try await world.pay(order, amount: total, key: step.idempotencyKey)
        } compensate: { payment, _ in
            try await world.refund(payment)
        }
        _ = try await saga.step("reserve", .idempotent) { step in
            try await world.reserve(order, key: step.idempotencyKey)
        } compensate: { reservation, _ in
            try await world.release(reservation)
        }
        return try await saga.pivot("confirm") { _ in try await world.confirm(order) }
    }
}
