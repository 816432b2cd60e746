import Dispatch
import KeelCore
import KeelTestSupport
import KeelTesting
import Synchronization
import Testing

@testable import KeelResilience

/// The uncontended path of `BulkheadStorage`: units and holders in one atomic word while nobody
/// is queued, handed to the locked state machine (the word *frozen*) when someone must queue,
/// and back when the queue empties. These tests look for what a lock-free path gets wrong: more
/// holders than the capacity, a newcomer overtaking a queued waiter, totals that miss an
/// admission, and a release racing with a caller that queues (a lost wakeup hangs the test).
@Suite("Bulkhead lock-free path", .timeLimit(.minutes(2)))
struct BulkheadLockFreeTests {
    private func makeStorage(
        capacity: Int,
        maxQueued: Int = 16,
        maxWait: Duration? = nil,
        clock: any Clock<Duration> = ContinuousClock(),
        instruments: BulkheadInstruments = .none
    ) -> BulkheadStorage {
        BulkheadStorage(
            name: "word",
            capacity: capacity,
            maxQueued: maxQueued,
            maxWait: maxWait,
            clock: clock,
            executor: nil,
            instruments: instruments
        )
    }

    // MARK: Deterministic hand-overs

    @Test func theMachineAdoptsTheHoldersCountedInTheWord() {
        var machine = BulkheadStateMachine<String>(capacity: 4, maxQueued: 4, maxWait: nil)
        machine.adopt(used: 3, inFlight: 2)
        #expect(machine.used == 3 && machine.inFlight == 2 && machine.peakUsed == 3 && machine.admitted == 0)
        #expect(machine.acquire(weight: 1, now: { .zero }) == .acquired)
        guard case .enqueued(let id, _, _) = machine.acquire(weight: 2, now: { .zero }) else {
            Issue.record("expected to queue")
            return
        }
        #expect(machine.park(id: id, waiter: "waiter").isParked)
        // A holder adopted from the word releases through the machine, which grants the waiter.
        guard case .one(let waiter) = machine.release(weight: 2) else {
            Issue.record("expected one grant")
            return
        }
        #expect(waiter == "waiter")
        #expect(machine.used == 4 && machine.inFlight == 3 && machine.queued == 0)
        #expect(machine.admitted == 2 && machine.peakUsed == 4)
    }

    @Test func uncontendedAcquisitionsStayInTheWordAndCountExactly() throws {
        let storage = self.makeStorage(capacity: 8)
        for _ in 0..<8 {
            #expect(try storage.acquireOrEnqueue(weight: 1) == nil)
        }
        #expect(!storage.isWordFrozen)
        var metrics = storage.metrics()
        #expect(metrics.used == 8 && metrics.inFlight == 8 && metrics.queued == 0)
        #expect(metrics.admitted == 8 && metrics.peakUsed == 8)
        for _ in 0..<8 { storage.release(weight: 1) }
        #expect(!storage.isWordFrozen)
        metrics = storage.metrics()
        #expect(metrics.used == 0 && metrics.inFlight == 0)
        #expect(metrics.admitted == 8 && metrics.peakUsed == 8)
    }

    @Test func aNewcomerThatFitsDoesNotOvertakeAQueuedWaiter() async throws {
        // 10 units: two holders of 3, a waiter for 8 at the head. 4 units are free, enough for a
        // newcomer of 1, which must still queue behind the head, and stay queued while the head
        // does not fit.
        let storage = self.makeStorage(capacity: 10)
        #expect(try storage.acquireOrEnqueue(weight: 3) == nil)
        #expect(try storage.acquireOrEnqueue(weight: 3) == nil)
        let big = try #require(try storage.acquireOrEnqueue(weight: 8))
        #expect(storage.isWordFrozen)
        let small = try #require(try storage.acquireOrEnqueue(weight: 1), "a newcomer overtook a queued waiter")
        storage.release(weight: 3)
        // 7 free: the head (8) still does not fit, and nothing behind it is granted.
        var metrics = storage.metrics()
        #expect(metrics.used == 3 && metrics.queued == 2)
        let another = try #require(try storage.acquireOrEnqueue(weight: 1), "a newcomer overtook a queued waiter")
        #expect(storage.metrics().queued == 3)
        storage.release(weight: 3)
        // All three granted in order (8 + 1 + 1 = 10); the queue is empty, so the word thaws.
        metrics = storage.metrics()
        #expect(metrics.used == 10 && metrics.inFlight == 3 && metrics.queued == 0)
        #expect(!storage.isWordFrozen)
        for ticket in [big, small, another] {
            try await storage.wait(ticket)  // granted before it parked: returns at once
        }
        // Released in the word, by holders the machine admitted.
        for weight in [8, 1, 1] { storage.release(weight: weight) }
        metrics = storage.metrics()
        #expect(metrics.used == 0 && metrics.inFlight == 0)
        #expect(metrics.admitted == 5 && metrics.peakUsed == 10 && metrics.waited == 3)
        #expect(try storage.acquireOrEnqueue(weight: 10) == nil)
        #expect(!storage.isWordFrozen)
        storage.release(weight: 10)
    }

    @Test func aReleaseThatFindsTheWordFrozenGrantsTheWaiter() async throws {
        let storage = self.makeStorage(capacity: 1)
        #expect(try storage.acquireOrEnqueue(weight: 1) == nil)  // in the word
        let ticket = try #require(try storage.acquireOrEnqueue(weight: 1))  // freezes it
        #expect(storage.isWordFrozen)
        // The holder admitted in the word releases under the lock and grants the waiter.
        storage.release(weight: 1)
        #expect(!storage.isWordFrozen)
        #expect(storage.metrics().used == 1 && storage.metrics().inFlight == 1)
        try await storage.wait(ticket)
        storage.release(weight: 1)
        let metrics = storage.metrics()
        #expect(metrics.used == 0 && metrics.inFlight == 0 && metrics.admitted == 2)
    }

    @Test func aBulkheadCallerDoesNotOvertakeAQueuedWaiter() async throws {
        let bulkhead = Bulkhead(name: "fifo", configuration: .init(maxConcurrent: 1, maxQueued: 8, maxWait: nil))
        let gate = TestGate()
        let entered = BulkheadTestArrivals()
        let order = BulkheadTestOrder()
        let holder = Task {
            try await bulkhead.run {
                entered.arrive()
                await gate.wait()
            }
        }
        await entered.wait(for: 1)
        let first = Task { try await bulkhead.run { order.append("first") } }
        await bulkhead.waitForQueued(count: 1)
        #expect(bulkhead.storage.isWordFrozen)
        let second = Task { try await bulkhead.run { order.append("second") } }
        await bulkhead.waitForQueued(count: 2)
        gate.open()
        try await holder.value
        try await first.value
        try await second.value
        #expect(order.names == ["first", "second"])
        #expect(!bulkhead.storage.isWordFrozen)
        #expect(bulkhead.metrics.used == 0 && bulkhead.metrics.admitted == 3)
    }

    @Test func cancellingTheLastWaiterThawsTheWord() async throws {
        let bulkhead = Bulkhead(name: "thaw", configuration: .init(maxConcurrent: 1, maxQueued: 4, maxWait: nil))
        let gate = TestGate()
        let entered = BulkheadTestArrivals()
        let holder = Task {
            try await bulkhead.run {
                entered.arrive()
                await gate.wait()
            }
        }
        await entered.wait(for: 1)
        let waiter = Task { try await bulkhead.run { Issue.record("a cancelled waiter must not run") } }
        await bulkhead.waitForQueued(count: 1)
        #expect(bulkhead.storage.isWordFrozen)
        waiter.cancel()
        await #expect(throws: CancellationError.self) { try await waiter.value }
        // Nobody is queued: the holder is counted in the word again, and releases there.
        #expect(!bulkhead.storage.isWordFrozen)
        #expect(bulkhead.metrics.used == 1 && bulkhead.metrics.inFlight == 1)
        gate.open()
        try await holder.value
        let metrics = bulkhead.metrics
        #expect(metrics.used == 0 && metrics.inFlight == 0)
        #expect(metrics.admitted == 1 && metrics.cancelled == 1)
    }

    @Test func aTimedOutLastWaiterThawsTheWord() async throws {
        let clock = TestClock()
        let bulkhead = Bulkhead(
            name: "thaw-timeout",
            configuration: .init(maxConcurrent: 1, maxQueued: 4, maxWait: .seconds(1)),
            clock: clock
        )
        let gate = TestGate()
        let entered = BulkheadTestArrivals()
        let holder = Task {
            try await bulkhead.run {
                entered.arrive()
                await gate.wait()
            }
        }
        await entered.wait(for: 1)
        let waiter = Task { try await bulkhead.run { Issue.record("a timed-out waiter must not run") } }
        await bulkhead.waitForQueued(count: 1)
        await clock.waitForSleepers(count: 1)
        clock.advance(by: .seconds(1))
        let error = await #expect(throws: BulkheadError.self) { try await waiter.value }
        #expect(error?.code == .waitTimedOut)
        #expect(!bulkhead.storage.isWordFrozen)
        gate.open()
        try await holder.value
        let metrics = bulkhead.metrics
        #expect(metrics.used == 0 && metrics.admitted == 1 && metrics.timedOut == 1)
    }

    @Test func holdersBeyondTheWordsFieldAreCountedUnderTheLock() throws {
        // 2^60 units take 61 bits of the word, leaving 2 bits: at most 3 holders in the word.
        let storage = self.makeStorage(capacity: 1 << 60)
        for holders in 1...6 {
            #expect(try storage.acquireOrEnqueue(weight: 1) == nil)
            #expect(storage.isWordFrozen == (holders > 3))
        }
        #expect(storage.metrics().inFlight == 6 && storage.metrics().used == 6)
        for holders in (0..<6).reversed() {
            storage.release(weight: 1)
            #expect(storage.isWordFrozen == (holders > 3))
        }
        let metrics = storage.metrics()
        #expect(metrics.used == 0 && metrics.inFlight == 0 && metrics.admitted == 6 && metrics.peakUsed == 6)
        // The largest capacity leaves no bit for holders: every acquisition takes the lock.
        let widest = self.makeStorage(capacity: .max)
        #expect(try widest.acquireOrEnqueue(weight: .max - 1) == nil)
        #expect(try widest.acquireOrEnqueue(weight: 1) == nil)
        #expect(widest.metrics().used == .max && widest.metrics().inFlight == 2)
        widest.release(weight: 1)
        widest.release(weight: .max - 1)
        #expect(widest.metrics().used == 0 && !widest.isWordFrozen)
    }

    @Test func gaugesKeepEveryAcquisitionUnderTheLock() async throws {
        let recorder = InMemoryRecorder()
        let bulkhead = Bulkhead(
            name: "gauged",
            configuration: .init(maxConcurrent: 2, maxQueued: 64, maxWait: nil),
            telemetry: recorder
        )
        #expect(bulkhead.storage.isWordFrozen)
        try await withThrowingDiscardingTaskGroup { group in
            for _ in 0..<16 {
                group.addTask {
                    for _ in 0..<50 { try await bulkhead.run { await Task.yield() } }
                }
            }
        }
        #expect(bulkhead.storage.isWordFrozen)
        let dimensions = [("bulkhead", "gauged")]
        #expect(recorder.gauge("keel.bulkhead.in_flight", dimensions: dimensions) == 0)
        #expect(recorder.gauge("keel.bulkhead.queued", dimensions: dimensions) == 0)
        #expect(recorder.gauge("keel.bulkhead.utilisation", dimensions: dimensions) == 0)
        #expect(bulkhead.metrics.admitted == 800)
        // Telemetry without gauges (a keyed bulkhead's keys) keeps the word.
        let keyed = self.makeStorage(capacity: 2, instruments: .make(recorder, name: "keyed", withGauges: false))
        #expect(!keyed.isWordFrozen)
    }

    // MARK: Under contention

    @Test func neverMoreHoldersThanPermitsUnderContention() async throws {
        let bulkhead = Bulkhead(name: "crowd", configuration: .init(maxConcurrent: 3, maxQueued: 1_000, maxWait: nil))
        let holders = BulkheadTestHighWater()
        let tasks = 64
        let perTask = TestEnvironment.scaled(500, underThreadSanitizerBy: 5)
        try await withThrowingDiscardingTaskGroup { group in
            for task in 0..<tasks {
                group.addTask {
                    for operation in 0..<perTask {
                        try await bulkhead.run {
                            holders.enter()
                            // Mostly no suspension, so that the word's path races the queue's.
                            if (operation + task) % 4 == 0 { await Task.yield() }
                            holders.leave()
                        }
                    }
                }
            }
        }
        #expect(holders.maximum <= 3)
        let metrics = bulkhead.metrics
        #expect(metrics.admitted == tasks * perTask)
        #expect(metrics.used == 0 && metrics.inFlight == 0 && metrics.queued == 0)
        #expect(metrics.peakUsed <= 3 && metrics.peakUsed >= 1)
        #expect(!bulkhead.storage.isWordFrozen)
    }

    @Test func neverMoreBytesThanTheBudgetUnderContention() async throws {
        let memory = MemoryBulkhead<String>(
            name: "bytes",
            configuration: .init(budgets: ["x": 16], maxQueued: 1_000, maxWait: nil)
        )
        let bytes = BulkheadTestUnits()
        let tasks = 32
        let perTask = TestEnvironment.scaled(500, underThreadSanitizerBy: 5)
        let plans: [[Int]] = (0..<tasks).map { task in
            let random = RandomSource(seed: 77 &+ UInt64(task))
            return (0..<perTask).map { _ in 1 + Int(random.next() % 7) }
        }
        try await withThrowingDiscardingTaskGroup { group in
            for plan in plans {
                group.addTask {
                    for (index, weight) in plan.enumerated() {
                        try await memory.withLease(bytes: weight, category: "x") {
                            bytes.take(weight)
                            if index % 3 == 0 { await Task.yield() }
                            bytes.give(weight)
                        }
                    }
                }
            }
        }
        #expect(bytes.maximum <= 16)
        let metrics = try #require(memory.metrics(for: "x"))
        #expect(metrics.admitted == tasks * perTask)
        #expect(metrics.used == 0 && metrics.inFlight == 0 && metrics.queued == 0)
        #expect(metrics.peakUsed <= 16)
    }

    @Test func totalsAreExactAfterAContendedRunWithRejections() async throws {
        let bulkhead = Bulkhead(name: "shed", configuration: .init(maxConcurrent: 2, maxQueued: 3, maxWait: nil))
        let ran = BulkheadTestCounter()
        let refused = BulkheadTestCounter()
        let tasks = 32
        let perTask = TestEnvironment.scaled(500, underThreadSanitizerBy: 5)
        try await withThrowingDiscardingTaskGroup { group in
            for task in 0..<tasks {
                group.addTask {
                    for operation in 0..<perTask {
                        do {
                            try await bulkhead.run {
                                if (operation + task) % 2 == 0 { await Task.yield() }
                            }
                            ran.increment()
                        } catch let error as BulkheadError where error.code == .queueFull {
                            refused.increment()
                        }
                    }
                }
            }
        }
        #expect(ran.value + refused.value == tasks * perTask)
        let metrics = bulkhead.metrics
        #expect(metrics.admitted == ran.value)
        #expect(metrics.rejected == refused.value)
        #expect(metrics.used == 0 && metrics.inFlight == 0 && metrics.queued == 0)
        #expect(metrics.peakUsed <= 2 && metrics.peakUsed >= 1)
        #expect(!bulkhead.storage.isWordFrozen)
    }

    @Test(arguments: [1, 2, 3])
    func aReleaseRacingACallerThatQueuesLosesNoWakeup(permits: Int) async throws {
        // `permits - 1` long holders leave one permit to two callers that never suspend inside
        // it, so they run side by side on the pool's threads and every release races with the
        // other caller finding no room and queueing. A lost wakeup leaves a caller queued
        // forever, and the test hangs until its time limit.
        let bulkhead = Bulkhead(
            name: "handover",
            configuration: .init(maxConcurrent: permits, maxQueued: 16, maxWait: nil)
        )
        let gate = TestGate()
        let entered = BulkheadTestArrivals()
        let ran = BulkheadTestCounter()
        let holders = BulkheadTestHighWater()
        let callers = 2
        let perCaller = TestEnvironment.scaled(20_000, underThreadSanitizerBy: 10)
        try await withThrowingDiscardingTaskGroup { group in
            for _ in 0..<(permits - 1) {
                group.addTask {
                    try await bulkhead.run {
                        holders.enter()
                        entered.arrive()
                        await gate.wait()
                        holders.leave()
                    }
                }
            }
            await entered.wait(for: permits - 1)
            try await withThrowingDiscardingTaskGroup { callersGroup in
                for _ in 0..<callers {
                    callersGroup.addTask {
                        for _ in 0..<perCaller {
                            try await bulkhead.run {
                                holders.enter()
                                ran.increment()
                                holders.leave()
                            }
                        }
                    }
                }
            }
            gate.open()
        }
        #expect(ran.value == callers * perCaller)
        #expect(holders.maximum <= permits)
        let metrics = bulkhead.metrics
        #expect(metrics.admitted == callers * perCaller + permits - 1)
        #expect(metrics.used == 0 && metrics.queued == 0)
    }

    @Test(arguments: [0, 4])
    func threadsRacingTheWordAndTheLockLoseNoUnitAndNoWakeup(maxQueued: Int) async throws {
        // Threads of their own, not tasks on the pool, so that callers overlap whatever else runs:
        // they take 1 to 3 of 3 units, so that a caller often finds no room while another
        // releases. With maxQueued 0 every refusal freezes and thaws the word while the other
        // threads acquire and release in it (a release lost there leaves units used for good);
        // with 4 a caller that finds no room queues and blocks its thread until it is granted
        // (a lost wakeup blocks it for good, and the test reaches its time limit). Each such wait
        // is a round trip through the cooperative pool, which the other tests share: fewer of
        // those, so that the test stays short when the whole suite runs.
        let storage = self.makeStorage(capacity: 3, maxQueued: maxQueued)
        let units = BulkheadTestUnits()
        let admitted = BulkheadTestCounter()
        let refused = BulkheadTestCounter()
        let threads = 3
        let perThread = TestEnvironment.scaled(maxQueued == 0 ? 20_000 : 2_000, underThreadSanitizerBy: 5)
        await withCheckedContinuation { (finished: CheckedContinuation<Void, Never>) in
            let group = DispatchGroup()
            for thread in 0..<threads {
                let queue = DispatchQueue(label: "keel.test.bulkhead-word.\(thread)")
                queue.async(group: group) {
                    let random = RandomSource(seed: 11 &+ UInt64(thread))
                    for _ in 0..<perThread {
                        let weight = 1 + Int(random.next() % 3)
                        do {
                            if let ticket = try storage.acquireOrEnqueue(weight: weight) {
                                let granted = DispatchSemaphore(value: 0)
                                // Unstructured, because `wait` is async and this is a plain
                                // thread, not a task: the thread owns it and blocks until it ends.
                                // Nothing cancels it, and without maxWait it cannot fail.
                                Task {
                                    do {
                                        try await storage.wait(ticket)
                                    } catch {
                                        Issue.record("a queued caller failed to wait: \(error)")
                                    }
                                    granted.signal()
                                }
                                granted.wait()
                            }
                        } catch {
                            refused.increment()
                            continue
                        }
                        admitted.increment()
                        units.take(weight)
                        units.give(weight)
                        storage.release(weight: weight)
                    }
                }
            }
            group.notify(queue: .global()) { finished.resume() }
        }
        #expect(admitted.value + refused.value == threads * perThread)
        #expect(units.maximum <= 3)
        let metrics = storage.metrics()
        #expect(metrics.admitted == admitted.value && metrics.rejected == refused.value)
        #expect(metrics.used == 0 && metrics.inFlight == 0 && metrics.queued == 0)
        #expect(metrics.peakUsed <= 3)
        #expect(!storage.isWordFrozen)
    }
}

/// Tracks how many units are held at once and the most that ever were.
final class BulkheadTestUnits: Sendable {
    private let current = Atomic<Int>(0)
    private let peak = Atomic<Int>(0)

    var maximum: Int { self.peak.load(ordering: .relaxed) }

    func take(_ units: Int) {
        let now = self.current.wrappingAdd(units, ordering: .relaxed).newValue
        var seen = self.peak.load(ordering: .relaxed)
        while now > seen {
            let (exchanged, original) = self.peak.compareExchange(expected: seen, desired: now, ordering: .relaxed)
            if exchanged { break }
            seen = original
        }
    }

    func give(_ units: Int) {
        self.current.wrappingSubtract(units, ordering: .relaxed)
    }
}

/// Names in the order they were appended.
final class BulkheadTestOrder: Sendable {
    private let state = Lock<[String]>([])

    var names: [String] { self.state.withLock { $0 } }

    func append(_ name: String) {
        self.state.withLock { $0.append(name) }
    }
}
