import Keel
import KeelCore
import KeelTesting
import Testing

@Suite("EventRecorder", .timeLimit(.minutes(2)))
struct EventRecorderTests {
    typealias Ping = HarnessFixtures.Ping
    typealias Pong = HarnessFixtures.Pong

    /// Runs `body` with a bus, a recorder on `pattern` and a test clock, and shuts the bus down.
    func withRecorder<T>(
        pattern: String = "#",
        _ body: (EventBus, EventRecorder, TestClock) async throws -> T
    ) async throws -> T {
        let bus = EventBus(random: RandomSource(seed: 5))
        let recorder = try EventRecorder(bus: bus, pattern: pattern)
        let clock = TestClock()
        do {
            let result = try await body(bus, recorder, clock)
            await bus.shutdown()
            return result
        } catch {
            await bus.shutdown()
            throw error
        }
    }

    @Test("waitFor returns the first events of a type, counting those already recorded")
    func waitForCountOfType() async throws {
        try await self.withRecorder { bus, recorder, clock in
            for number in 1...3 {
                try await bus.publish(Ping(number: number))
            }
            try await bus.publish(Pong(number: 10))
            let pings = try await recorder.waitFor(count: 2, of: Ping.self, timeout: .seconds(1), clock: clock)
            #expect(pings == [Ping(number: 1), Ping(number: 2)])
            let all = try await recorder.waitFor(count: 3, of: Ping.self, timeout: .seconds(1), clock: clock)
            #expect(all.map(\.number) == [1, 2, 3])
            #expect(clock.now.offset == .zero, "the timeout never ran")
            #expect(clock.sleeperCount == 0, "the timeout's sleep was ended")
        }
    }

    @Test("waitFor resumes when events arrive after it started waiting")
    func waitForLaterEvents() async throws {
        try await self.withRecorder { bus, recorder, clock in
            try await withThrowingTaskGroup(of: [Ping].self) { group in
                group.addTask {
                    try await recorder.waitFor(count: 2, of: Ping.self, timeout: .seconds(1), clock: clock)
                }
                // The waiter's timeout is asleep: it is waiting.
                await clock.waitForSleepers(count: 1)
                try await bus.publish(Ping(number: 1))
                try await bus.publish(Pong(number: 2))
                try await bus.publish(Ping(number: 3))
                let pings = try await group.next()
                #expect(pings?.map(\.number) == [1, 3])
            }
        }
    }

    @Test("waitFor with a predicate counts only matching events")
    func waitForPredicate() async throws {
        try await self.withRecorder { bus, recorder, clock in
            for number in 1...6 {
                try await bus.publish(Ping(number: number))
            }
            let even = try await recorder.waitFor(count: 2, of: Ping.self, timeout: .seconds(1), clock: clock) {
                $0.number.isMultiple(of: 2)
            }
            #expect(even.map(\.number) == [2, 4])

            try await bus.publish(Pong(number: 7))
            let records = try await recorder.waitFor(count: 1, timeout: .seconds(1), clock: clock) { record in
                record.envelope.topic == Pong.topic
            }
            #expect(records.count == 1)
            #expect((records.first?.event as? Pong)?.number == 7)
        }
    }

    @Test("records keep every event in arrival order with its envelope")
    func recordsEverything() async throws {
        try await self.withRecorder { bus, recorder, clock in
            let first = try await bus.publish(Ping(number: 1), source: "pinger")
            let second = try await bus.publish(Pong(number: 2))
            _ = try await recorder.waitFor(count: 2, timeout: .seconds(1), clock: clock) { _ in true }

            let records = recorder.records
            #expect(records.map(\.envelope.id) == [first.id, second.id])
            #expect(records.map(\.envelope.topic) == [Ping.topic, Pong.topic])
            #expect(records.first?.envelope.source == "pinger")
            #expect(recorder.events(of: Ping.self) == [Ping(number: 1)])
            #expect(recorder.events(of: Pong.self) == [Pong(number: 2)])
        }
    }

    @Test("a recorder with a pattern records only matching topics")
    func recordsByPattern() async throws {
        try await self.withRecorder(pattern: "pong.*") { bus, recorder, clock in
            try await bus.publish(Ping(number: 1))
            try await bus.publish(Pong(number: 2))
            let pongs = try await recorder.waitFor(count: 1, of: Pong.self, timeout: .seconds(1), clock: clock)
            #expect(pongs == [Pong(number: 2)])
            #expect(recorder.events(of: Ping.self).isEmpty)
            #expect(recorder.records.count == 1)
        }
    }

    @Test("waitFor times out on the test clock and says how many matched")
    func timesOutOnTheTestClock() async throws {
        try await self.withRecorder { bus, recorder, clock in
            try await bus.publish(Ping(number: 1))
            try await bus.publish(Ping(number: 2))
            _ = try await recorder.waitFor(count: 2, of: Ping.self, timeout: .seconds(1), clock: clock)

            await withThrowingTaskGroup(of: [Ping].self) { group in
                group.addTask {
                    try await recorder.waitFor(count: 5, of: Ping.self, timeout: .seconds(5), clock: clock)
                }
                await clock.waitForSleepers(count: 1)
                clock.advance(by: .milliseconds(4999))
                #expect(clock.sleeperCount == 1, "timed out early")
                clock.advance(by: .milliseconds(1))

                let error = await #expect(throws: EventRecorder.TimeoutError.self) { try await group.next() }
                #expect(error?.expected == 5)
                #expect(error?.matched == 2)
                #expect(error?.recordedTopics == [Ping.topic, Ping.topic])
                #expect(error?.description.contains("expected 5 matching events, got 2") == true)
                #expect(error?.realTimeLimit == nil, "the test clock's timeout, not the safety net")
            }
        }
    }

    @Test("on a test clock nobody advances, waitFor gives up after its real-time limit and says so")
    func realTimeSafetyNet() async throws {
        try await self.withRecorder { bus, recorder, clock in
            try await bus.publish(Ping(number: 1))
            _ = try await recorder.waitFor(count: 1, of: Ping.self, timeout: .seconds(1), clock: clock)
            let error = await #expect(throws: EventRecorder.TimeoutError.self) {
                try await recorder.waitFor(
                    count: 2,
                    of: Ping.self,
                    timeout: .seconds(5),
                    clock: clock,
                    realTimeLimit: .milliseconds(20)
                )
            }
            #expect(error?.realTimeLimit == .milliseconds(20))
            #expect(error?.matched == 1)
            #expect(error?.description.contains("of real time") == true)
            #expect(clock.now.offset == .zero, "the test clock did not move")
        }
    }

    @Test("a cancelled waitFor throws CancellationError, not a timeout")
    func cancelledWait() async throws {
        try await self.withRecorder { _, recorder, clock in
            await withThrowingTaskGroup(of: [Ping].self) { group in
                group.addTask {
                    try await recorder.waitFor(count: 1, of: Ping.self, timeout: .seconds(5), clock: clock)
                }
                await clock.waitForSleepers(count: 1)
                group.cancelAll()
                await #expect(throws: CancellationError.self) { try await group.next() }
            }
            #expect(clock.now.offset == .zero)
            #expect(clock.sleeperCount == 0)
        }
    }

    @Test("cancel stops recording")
    func cancelStopsRecording() async throws {
        try await self.withRecorder { bus, recorder, clock in
            try await bus.publish(Ping(number: 1))
            _ = try await recorder.waitFor(count: 1, of: Ping.self, timeout: .seconds(1), clock: clock)
            await recorder.cancel()
            #expect(try await bus.publish(Ping(number: 2)).subscribers == 0)
            #expect(recorder.events(of: Ping.self) == [Ping(number: 1)])
        }
    }

    @Test("a recorder cannot be made on a shut-down bus")
    func refusedAfterShutdown() async throws {
        let bus = EventBus(random: RandomSource(seed: 5))
        await bus.shutdown()
        let error = #expect(throws: EventBusError.self) { try EventRecorder(bus: bus) }
        #expect(error?.code == .shuttingDown)
    }
}
