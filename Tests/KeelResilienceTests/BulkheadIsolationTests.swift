import KeelCore
import KeelTesting
import Synchronization
import Testing

@testable import KeelResilience

@Suite("Bulkhead partitions", .timeLimit(.minutes(2)))
struct BulkheadPartitionsTests {
    @Test func backgroundWorkNeverTakesCriticalPermits() async throws {
        let partitions = BulkheadPartitions(
            name: "orders",
            partitions: [
                .critical: .init(maxConcurrent: 10, maxQueued: 0),
                .normal: .init(maxConcurrent: 5, maxQueued: 0),
                .background: .init(maxConcurrent: 2, maxQueued: 1, maxWait: nil),
            ]
        )
        #expect(partitions.partitions == [.background, .critical, .normal])
        let gate = TestGate()
        let entered = BulkheadTestArrivals()
        try await withThrowingDiscardingTaskGroup { group in
            // Saturate background: two running, one queued.
            for _ in 0..<3 {
                group.addTask {
                    try await partitions.run(in: .background) {
                        entered.arrive()
                        await gate.wait()
                    }
                }
            }
            await entered.wait(for: 2)
            await partitions[.background]!.waitForQueued(count: 1)
            let refused = await #expect(throws: BulkheadError.self) {
                try await partitions.run(in: .background) {}
            }
            #expect(refused?.bulkhead == "orders.background")
            // Critical still has all ten permits.
            let criticalEntered = BulkheadTestArrivals()
            let criticalGate = TestGate()
            for _ in 0..<10 {
                group.addTask {
                    try await partitions.run(in: .critical) {
                        criticalEntered.arrive()
                        await criticalGate.wait()
                    }
                }
            }
            await criticalEntered.wait(for: 10)
            #expect(partitions.metrics[.critical]?.used == 10)
            #expect(partitions.metrics[.background]?.used == 2)
            let normal = try await partitions.run(in: .normal) { "normal" }
            #expect(normal == "normal")
            criticalGate.open()
            gate.open()
        }
        let unknown = await #expect(throws: BulkheadError.self) {
            try await partitions.run(in: BulkheadPartition("analytics")) {}
        }
        #expect(unknown?.code == .unknownPartition)
    }
}

@Suite("Keyed bulkhead", .timeLimit(.minutes(2)))
struct BulkheadKeyedTests {
    @Test func eachKeyHasItsOwnLimit() async throws {
        let keyed = KeyedBulkhead<String>(
            name: "tenants",
            configuration: .init(perKey: .init(maxConcurrent: 2, maxQueued: 0), maxKeys: 10)
        )
        let gate = TestGate()
        let entered = BulkheadTestArrivals()
        try await withThrowingDiscardingTaskGroup { group in
            for _ in 0..<2 {
                group.addTask {
                    try await keyed.run(key: "noisy") {
                        entered.arrive()
                        await gate.wait()
                    }
                }
            }
            await entered.wait(for: 2)
            let error = await #expect(throws: BulkheadError.self) { try await keyed.run(key: "noisy") {} }
            #expect(error?.code == .queueFull)
            let quiet = try await keyed.run(key: "quiet") { 42 }
            #expect(quiet == 42)
            #expect(keyed.metrics(for: "noisy")?.used == 2)
            gate.open()
        }
        #expect(keyed.keyCount == 2)
    }

    @Test func theLeastRecentlyUsedIdleKeyMakesRoom() async throws {
        let keyed = KeyedBulkhead<Int>(
            name: "lru",
            configuration: .init(perKey: .init(maxConcurrent: 1), maxKeys: 3, idleTimeout: nil)
        )
        for key in [1, 2, 3] { try await keyed.run(key: key) {} }
        try await keyed.run(key: 1) {}  // 2 is now the least recently used
        try await keyed.run(key: 4) {}
        #expect(keyed.keyCount == 3)
        #expect(keyed.metrics(for: 2) == nil)
        #expect(keyed.metrics(for: 1) != nil)
        #expect(keyed.evictedCount == 1)
    }

    @Test func busyKeysAreNeverEvicted() async throws {
        let keyed = KeyedBulkhead<Int>(
            name: "busy",
            configuration: .init(perKey: .init(maxConcurrent: 1), maxKeys: 2, idleTimeout: nil)
        )
        let gate = TestGate()
        let entered = BulkheadTestArrivals()
        try await withThrowingDiscardingTaskGroup { group in
            for key in [1, 2] {
                group.addTask {
                    try await keyed.run(key: key) {
                        entered.arrive()
                        await gate.wait()
                    }
                }
            }
            await entered.wait(for: 2)
            let error = await #expect(throws: BulkheadError.self) { try await keyed.run(key: 3) {} }
            #expect(error?.code == .tooManyKeys)
            gate.open()
        }
        try await keyed.run(key: 3) {}
        #expect(keyed.keyCount == 2)
    }

    @Test func idleKeysAreEvictedAfterTheIdleTimeout() async throws {
        let clock = TestClock()
        let keyed = KeyedBulkhead<String>(
            name: "idle",
            configuration: .init(maxKeys: 100, idleTimeout: .seconds(60)),
            clock: clock
        )
        try await keyed.run(key: "a") {}
        clock.advance(by: .seconds(30))
        try await keyed.run(key: "b") {}
        clock.advance(by: .seconds(30))
        #expect(keyed.evictIdle() == 1)
        #expect(keyed.metrics(for: "a") == nil)
        #expect(keyed.metrics(for: "b") != nil)
        clock.advance(by: .seconds(30))
        #expect(keyed.evictIdle() == 1)
        #expect(keyed.keyCount == 0)
    }
}

@Suite("Memory bulkhead", .timeLimit(.minutes(2)))
struct BulkheadMemoryTests {
    @Test func leasesCountAgainstTheirCategoryAndReturnAtScopeEnd() async throws {
        let memory = MemoryBulkhead<String>(
            name: "payloads",
            configuration: .init(budgets: ["uploads": 1_000, "exports": 100])
        )
        try await memory.withLease(bytes: 600, category: "uploads") {
            #expect(memory.metrics(for: "uploads")?.used == 600)
            let over = await #expect(throws: BulkheadError.self) {
                try await memory.withLease(bytes: 500, category: "uploads") {}
            }
            #expect(over?.code == .overBudget)
            #expect(over?.bulkhead == "payloads.uploads")
            // Another category is untouched.
            try await memory.withLease(bytes: 100, category: "exports") {}
            try await memory.withLease(bytes: 400, category: "uploads") {}
        }
        #expect(memory.metrics(for: "uploads")?.used == 0)
        let huge = await #expect(throws: BulkheadError.self) {
            try await memory.withLease(bytes: 1_001, category: "uploads") {}
        }
        #expect(huge?.code == .exceedsCapacity)
        let unknown = await #expect(throws: BulkheadError.self) {
            try await memory.withLease(bytes: 1, category: "other") {}
        }
        #expect(unknown?.code == .unknownPartition)
        #expect(try await memory.withLease(bytes: 0, category: "uploads") { "free" } == "free")
    }

    @Test func aLeaseThatThrowsStillReturnsItsBytes() async throws {
        struct Failure: Error {}
        let memory = MemoryBulkhead<String>(name: "m", configuration: .init(budgets: ["x": 10]))
        await #expect(throws: Failure.self) {
            try await memory.withLease(bytes: 10, category: "x") { throw Failure() }
        }
        #expect(memory.metrics(for: "x")?.used == 0)
    }

    @Test func aLeaseWaitsForBytesUpToMaxWait() async throws {
        let clock = TestClock()
        let memory = MemoryBulkhead<String>(
            name: "waiting",
            configuration: .init(budgets: ["x": 100], maxQueued: 4, maxWait: .seconds(2)),
            clock: clock
        )
        let gate = TestGate()
        let entered = BulkheadTestArrivals()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await memory.withLease(bytes: 80, category: "x") {
                    entered.arrive()
                    await gate.wait()
                }
            }
            await entered.wait(for: 1)
            // This one times out...
            group.addTask {
                let error = await #expect(throws: BulkheadError.self) {
                    try await memory.withLease(bytes: 50, category: "x") {}
                }
                #expect(error?.code == .waitTimedOut)
            }
            await clock.waitForSleepers(count: 1)
            clock.advance(by: .seconds(2))
            try await group.next()
            // ...this one is granted when the first lease ends.
            group.addTask {
                try await memory.withLease(bytes: 50, category: "x") { entered.arrive() }
            }
            await clock.waitForSleepers(count: 1)
            gate.open()
            try await group.waitForAll()
        }
        #expect(entered.count == 2)
        #expect(memory.metrics(for: "x")?.used == 0)
        #expect(memory.metrics(for: "x")?.timedOut == 1)
    }
}

@Suite("Resource pool", .timeLimit(.minutes(2)))
struct BulkheadResourcePoolTests {
    final class Connection: Sendable {
        let id: Int
        let partition: BulkheadPartition
        let isBroken = Atomic<Bool>(false)

        init(id: Int, partition: BulkheadPartition) {
            self.id = id
            self.partition = partition
        }
    }

    final class Factory: Sendable {
        let made = Atomic<Int>(0)
        let discarded = Atomic<Int>(0)

        func make(_ partition: BulkheadPartition) -> Connection {
            Connection(id: self.made.add(1, ordering: .relaxed).newValue, partition: partition)
        }
    }

    func makePool(_ factory: Factory, clock: TestClock = TestClock()) -> ResourcePool<Connection> {
        ResourcePool<Connection>(
            name: "db",
            configuration: .init(limits: [.critical: 3, .background: 1], maxQueued: 2, maxWait: .seconds(1)),
            clock: clock,
            make: { factory.make($0) },
            validate: { !$0.isBroken.load(ordering: .relaxed) },
            discard: { _ in factory.discarded.add(1, ordering: .relaxed) }
        )
    }

    @Test("a test waits for a partition's queued callers; an unknown partition is a typed error")
    func waitForQueuedCallers() async throws {
        let factory = Factory()
        let pool = self.makePool(factory)
        let gate = TestGate()
        let entered = BulkheadTestArrivals()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await pool.withResource(in: .background) { _ in
                    entered.arrive()
                    await gate.wait()
                }
            }
            await entered.wait(for: 1)
            group.addTask { try await pool.withResource(in: .background) { _ in } }
            try await pool.waitForQueued(count: 1, in: .background)
            try await pool.waitForQueued(count: 0, in: .critical)
            gate.open()
            try await group.waitForAll()
        }
        let error = await #expect(throws: BulkheadError.self) {
            try await pool.waitForQueued(count: 1, in: BulkheadPartition("nowhere"))
        }
        #expect(error?.code == .unknownPartition)
    }

    @Test func analyticsCannotExhaustTheCriticalConnections() async throws {
        let clock = TestClock()
        let factory = Factory()
        let pool = self.makePool(factory, clock: clock)
        let gate = TestGate()
        let entered = BulkheadTestArrivals()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await pool.withResource(in: .background) { _ in
                    entered.arrive()
                    await gate.wait()
                }
            }
            await entered.wait(for: 1)
            group.addTask {
                let error = await #expect(throws: BulkheadError.self) {
                    try await pool.withResource(in: .background) { _ in }
                }
                #expect(error?.code == .waitTimedOut)
            }
            await clock.waitForSleepers(count: 1)
            // Meanwhile critical gets all three of its connections at once.
            try await withThrowingDiscardingTaskGroup { critical in
                let criticalEntered = BulkheadTestArrivals()
                let criticalGate = TestGate()
                for _ in 0..<3 {
                    critical.addTask {
                        try await pool.withResource(in: .critical) { connection in
                            #expect(connection.partition == .critical)
                            criticalEntered.arrive()
                            await criticalGate.wait()
                        }
                    }
                }
                await criticalEntered.wait(for: 3)
                criticalGate.open()
            }
            clock.advance(by: .seconds(1))
            try await group.next()
            gate.open()
            try await group.waitForAll()
        }
        #expect(pool.idleCount(in: .critical) == 3)
        #expect(pool.idleCount(in: .background) == 1)
        #expect(factory.made.load(ordering: .relaxed) == 4)
    }

    @Test func returnedResourcesAreReusedAndInvalidOnesDiscarded() async throws {
        let factory = Factory()
        let pool = self.makePool(factory)
        let first = try await pool.withResource(in: .critical) { $0.id }
        let second = try await pool.withResource(in: .critical) { $0.id }
        #expect(first == second)
        try await pool.withResource(in: .critical) { $0.isBroken.store(true, ordering: .relaxed) }
        #expect(factory.discarded.load(ordering: .relaxed) == 1)
        #expect(pool.idleCount(in: .critical) == 0)
        let third = try await pool.withResource(in: .critical) { $0.id }
        #expect(third != first)
        await pool.drain()
        #expect(factory.discarded.load(ordering: .relaxed) == 2)
        #expect(pool.metrics(for: .critical)?.used == 0)
    }

    @Test func aFailingFactoryFreesItsSlot() async throws {
        struct Refused: Error {}
        let pool = ResourcePool<Int>(
            name: "flaky",
            configuration: .init(limits: [.normal: 1]),
            make: { _ in throw Refused() }
        )
        for _ in 0..<3 {
            await #expect(throws: Refused.self) { try await pool.withResource(in: .normal) { $0 } }
        }
        #expect(pool.metrics(for: .normal)?.used == 0)
        let unknown = await #expect(throws: BulkheadError.self) { try await pool.withResource(in: .critical) { $0 } }
        #expect(unknown?.code == .unknownPartition)
    }
}
