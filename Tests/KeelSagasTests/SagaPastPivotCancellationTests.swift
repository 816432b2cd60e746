import KeelCore
import KeelEventSourcing
import KeelSagas
import KeelTesting
import Testing

/// What cancelling a saga's task does once the saga is past its pivot, where it can only go
/// forward: the case the randomized run leaves out of its plans (a cancellation with a timer after
/// the pivot).
@Suite("Cancellation past the pivot", .timeLimit(.minutes(2)))
struct SagaPastPivotCancellationTests {
    struct CoolOff: Saga {
        static let name = "random.cool-off"

        func run(_ input: Int, saga: SagaContext) async throws -> Int {
            _ = try await saga.pivot("confirm") { _ in 1 }
            try await saga.sleep("cool-off", for: .seconds(5))
            return try await saga.retriable("ship") { _ in input }
        }
    }

    @Test("a cancellation during a durable timer past the pivot lets the saga go on forward")
    func timerPastPivot() async throws {
        let clock = TestClock()
        let runner = SagaRunner(
            store: InMemoryEventStore(),
            clock: clock,
            wallClock: WallClock(nanosecondsSinceEpoch: { RandomSagaRun.nanoseconds(clock.now.offset) }),
            random: RandomSource(seed: 3)
        )
        // Unstructured, as a caller's request task: the test owns it, cancels it and awaits it.
        let task = Task { try await runner.run(CoolOff(), id: "c-1", input: 7) }
        await clock.waitForSleepers(count: 1)  // past the pivot, asleep in the timer
        task.cancel()
        // Past the pivot the timer is not cut short: it still waits its 5 s, then the saga goes on.
        #expect(clock.sleeperCount == 1)
        clock.advance(by: .seconds(5))
        let outcome = try await task.value
        #expect(outcome.output == 7)
    }
}
