import KeelCore
import KeelEventSourcing
import KeelResilience
import KeelSagas
import KeelTesting
import Synchronization
import Testing

/// Records what the steps of a test saga did, in order.
final class Trail: Sendable {
    private let entries = Lock<[String]>([])
    func add(_ entry: String) { self.entries.withLock { $0.append(entry) } }
    var all: [String] { self.entries.withLock { $0 } }
}

/// A count that goes down by one per `take()`, from any task.
final class Countdown: Sendable {
    private let left: Lock<Int>
    init(_ count: Int) { self.left = Lock(count) }
    /// Whether the count was above zero; counts one down.
    func take() -> Bool {
        self.left.withLock { left in
            defer { left -= 1 }
            return left > 0
        }
    }
    func set(_ count: Int) { self.left.withLock { $0 = count } }
}

struct Boom: Error, CustomStringConvertible {
    var what: String
    var description: String { "boom: \(self.what)" }
}

@Suite("Parallel branches, nested sagas, the pivot and the rules", .timeLimit(.minutes(2)))
struct SagaStructureTests {
    func makeRunner(_ store: any EventStore = InMemoryEventStore(), clock: TestClock = TestClock()) -> SagaRunner {
        SagaRunner(
            store: store,
            configuration: .init(
                compensationAttempts: 2,
                compensationBackoff: .immediate,
                retriableAttempts: 4,
                retriableBackoff: .immediate
            ),
            clock: clock,
            random: RandomSource(seed: 3)
        )
    }

    struct Branches: Saga {
        static let name = "test.branches"
        let trail: Trail
        let gate: Gate
        let failing: String?

        func run(_ input: Int, saga: SagaContext) async throws -> Int {
            try await saga.step("first") { _ in
                self.trail.add("first")
            } compensate: { _ in
                self.trail.add("undo first")
            }
            let (a, b) = try await saga.parallel(
                "group",
                { branch in
                    let one = try await branch.step("a1") { _ in
                        self.trail.add("a1")
                        return 1
                    } compensate: { _, _ in
                        self.trail.add("undo a1")
                    }
                    let two = try await branch.step("a2") { _ in
                        if self.failing == "a2" { throw Boom(what: "a2") }
                        self.trail.add("a2")
                        return 2
                    } compensate: { _, _ in
                        self.trail.add("undo a2")
                    }
                    return one + two
                },
                { branch in
                    try await branch.step("b1") { _ in
                        try await self.gate.pass()
                        self.trail.add("b1")
                        return 10
                    } compensate: { _, _ in
                        self.trail.add("undo b1")
                    }
                }
            )
            return a + b
        }
    }

    @Test("parallel branches run concurrently and return their outputs in order")
    func parallelCompletes() async throws {
        let trail = Trail()
        let gate = Gate()
        gate.open()
        let outcome = try await self.makeRunner().run(
            Branches(trail: trail, gate: gate, failing: nil),
            id: "p",
            input: 0
        )
        #expect(outcome.output == 13)
        #expect(Set(trail.all) == ["first", "a1", "a2", "b1"])
    }

    @Test("a failing branch cancels its running sibling; completed steps are compensated, each branch newest first")
    func parallelFailure() async throws {
        let trail = Trail()
        // b1 waits at a closed gate until the group cancels it.
        let gate = Gate()
        let runner = self.makeRunner()
        let outcome = try await runner.run(Branches(trail: trail, gate: gate, failing: "a2"), id: "p", input: 0)
        guard case .compensated(let cause) = outcome else {
            Issue.record("expected compensated, got \(outcome.phase)")
            return
        }
        #expect(cause.step == "a2")
        // b1 never completed, so it is not compensated; a1 is, then the step before the group.
        #expect(trail.all == ["first", "a1", "undo a1", "undo first"])
        let timeline = try await runner.timeline(Branches.name, id: "p")
        #expect(timeline.contains("step b1: failed: CancellationError"))
    }

    struct Payment: Saga {
        static let name = "test.payment"
        let trail: Trail
        let declines: Bool
        func run(_ amount: Int, saga: SagaContext) async throws -> String {
            try await saga.step("authorize") { _ in
                self.trail.add("authorize")
            } compensate: { _ in
                self.trail.add("void")
            }
            return try await saga.step("capture") { _ in
                if self.declines { throw Boom(what: "declined") }
                self.trail.add("capture")
                return "paid"
            }
        }
    }

    struct Checkout: Saga {
        static let name = "test.checkout"
        let trail: Trail
        let declines: Bool
        let failLate: Bool
        func run(_ input: Int, saga: SagaContext) async throws -> String {
            try await saga.step("hold") { _ in
                self.trail.add("hold")
            } compensate: { _ in
                self.trail.add("unhold")
            }
            let paid: String
            do {
                paid = try await saga.run(Payment(trail: self.trail, declines: self.declines), 5, as: "card")
            } catch {
                // The nested saga failed as a unit (its authorization is already void): pay otherwise.
                paid = try await saga.step("invoice") { _ in
                    self.trail.add("invoice")
                    return "invoiced"
                }
            }
            if self.failLate {
                _ = try await saga.step("ship") { _ in throw Boom(what: "ship") }
            }
            return paid
        }
    }

    @Test("a nested saga that fails compensates itself before the parent goes on")
    func nestedFailure() async throws {
        let trail = Trail()
        let runner = self.makeRunner()
        let outcome = try await runner.run(Checkout(trail: trail, declines: true, failLate: false), id: "c", input: 0)
        #expect(outcome.output == "invoiced")
        #expect(trail.all == ["hold", "authorize", "void", "invoice"])
        let timeline = try await runner.timeline(Checkout.name, id: "c")
        #expect(timeline.contains("step card/authorize: completed"))
    }

    @Test("a completed nested saga's steps are compensated with the parent's, newest first")
    func nestedCompensatedWithParent() async throws {
        let trail = Trail()
        let outcome = try await self.makeRunner().run(
            Checkout(trail: trail, declines: false, failLate: true),
            id: "c",
            input: 0
        )
        #expect(outcome.phase == .compensated)
        #expect(trail.all == ["hold", "authorize", "capture", "void", "unhold"])
    }

    struct PastPivot: Saga {
        static let name = "test.past-pivot"
        let trail: Trail
        let shipFailures: Countdown
        let misuse: Bool

        init(trail: Trail, shipFailures: Int, misuse: Bool = false) {
            self.trail = trail
            self.shipFailures = Countdown(shipFailures)
            self.misuse = misuse
        }

        func run(_ input: Int, saga: SagaContext) async throws -> String {
            try await saga.step("charge") { _ in
                self.trail.add("charge")
            } compensate: { _ in
                self.trail.add("refund")
            }
            try await saga.pivot("confirm") { _ in self.trail.add("confirm") }
            #expect(saga.isPastPivot)
            if self.misuse {
                try await saga.step("late") { _ in
                    self.trail.add("late")
                } compensate: { _ in
                }
            }
            return try await saga.retriable("ship") { step in
                let fails = self.shipFailures.take()
                self.trail.add("ship attempt \(step.attempt)")
                if fails { throw Boom(what: "carrier down") }
                return "shipped"
            }
        }
    }

    @Test("after the pivot a retriable step is retried until it succeeds")
    func retriableAfterPivot() async throws {
        let trail = Trail()
        let outcome = try await self.makeRunner().run(PastPivot(trail: trail, shipFailures: 2), id: "s", input: 0)
        #expect(outcome.output == "shipped")
        #expect(trail.all == ["charge", "confirm", "ship attempt 1", "ship attempt 2", "ship attempt 3"])
    }

    @Test("after the pivot nothing is compensated: a retriable step that runs out of attempts needs intervention")
    func failurePastPivot() async throws {
        let trail = Trail()
        let runner = self.makeRunner()
        let saga = PastPivot(trail: trail, shipFailures: 10)
        let outcome = try await runner.run(saga, id: "s", input: 0)
        guard case .needsIntervention(let intervention) = outcome else {
            Issue.record("expected needsIntervention, got \(outcome.phase)")
            return
        }
        #expect(intervention.cause.step == "ship")
        #expect(!trail.all.contains("refund"))
        #expect(trail.all.filter { $0.hasPrefix("ship attempt") }.count == 4)
        // The operator's retry attempts the step again (its attempts go on counting).
        saga.shipFailures.set(0)
        let retried = try await runner.retry(PastPivot.self, id: "s")
        #expect(retried.output == "shipped")
        #expect(trail.all.last == "ship attempt 5")
    }

    @Test("cancelling the saga after its pivot does not stop it: it goes forward")
    func cancellationPastPivot() async throws {
        let trail = Trail()
        let gate = Gate()
        struct Slow: Saga {
            static let name = "test.slow-ship"
            let trail: Trail
            let gate: Gate
            func run(_ input: Int, saga: SagaContext) async throws -> String {
                try await saga.step("charge") { _ in
                    self.trail.add("charge")
                } compensate: { _ in
                    self.trail.add("refund")
                }
                try await saga.pivot("confirm") { _ in self.trail.add("confirm") }
                return try await saga.retriable("ship") { _ in
                    try await self.gate.pass()
                    self.trail.add("ship")
                    return "shipped"
                }
            }
        }
        let runner = self.makeRunner()
        let task = Task { try await runner.run(Slow(trail: trail, gate: gate), id: "s", input: 0) }
        await gate.arrival()
        task.cancel()
        gate.open()
        #expect(try await task.value.output == "shipped")
        #expect(trail.all == ["charge", "confirm", "ship"])
    }

    @Test("a compensatable step after the pivot is refused, and the saga needs intervention")
    func stepAfterPivot() async throws {
        let trail = Trail()
        let outcome = try await self.makeRunner().run(
            PastPivot(trail: trail, shipFailures: 0, misuse: true),
            id: "s",
            input: 0
        )
        guard case .needsIntervention(let intervention) = outcome else {
            Issue.record("expected needsIntervention, got \(outcome.phase)")
            return
        }
        #expect(intervention.cause.message.contains("after the pivot"))
        #expect(!trail.all.contains("late"))
    }

    struct Rules: Saga {
        static let name = "test.rules"
        let rule: String
        func run(_ input: Int, saga: SagaContext) async throws -> Int {
            switch self.rule {
            case "duplicate":
                _ = try await saga.step("same") { _ in 1 }
                return try await saga.step("same") { _ in 2 }
            case "concurrent":
                // Two steps of one scope at once, from two child tasks: the second is refused.
                let gate = Gate()
                return try await withThrowingTaskGroup(of: Int.self) { group in
                    group.addTask {
                        try await saga.step("one") { _ in
                            try await gate.pass(); return 1
                        }
                    }
                    group.addTask {
                        try await saga.step("two") { _ in
                            try await gate.pass(); return 2
                        }
                    }
                    do {
                        var sum = 0
                        for try await value in group { sum += value }
                        return sum
                    } catch {
                        gate.open()
                        throw error
                    }
                }
            case "pivot in branch":
                return try await saga.parallel("group", { branch in try await branch.pivot("p") { _ in 1 } })
            default:
                _ = try await saga.pivot("p1") { _ in 1 }
                return try await saga.pivot("p2") { _ in 2 }
            }
        }
    }

    @Test(
        "breaking a rule is a typed error",
        arguments: [
            ("duplicate", SagaError.Code.duplicateStepName), ("concurrent", .concurrentSteps),
            ("pivot in branch", .misplacedPivot), ("two pivots", .misplacedPivot),
        ]
    )
    func rules(_ rule: String, _ code: SagaError.Code) async throws {
        let outcome = try await self.makeRunner().run(Rules(rule: rule), id: "r", input: 0)
        let cause: SagaFailure
        switch outcome {
        case .compensated(let failure): cause = failure
        case .needsIntervention(let intervention): cause = intervention.cause
        case .completed: Issue.record("\(rule) completed"); return
        }
        #expect(cause.errorType == "SagaError")
        #expect(cause.message.contains("SagaError(\(code))"), "\(cause)")
    }

    struct Versioned: Saga {
        static let name = "test.versioned"
        let second: String
        let crash: Bool
        func run(_ input: Int, saga: SagaContext) async throws -> Int {
            _ = try await saga.step("first") { _ in 1 }
            _ = try await saga.step(self.second) { _ in 2 }
            return 3
        }
    }

    @Test("a body that asks for other steps on replay than the journal records stops as nondeterministic")
    func nondeterminism() async throws {
        let store = InMemoryEventStore()
        // started, first ×2, second ×2, then the finish fails: the run is left unfinished.
        await #expect(throws: SagaError.self) {
            try await self.makeRunner(CrashingStore(base: store, crashAtAppend: 6)).run(
                Versioned(second: "second", crash: true),
                id: "v",
                input: 0
            )
        }
        let runner = self.makeRunner(store)
        runner.register(Versioned(second: "renamed", crash: false))
        try await runner.recover()
        let outcome = try await runner.outcome(Versioned.self, id: "v")
        guard case .needsIntervention(let intervention) = outcome else {
            Issue.record("expected needsIntervention, got \(outcome.phase)")
            return
        }
        #expect(intervention.cause.message.contains("nondeterminism"))
        #expect(intervention.cause.message.contains("second"))
    }

    @Test("reuse policies: reject a duplicate, return the existing outcome, or run again after a failure")
    func reusePolicies() async throws {
        let world = ShopWorld()
        let runner = self.makeRunner()
        world.fail("reserve", times: 1)
        let first = try await runner.run(OrderSaga(world: world), id: "o-1", input: OrderDraft(id: "o-1"))
        #expect(first.phase == .compensated)
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
        #expect(world.log.filter { $0 == "validate" }.count == 1)
        // A new run, with new idempotency keys.
        let second = try await runner.run(
            OrderSaga(world: world),
            id: "o-1",
            input: OrderDraft(id: "o-1"),
            reuse: .allowAfterFailure
        )
        #expect(second.output == "receipt-o-1")
        #expect(world.applications["o-1#2/pay"] == 1)
        #expect(try await runner.status(OrderSaga.name, id: "o-1")?.run == 2)
        // A completed saga is returned, not run again, whatever the policy.
        let third = try await runner.run(
            OrderSaga(world: world),
            id: "o-1",
            input: OrderDraft(id: "o-1"),
            reuse: .allowAfterFailure
        )
        #expect(third.output == "receipt-o-1")
        #expect(world.log.filter { $0 == "confirm" }.count == 1)
    }

    @Test("two concurrent runs of one id: one runs, the other waits for its outcome")
    func concurrentRunsOfOneID() async throws {
        let world = ShopWorld()
        let gate = world.gate("pay")
        let runner = self.makeRunner()
        let first = Task { try await runner.run(OrderSaga(world: world), id: "o-1", input: OrderDraft(id: "o-1")) }
        await gate.arrival()
        await #expect(throws: SagaError.self) {
            try await runner.run(
                OrderSaga(world: world),
                id: "o-1",
                input: OrderDraft(id: "o-1"),
                reuse: .rejectDuplicate
            )
        }
        let second = Task { try await runner.run(OrderSaga(world: world), id: "o-1", input: OrderDraft(id: "o-1")) }
        gate.open()
        #expect(try await first.value.output == "receipt-o-1")
        #expect(try await second.value.output == "receipt-o-1")
        #expect(world.log == ["validate", "pay", "reserve", "confirm"])
    }
}
