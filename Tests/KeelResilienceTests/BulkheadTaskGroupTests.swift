import Testing

@testable import KeelResilience

@Suite("Bounded task group", .timeLimit(.minutes(2)))
struct BulkheadTaskGroupTests {
    struct Boom: Error {}

    @Test func childrenNeverExceedTheLimitAndAllAreAwaited() async throws {
        let highWater = BulkheadTestHighWater()
        let finished = BulkheadTestCounter()
        try await withBoundedTaskGroup(maxConcurrentChildren: 3) { group in
            for _ in 0..<1_000 {
                try await group.addTask {
                    highWater.enter()
                    await Task.yield()
                    highWater.leave()
                    finished.increment()
                }
            }
        }
        #expect(finished.value == 1_000)
        #expect(highWater.maximum <= 3)
    }

    @Test func addTaskSuspendsUntilAPermitIsFree() async throws {
        let bulkhead = Bulkhead(name: "group", configuration: .init(maxConcurrent: 2, maxQueued: 4, maxWait: nil))
        let gate = TestGate()
        let started = BulkheadTestArrivals()
        try await bulkhead.withTaskGroup { group in
            for _ in 0..<2 {
                try await group.addTask {
                    started.arrive()
                    await gate.wait()
                }
            }
            await started.wait(for: 2)
            #expect(bulkhead.metrics.used == 2)
            // The third add must wait; open the gate from another task once it is queued.
            async let opener: Void = {
                await bulkhead.waitForQueued(count: 1)
                gate.open()
            }()
            try await group.addTask { started.arrive() }
            await opener
        }
        #expect(started.count == 3)
        #expect(bulkhead.metrics.used == 0)
        #expect(bulkhead.metrics.waited == 1)
    }

    @Test func aFailingChildCancelsItsSiblingsAndIsRethrown() async throws {
        let bulkhead = Bulkhead(name: "failing", configuration: .init(maxConcurrent: 4, maxQueued: 4, maxWait: nil))
        let started = BulkheadTestArrivals()
        let sawCancellation = BulkheadTestCounter()
        let refused = BulkheadTestCounter()
        await #expect(throws: Boom.self) {
            try await bulkhead.withTaskGroup { group in
                for _ in 0..<3 {
                    try await group.addTask {
                        started.arrive()
                        // Waits until the group is cancelled; never sleeps.
                        await TestGate().waitUnlessCancelled()
                        if Task.isCancelled { sawCancellation.increment() }
                    }
                }
                await started.wait(for: 3)
                try await group.addTask { throw Boom() }
                // Children added once the failure has cancelled the group are refused.
                for _ in 0..<10 where try await !group.addTask({}) {
                    refused.increment()
                }
                #expect(group.isCancelled)
            }
        }
        #expect(sawCancellation.value == 3)
        #expect(refused.value >= 1)
        #expect(bulkhead.metrics.used == 0)
        #expect(bulkhead.metrics.queued == 0)
    }
}

extension TestGate {
    /// Waits until the gate opens or the task is cancelled.
    func waitUnlessCancelled() async {
        await withTaskCancellationHandler {
            await self.wait()
        } onCancel: {
            self.open()
        }
    }
}
