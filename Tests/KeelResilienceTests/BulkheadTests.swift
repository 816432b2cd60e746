import KeelCore
import KeelTestSupport
import KeelTesting
import Testing

@testable import KeelResilience

@Suite("Bulkhead", .timeLimit(.minutes(2)))
struct BulkheadTests {
    @Test func tenThousandTasksNeverExceedMaxConcurrent() async throws {
        let bulkhead = Bulkhead(
            name: "wide",
            configuration: .init(maxConcurrent: 8, maxQueued: 10_000, maxWait: nil)
        )
        let highWater = BulkheadTestHighWater()
        // A fifth of them under ThreadSanitizer, where every access is instrumented.
        let tasks = TestEnvironment.scaled(10_000, underThreadSanitizerBy: 5)
        try await withThrowingDiscardingTaskGroup { group in
            for _ in 0..<tasks {
                group.addTask {
                    try await bulkhead.run {
                        highWater.enter()
                        await Task.yield()  // suspend inside the permit so that tasks overlap
                        highWater.leave()
                    }
                }
            }
        }
        #expect(highWater.maximum <= 8)
        #expect(highWater.maximum >= 2)
        let metrics = bulkhead.metrics
        #expect(metrics.used == 0 && metrics.queued == 0)
        #expect(metrics.admitted == tasks)
        #expect(metrics.peakUsed <= 8)
    }

    @Test func rejectsAtOnceWhenTheQueueIsFull() async throws {
        let bulkhead = Bulkhead(name: "narrow", configuration: .init(maxConcurrent: 2, maxQueued: 3, maxWait: nil))
        let gate = TestGate()
        let entered = BulkheadTestArrivals()
        try await withThrowingDiscardingTaskGroup { group in
            for _ in 0..<5 {
                group.addTask {
                    try await bulkhead.run {
                        entered.arrive()
                        await gate.wait()
                    }
                }
            }
            await entered.wait(for: 2)
            await bulkhead.waitForQueued(count: 3)
            let error = await #expect(throws: BulkheadError.self) {
                try await bulkhead.run { Issue.record("must not run") }
            }
            #expect(error?.code == .queueFull)
            #expect(error?.bulkhead == "narrow")
            #expect(bulkhead.metrics.rejected == 1)
            gate.open()
        }
        #expect(entered.count == 5)
        #expect(bulkhead.metrics.used == 0)
    }

    @Test func aWaiterTimesOutAfterMaxWaitOnTheInjectedClock() async throws {
        let clock = TestClock()
        let bulkhead = Bulkhead(
            name: "slow",
            configuration: .init(maxConcurrent: 1, maxQueued: 4, maxWait: .seconds(5)),
            clock: clock
        )
        let gate = TestGate()
        let entered = BulkheadTestArrivals()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await bulkhead.run {
                    entered.arrive()
                    await gate.wait()
                }
            }
            await entered.wait(for: 1)
            group.addTask {
                let error = await #expect(throws: BulkheadError.self) {
                    try await bulkhead.run { Issue.record("must not run") }
                }
                #expect(error?.code == .waitTimedOut)
            }
            await clock.waitForSleepers(count: 1)  // the bulkhead's timer sleeps until the deadline
            clock.advance(by: .seconds(4))
            #expect(bulkhead.metrics.queued == 1)
            clock.advance(by: .seconds(1))
            try await group.next()  // the waiter, timed out
            #expect(bulkhead.metrics.timedOut == 1)
            #expect(bulkhead.metrics.queued == 0)
            gate.open()
        }
        #expect(bulkhead.metrics.used == 0)
        // Nothing waits now, so the timer has ended.
        #expect(clock.sleeperCount == 0)
    }

    @Test func aWaiterGrantedBeforeMaxWaitRunsAndRecordsItsWait() async throws {
        let clock = TestClock()
        let recorder = InMemoryRecorder(clock: clock)
        let bulkhead = Bulkhead(
            name: "timed",
            configuration: .init(maxConcurrent: 1, maxQueued: 4, maxWait: .seconds(5)),
            clock: clock,
            telemetry: recorder
        )
        let gate = TestGate()
        let entered = BulkheadTestArrivals()
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask {
                try await bulkhead.run {
                    entered.arrive()
                    await gate.wait()
                }
            }
            await entered.wait(for: 1)
            group.addTask { try await bulkhead.run { entered.arrive() } }
            await clock.waitForSleepers(count: 1)
            clock.advance(by: .seconds(3))
            gate.open()
        }
        #expect(entered.count == 2)
        let metrics = bulkhead.metrics
        #expect(metrics.waited == 1)
        #expect(metrics.totalWaitTime == .seconds(3))
        #expect(metrics.timedOut == 0)
        #expect(recorder.timer("keel.bulkhead.wait", dimensions: [("bulkhead", "timed")]) == [.seconds(3)])
        #expect(recorder.gauge("keel.bulkhead.in_flight", dimensions: [("bulkhead", "timed")]) == 0)
    }

    @Test func cancellingAWaiterRemovesItFromTheQueue() async throws {
        let bulkhead = Bulkhead(name: "cancel", configuration: .init(maxConcurrent: 1, maxQueued: 4, maxWait: nil))
        let gate = TestGate()
        let entered = BulkheadTestArrivals()
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask {
                try await bulkhead.run {
                    entered.arrive()
                    await gate.wait()
                }
            }
            await entered.wait(for: 1)
            let waiter = Task {
                try await bulkhead.run { Issue.record("a cancelled waiter must not run") }
            }
            await bulkhead.waitForQueued(count: 1)
            waiter.cancel()
            await #expect(throws: CancellationError.self) { try await waiter.value }
            #expect(bulkhead.metrics.queued == 0)
            #expect(bulkhead.metrics.cancelled == 1)
            gate.open()
        }
        #expect(bulkhead.metrics.used == 0)
    }

    @Test func cancellationRacingTheGrantNeverLeaksAPermit() async throws {
        let bulkhead = Bulkhead(name: "race", configuration: .init(maxConcurrent: 1, maxQueued: 8, maxWait: nil))
        let ran = BulkheadTestCounter()
        let cancelled = BulkheadTestCounter()
        for _ in 0..<500 {
            let gate = TestGate()
            let entered = BulkheadTestArrivals()
            let holder = Task {
                try await bulkhead.run {
                    entered.arrive()
                    await gate.wait()
                }
            }
            await entered.wait(for: 1)
            let waiter = Task {
                try await bulkhead.run { ran.increment() }
            }
            await bulkhead.waitForQueued(count: 1)
            // Release the holder and cancel the waiter at the same moment, from two tasks.
            async let release: Void = gate.open()
            async let cancel: Void = waiter.cancel()
            _ = await (release, cancel)
            try await holder.value
            do {
                _ = try await waiter.value
            } catch is CancellationError {
                cancelled.increment()
            }
            #expect(bulkhead.metrics.used == 0)
            #expect(bulkhead.metrics.queued == 0)
        }
        #expect(ran.value + cancelled.value == 500)
        // Every permit is back: the full capacity is available at once.
        #expect(try await bulkhead.run { 1 } == 1)
    }

    @Test func aCancelledWaiterLeavesItsPlaceToTheNext() async throws {
        let bulkhead = Bulkhead(name: "pass-on", configuration: .init(maxConcurrent: 1, maxQueued: 8, maxWait: nil))
        let gate = TestGate()
        let entered = BulkheadTestArrivals()
        let holder = Task {
            try await bulkhead.run {
                entered.arrive()
                await gate.wait()
            }
        }
        await entered.wait(for: 1)
        let first = Task { try await bulkhead.run { "first" } }
        await bulkhead.waitForQueued(count: 1)
        let second = Task { try await bulkhead.run { "second" } }
        await bulkhead.waitForQueued(count: 2)
        first.cancel()
        gate.open()
        try await holder.value
        await #expect(throws: CancellationError.self) { try await first.value }
        #expect(try await second.value == "second")
        #expect(bulkhead.metrics.used == 0)
    }

    @Test func randomAcquireCancelTimeoutOperationsReturnEveryPermit() async throws {
        // 100,000 operations (and 100,000 more on the state machine, synchronously) from 50
        // workers on 4 permits: each one runs, or is cancelled before or while it waits, or
        // times out because worker 0 moves the clock past its deadline.
        let clock = TestClock()
        let bulkhead = Bulkhead(
            name: "random",
            configuration: .init(maxConcurrent: 4, maxQueued: 64, maxWait: .milliseconds(50)),
            clock: clock
        )
        let outcomes = BulkheadTestTally()
        // A fifth of that under ThreadSanitizer, where every access is instrumented.
        let operations = TestEnvironment.scaled(100_000, underThreadSanitizerBy: 5)
        let workers = 50
        // Each worker draws its plan from its own seeded source before anything runs, so the plan
        // is the same on every run (only the interleaving varies), and the counts below follow
        // from the plan, not from the bulkhead.
        enum Operation { case cancelledTask, advance(Int64), run }
        let plans: [[Operation]] = (0..<workers).map { worker in
            let random = RandomSource(seed: 2024 &+ UInt64(worker))
            return (0..<(operations / workers)).map { _ in
                switch random.next(upperBound: 4) {
                case 0: .cancelledTask
                case 1 where worker == 0: .advance(Int64(random.next(upperBound: 80)))
                default: .run
                }
            }
        }
        let planned = plans.joined()
        let advances = planned.filter { if case .advance = $0 { true } else { false } }.count
        let cancelledTasks = planned.filter { if case .cancelledTask = $0 { true } else { false } }.count
        await withDiscardingTaskGroup { group in
            for plan in plans {
                group.addTask {
                    for operation in plan {
                        switch operation {
                        case .cancelledTask:
                            let task = Task { try await bulkhead.run { await Task.yield() } }
                            task.cancel()
                            outcomes.count(await task.result)
                        case .advance(let milliseconds):
                            clock.advance(by: .milliseconds(milliseconds))
                            outcomes.countAdvance()
                        case .run:
                            do {
                                try await bulkhead.run { await Task.yield() }
                                outcomes.count(.success(()))
                            } catch {
                                outcomes.count(.failure(error))
                            }
                        }
                    }
                }
            }
        }
        let counts = outcomes.all
        #expect(Set(counts.keys).isSubset(of: ["ran", "cancelled", "wait timed out", "advanced"]))
        #expect(advances > 0 && cancelledTasks > 0)
        #expect(counts["advanced", default: 0] == advances)
        #expect(
            counts["ran", default: 0] + counts["cancelled", default: 0] + counts["wait timed out", default: 0]
                == operations - advances
        )
        // Only a cancelled task can end in a cancellation; every planned operation ran or failed.
        #expect(counts["cancelled", default: 0] <= cancelledTasks)
        #expect(counts["ran", default: 0] > 0)
        let metrics = bulkhead.metrics
        #expect(metrics.used == 0)
        #expect(metrics.inFlight == 0)
        #expect(metrics.queued == 0)
        #expect(metrics.peakUsed <= 4)
        try await withThrowingDiscardingTaskGroup { group in
            let gate = TestGate()
            let entered = BulkheadTestArrivals()
            for _ in 0..<4 {
                group.addTask {
                    try await bulkhead.run {
                        entered.arrive()
                        await gate.wait()
                    }
                }
            }
            await entered.wait(for: 4)  // all four permits are free again
            gate.open()
        }
    }

    @Test func instrumentationCountsRejections() async throws {
        let recorder = InMemoryRecorder()
        let bulkhead = Bulkhead(
            name: "metered",
            configuration: .init(maxConcurrent: 1, maxQueued: 0),
            telemetry: recorder
        )
        let gate = TestGate()
        let entered = BulkheadTestArrivals()
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask {
                try await bulkhead.run {
                    entered.arrive()
                    await gate.wait()
                }
            }
            await entered.wait(for: 1)
            #expect(bulkhead.metrics.utilisation == 1)
            for _ in 0..<3 {
                await #expect(throws: BulkheadError.self) { try await bulkhead.run {} }
            }
            gate.open()
        }
        let rejected = recorder.counter(
            "keel.bulkhead.rejected",
            dimensions: [("bulkhead", "metered"), ("reason", "queue_full")]
        )
        #expect(rejected == 3)
        #expect(bulkhead.metrics.rejected == 3)
        #expect(bulkhead.metrics.utilisation == 0)
    }

    @Test func errorsDescribeThemselves() {
        let error = BulkheadError(code: .queueFull, bulkhead: "db", message: "8 of 8 permits in use")
        #expect(error.description == "bulkhead \"db\": queue full: 8 of 8 permits in use")
        #expect(BulkheadError.Code.waitTimedOut != .queueFull)
    }
}
