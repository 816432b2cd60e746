import KeelCore
import KeelEventSourcing
import KeelSagas
import KeelTesting
import Testing

@Suite("Waiting for a signal, durably", .timeLimit(.minutes(2)))
struct SagaSignalTests {
    static let start: Int64 = 1_700_000_000_000_000_000

    /// A runner over `store`, or over a new `InMemorySagaJournal` when `inMemory` is set.
    func makeRunner(_ store: any EventStore, clock: TestClock, inMemory: Bool = false) -> SagaRunner {
        guard inMemory else {
            return SagaRunner(
                store: store,
                configuration: .init(compensationBackoff: .immediate),
                clock: clock,
                wallClock: clock.wallClock(startingAt: Self.start),
                random: RandomSource(seed: 9)
            )
        }
        return SagaRunner(
            journal: InMemorySagaJournal(),
            configuration: .init(compensationBackoff: .immediate),
            clock: clock,
            wallClock: clock.wallClock(startingAt: Self.start),
            random: RandomSource(seed: 9)
        )
    }

    struct Transfer: Codable, Sendable, Hashable {
        var reference: String
    }

    struct PayByTransfer: Saga {
        static let name = "test.transfer"
        let trail: Trail
        let gate: Gate?

        func run(_ input: Int, saga: SagaContext) async throws -> String {
            try await saga.step("reserve") { _ in
                try await self.gate?.pass()
                self.trail.add("reserve")
            } compensate: { _ in
                self.trail.add("release")
            }
            guard let transfer = try await saga.waitForSignal("paid", as: Transfer.self, timeout: .seconds(60)) else {
                throw Boom(what: "no transfer within a minute")
            }
            self.trail.add("paid \(transfer.reference)")
            return transfer.reference
        }
    }

    @Test(
        "a signal sent while the saga waits wakes it with the payload (event store, in-memory journal)",
        arguments: [false, true]
    )
    func signalWhileWaiting(inMemory: Bool) async throws {
        let clock = TestClock()
        let trail = Trail()
        let runner = self.makeRunner(InMemoryEventStore(), clock: clock, inMemory: inMemory)
        let task = Task { try await runner.run(PayByTransfer(trail: trail, gate: nil), id: "t", input: 0) }
        await clock.waitForSleepers(count: 1)
        try await runner.signal(PayByTransfer.name, id: "t", name: "paid", payload: Transfer(reference: "TR-1"))
        // A second signal of the name (a redelivered event) changes nothing.
        try await runner.signal(PayByTransfer.name, id: "t", name: "paid", payload: Transfer(reference: "TR-2"))
        #expect(try await task.value.output == "TR-1")
        #expect(trail.all == ["reserve", "paid TR-1"])
    }

    @Test(
        "a wait that times out returns nil: here the saga then compensates (event store, in-memory journal)",
        arguments: [false, true]
    )
    func timeout(inMemory: Bool) async throws {
        let clock = TestClock()
        let trail = Trail()
        let runner = self.makeRunner(InMemoryEventStore(), clock: clock, inMemory: inMemory)
        let task = Task { try await runner.run(PayByTransfer(trail: trail, gate: nil), id: "t", input: 0) }
        await clock.waitForSleepers(count: 1)
        clock.advance(by: .seconds(60))
        #expect(try await task.value.phase == .compensated)
        #expect(trail.all == ["reserve", "release"])
    }

    @Test(
        "a signal sent before the saga reaches the wait is found in the journal (event store, in-memory journal)",
        arguments: [false, true]
    )
    func signalBeforeTheWait(inMemory: Bool) async throws {
        let clock = TestClock()
        let trail = Trail()
        let gate = Gate()
        let runner = self.makeRunner(InMemoryEventStore(), clock: clock, inMemory: inMemory)
        let task = Task { try await runner.run(PayByTransfer(trail: trail, gate: gate), id: "t", input: 0) }
        await gate.arrival()
        try await runner.signal(PayByTransfer.name, id: "t", name: "paid", payload: Transfer(reference: "early"))
        gate.open()
        #expect(try await task.value.output == "early")
    }

    @Test("a signal sent while no runner runs is found by the resumed saga, within what is left of its timeout")
    func signalAcrossARestart() async throws {
        let clock = TestClock()
        let store = InMemoryEventStore()
        let trail = Trail()
        let first = self.makeRunner(store, clock: clock)
        let task = Task { try await first.run(PayByTransfer(trail: trail, gate: nil), id: "t", input: 0) }
        await clock.waitForSleepers(count: 1)
        clock.advance(by: .seconds(30))
        await first.shutdown()
        await #expect(throws: SagaError.self) { try await task.value }

        let second = self.makeRunner(store, clock: clock)
        second.register(PayByTransfer(trail: trail, gate: nil))
        try await second.signal(PayByTransfer.name, id: "t", name: "paid", payload: Transfer(reference: "offline"))
        try await second.recover()
        #expect(try await second.outcome(PayByTransfer.self, id: "t").output == "offline")
        #expect(trail.all == ["reserve", "paid offline"])
        await #expect(throws: SagaError.self) {
            try await second.signal("test.nobody", id: "x", name: "paid", payload: Transfer(reference: ""))
        }
    }
}
