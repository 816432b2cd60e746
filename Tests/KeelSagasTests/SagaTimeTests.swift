import KeelCore
import KeelEventSourcing
import KeelResilience
import KeelSagas
import KeelTesting
import Testing

@Suite("Timeouts, retries, deadlines and durable timers, on a test clock", .timeLimit(.minutes(2)))
struct SagaTimeTests {
    static let start: Int64 = 1_700_000_000_000_000_000

    func makeRunner(_ store: any EventStore, clock: TestClock, telemetry: any Telemetry = NoOpTelemetry()) -> SagaRunner
    {
        SagaRunner(
            store: store,
            configuration: .init(compensationBackoff: .immediate),
            clock: clock,
            wallClock: clock.wallClock(startingAt: Self.start),
            random: RandomSource(seed: 5),
            telemetry: telemetry
        )
    }

    struct Slow: Saga {
        static let name = "test.slow"
        let trail: Trail
        let clock: TestClock
        let options: SagaStepOptions
        let failures: Countdown

        func run(_ seconds: Int, saga: SagaContext) async throws -> String {
            try await saga.step("hold") { _ in
                self.trail.add("hold")
            } compensate: { _ in
                self.trail.add("unhold")
            }
            return try await saga.step("slow", self.options) { step in
                self.trail.add("slow attempt \(step.attempt)")
                if self.failures.take() { throw Boom(what: "flaky") }
                try await self.clock.sleep(for: .seconds(seconds))
                return "done"
            }
        }
    }

    @Test("an attempt past its timeout is cancelled and the step fails; the saga compensates")
    func stepTimeout() async throws {
        let clock = TestClock()
        let trail = Trail()
        let runner = self.makeRunner(InMemoryEventStore(), clock: clock)
        let saga = Slow(
            trail: trail,
            clock: clock,
            options: SagaStepOptions(timeout: .seconds(1)),
            failures: Countdown(0)
        )
        let task = Task { try await runner.run(saga, id: "t", input: 10) }
        await clock.waitForSleepers(count: 2)  // the attempt and its timeout
        clock.advance(by: .seconds(1))
        let outcome = try await task.value
        guard case .compensated(let cause) = outcome else {
            Issue.record("expected compensated, got \(outcome.phase)")
            return
        }
        #expect(cause.step == "slow")
        #expect(cause.message.contains("stepTimedOut"))
        #expect(trail.all == ["hold", "slow attempt 1", "unhold"])
    }

    @Test("a step's retry strategy attempts it again, each attempt journaled")
    func stepRetry() async throws {
        let clock = TestClock()
        let trail = Trail()
        let store = InMemoryEventStore()
        let runner = self.makeRunner(store, clock: clock)
        let retry = Retry(configuration: .init(maxAttempts: 3, backoff: .constant(.seconds(2))), clock: clock)
        let saga = Slow(trail: trail, clock: clock, options: SagaStepOptions(retry: retry), failures: Countdown(2))
        let task = Task { try await runner.run(saga, id: "t", input: 0) }
        for _ in 0..<2 {
            await clock.waitForSleepers(count: 1)
            clock.advance(by: .seconds(2))
        }
        #expect(try await task.value.output == "done")
        #expect(trail.all == ["hold", "slow attempt 1", "slow attempt 2", "slow attempt 3"])
        #expect(try await runner.timeline(Slow.name, id: "t").contains("step slow: attempt 3"))
    }

    @Test("a saga past its deadline is cancelled and compensates, before its pivot")
    func deadline() async throws {
        let clock = TestClock()
        let trail = Trail()
        let runner = self.makeRunner(InMemoryEventStore(), clock: clock)
        let saga = Slow(trail: trail, clock: clock, options: SagaStepOptions(), failures: Countdown(0))
        let task = Task { try await runner.run(saga, id: "t", input: 60, deadline: .seconds(5)) }
        await clock.waitForSleepers(count: 2)  // the slow step and the deadline
        clock.advance(by: .seconds(5))
        let outcome = try await task.value
        guard case .compensated(let cause) = outcome else {
            Issue.record("expected compensated, got \(outcome.phase)")
            return
        }
        #expect(cause.errorType == "SagaDeadlineExceeded")
        #expect(trail.all == ["hold", "slow attempt 1", "unhold"])
    }

    struct CoolOff: Saga {
        static let name = "test.cool-off"
        let trail: Trail
        func run(_ input: Int, saga: SagaContext) async throws -> String {
            try await saga.step("order") { _ in self.trail.add("order") }
            try await saga.sleep("cool-off", for: .seconds(10))
            try await saga.step("charge") { _ in self.trail.add("charge") }
            return "charged"
        }
    }

    @Test("a durable timer survives a shutdown: the resumed saga waits only what is left")
    func durableTimer() async throws {
        let clock = TestClock()
        let store = InMemoryEventStore()
        let trail = Trail()
        let first = self.makeRunner(store, clock: clock)
        let task = Task { try await first.run(CoolOff(trail: trail), id: "c", input: 0) }
        await clock.waitForSleepers(count: 1)
        clock.advance(by: .seconds(4))
        await first.shutdown()
        do {
            _ = try await task.value
            Issue.record("the saga finished during the shutdown")
        } catch let error as SagaError {
            #expect(error.code == .suspended)
        }
        #expect(try await first.status(CoolOff.name, id: "c")?.phase == .running)

        let second = self.makeRunner(store, clock: clock)
        second.register(CoolOff(trail: trail))
        #expect(try await second.recover().map(\.id) == ["c"])
        await clock.waitForSleepers(count: 1)
        clock.advance(by: .seconds(5))
        #expect(trail.all == ["order"])
        clock.advance(by: .seconds(1))
        #expect(try await second.outcome(CoolOff.self, id: "c").output == "charged")
        #expect(trail.all == ["order", "charge"])
        #expect(try await second.timeline(CoolOff.name, id: "c").contains("timer cool-off: fired"))
    }

    @Test("start() runs the saga in the runner's task; spans and metrics cover the run, its steps and compensations")
    func startAndTelemetry() async throws {
        let clock = TestClock()
        let recorder = InMemoryRecorder()
        let world = ShopWorld()
        world.fail("confirm")
        let runner = self.makeRunner(InMemoryEventStore(), clock: clock, telemetry: recorder)
        try await runner.start(OrderSaga(world: world), id: "o-1", input: OrderDraft(id: "o-1"))
        let outcome = try await runner.outcome(OrderSaga.self, id: "o-1")
        #expect(outcome.phase == .compensated)
        let names = recorder.spans.map(\.name)
        #expect(names.contains("saga order.place"))
        #expect(names.contains("saga.step pay"))
        #expect(names.contains("saga.compensate pay"))
        // One trace for the whole saga.
        let traces = Set(recorder.spans.map(\.context.traceID))
        #expect(traces.count == 1)
        let dimensions = [("saga", "order.place")]
        #expect(recorder.counter("keel.saga.started", dimensions: dimensions) == 1)
        #expect(recorder.counter("keel.saga.compensated", dimensions: dimensions) == 1)
        #expect(recorder.gauge("keel.saga.in_flight", dimensions: dimensions) == 0)
        #expect(recorder.timer("keel.saga.step.duration", dimensions: dimensions).count == 4)
        await runner.shutdown()
    }
}
