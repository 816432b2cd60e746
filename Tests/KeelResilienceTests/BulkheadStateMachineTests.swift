import Testing

@testable import KeelResilience

@Suite("Bulkhead state machine", .timeLimit(.minutes(2)))
struct BulkheadStateMachineTests {
    typealias Machine = BulkheadStateMachine<String>

    private func noClock() -> Duration {
        Issue.record("the clock must not be read on the fast path")
        return .zero
    }

    @Test func grantsUntilFullThenQueuesThenRejects() {
        var machine = Machine(capacity: 2, maxQueued: 1, maxWait: nil)
        #expect(machine.acquire(weight: 1, now: self.noClock) == .acquired)
        #expect(machine.acquire(weight: 1, now: self.noClock) == .acquired)
        #expect(
            machine.acquire(weight: 1) { .seconds(3) } == .enqueued(id: 0, enqueuedAt: .seconds(3), startTimer: false)
        )
        #expect(machine.acquire(weight: 1) { .zero } == .rejected(.queueFull))
        #expect(machine.used == 2)
        #expect(machine.queued == 1)
        #expect(machine.rejected == 1)
        #expect(machine.admitted == 2)
    }

    @Test func maxQueuedZeroNeverQueues() {
        var machine = Machine(capacity: 1, maxQueued: 0, maxWait: .seconds(1))
        #expect(machine.acquire(weight: 1, now: self.noClock) == .acquired)
        #expect(machine.acquire(weight: 1) { .zero } == .rejected(.queueFull))
        #expect(!machine.isTimerRunning)
    }

    @Test func releaseGrantsInFIFOOrder() {
        var machine = Machine(capacity: 1, maxQueued: 10, maxWait: nil)
        _ = machine.acquire(weight: 1, now: self.noClock)
        for name in ["a", "b", "c"] {
            guard case .enqueued(let id, _, _) = machine.acquire(weight: 1, now: { .zero }) else {
                Issue.record("expected to queue")
                return
            }
            #expect(machine.park(id: id, waiter: name).isParked)
        }
        var order: [String] = []
        for _ in 0..<3 {
            guard case .one(let waiter) = machine.release(weight: 1) else {
                Issue.record("expected one grant")
                return
            }
            order.append(waiter)
        }
        #expect(order == ["a", "b", "c"])
        #expect(machine.inFlight == 1)
        #expect(machine.release(weight: 1).count == 0)
        #expect(machine.used == 0)
    }

    @Test func newArrivalDoesNotOvertakeAWaiter() {
        var machine = Machine(capacity: 2, maxQueued: 10, maxWait: nil)
        #expect(machine.acquire(weight: 2, now: self.noClock) == .acquired)
        _ = machine.acquire(weight: 2) { .zero }
        _ = machine.release(weight: 2)
        // The waiter got both units; a newcomer queues even though it came after a release.
        #expect(machine.used == 2)
        guard case .enqueued = machine.acquire(weight: 1, now: { .zero }) else {
            Issue.record("a newcomer must queue behind the granted waiter")
            return
        }
    }

    @Test func weightedHeadOfLineBlocksSmallerRequests() {
        var machine = Machine(capacity: 10, maxQueued: 10, maxWait: nil)
        #expect(machine.acquire(weight: 6, now: self.noClock) == .acquired)
        guard case .enqueued(let big, _, _) = machine.acquire(weight: 8, now: { .zero }) else {
            Issue.record("expected to queue")
            return
        }
        _ = machine.park(id: big, waiter: "big")
        // Four units are free, but a small request must not overtake the big one.
        guard case .enqueued(let small, _, _) = machine.acquire(weight: 1, now: { .zero }) else {
            Issue.record("expected to queue")
            return
        }
        _ = machine.park(id: small, waiter: "small")
        guard case .many(let granted) = machine.release(weight: 6) else {
            Issue.record("expected both to be granted")
            return
        }
        #expect(granted == ["big", "small"])
        #expect(machine.used == 9)
        #expect(machine.acquire(weight: 11, now: { .zero }) == .rejected(.exceedsCapacity))
    }

    @Test func cancellingAParkedWaiterReturnsItAndKeepsOrder() {
        var machine = Machine(capacity: 1, maxQueued: 10, maxWait: nil)
        _ = machine.acquire(weight: 1, now: self.noClock)
        var ids: [UInt64] = []
        for name in ["a", "b", "c"] {
            guard case .enqueued(let id, _, _) = machine.acquire(weight: 1, now: { .zero }) else { return }
            _ = machine.park(id: id, waiter: name)
            ids.append(id)
        }
        let cancellation = machine.cancel(id: ids[1])
        #expect(cancellation.waiter == "b")
        #expect(cancellation.grants.count == 0)
        #expect(machine.queued == 2)
        #expect(machine.cancelled == 1)
        // Cancelling again (the handler racing a later event) does nothing.
        #expect(machine.cancel(id: ids[1]).waiter == nil)
        guard case .one(let first) = machine.release(weight: 1) else { return }
        guard case .one(let second) = machine.release(weight: 1) else { return }
        #expect([first, second] == ["a", "c"])
    }

    @Test func cancellationBeforeParkIsHonouredAtPark() {
        var machine = Machine(capacity: 1, maxQueued: 10, maxWait: nil)
        _ = machine.acquire(weight: 1, now: self.noClock)
        guard case .enqueued(let id, _, _) = machine.acquire(weight: 1, now: { .zero }) else { return }
        let cancellation = machine.cancel(id: id)
        #expect(cancellation.waiter == nil)
        #expect(machine.queued == 0)
        #expect(machine.park(id: id, waiter: "late").outcome == .cancelled)
        #expect(machine.release(weight: 1).count == 0)
        #expect(machine.used == 0)
    }

    @Test func grantBeforeParkIsHandedOverAtPark() {
        var machine = Machine(capacity: 1, maxQueued: 10, maxWait: nil)
        _ = machine.acquire(weight: 1, now: self.noClock)
        guard case .enqueued(let id, _, _) = machine.acquire(weight: 1, now: { .zero }) else { return }
        #expect(machine.release(weight: 1).count == 0)
        #expect(machine.used == 1)
        // The cancellation handler running after the grant finds nothing to cancel.
        #expect(machine.cancel(id: id).waiter == nil)
        #expect(machine.park(id: id, waiter: "w").outcome == .granted)
        #expect(machine.cancelled == 0)
    }

    @Test func cancellingTheGrantRaceLosesNoPermit() {
        // Grant first, then the waiter finds itself cancelled and releases: the next waiter gets it.
        var machine = Machine(capacity: 1, maxQueued: 10, maxWait: nil)
        _ = machine.acquire(weight: 1, now: self.noClock)
        guard case .enqueued(let first, _, _) = machine.acquire(weight: 1, now: { .zero }) else { return }
        guard case .enqueued(let second, _, _) = machine.acquire(weight: 1, now: { .zero }) else { return }
        _ = machine.park(id: first, waiter: "first")
        _ = machine.park(id: second, waiter: "second")
        guard case .one("first") = machine.release(weight: 1) else { return }
        #expect(machine.cancel(id: first).waiter == nil)
        guard case .one("second") = machine.release(weight: 1) else {
            Issue.record("the permit must pass on")
            return
        }
        #expect(machine.release(weight: 1).count == 0)
        #expect(machine.used == 0 && machine.queued == 0)
    }

    @Test func timeoutsExpireFromTheHeadAndStopTheTimer() {
        var machine = Machine(capacity: 1, maxQueued: 10, maxWait: .seconds(5))
        _ = machine.acquire(weight: 1, now: self.noClock)
        #expect(machine.acquire(weight: 1) { .seconds(0) } == .enqueued(id: 0, enqueuedAt: .zero, startTimer: true))
        #expect(
            machine.acquire(weight: 1) { .seconds(2) } == .enqueued(id: 1, enqueuedAt: .seconds(2), startTimer: false)
        )
        _ = machine.park(id: 0, waiter: "a")
        // "b" is not parked yet: its timeout is remembered.
        var expiry = machine.expire(now: .seconds(4))
        #expect(expiry.timedOut.isEmpty)
        #expect(expiry.nextDeadline == .seconds(5))
        expiry = machine.expire(now: .seconds(5))
        #expect(expiry.timedOut == ["a"])
        #expect(expiry.nextDeadline == .seconds(7))
        expiry = machine.expire(now: .seconds(7))
        #expect(expiry.timedOut.isEmpty)
        #expect(expiry.nextDeadline == nil)
        #expect(!machine.isTimerRunning)
        #expect(machine.park(id: 1, waiter: "b").outcome == .timedOut)
        #expect(machine.timedOut == 2)
        #expect(machine.queued == 0)
        // The next waiter starts a new timer.
        guard case .enqueued(_, _, true) = machine.acquire(weight: 1, now: { .seconds(8) }) else {
            Issue.record("expected a new timer")
            return
        }
    }

    @Test func expiringAWeightedHeadGrantsThoseBehind() {
        var machine = Machine(capacity: 10, maxQueued: 10, maxWait: .seconds(1))
        _ = machine.acquire(weight: 5, now: self.noClock)
        guard case .enqueued(let big, _, _) = machine.acquire(weight: 10, now: { .zero }) else { return }
        guard case .enqueued(let small, _, _) = machine.acquire(weight: 2, now: { .milliseconds(10) }) else { return }
        _ = machine.park(id: big, waiter: "big")
        _ = machine.park(id: small, waiter: "small")
        let expiry = machine.expire(now: .seconds(1))
        #expect(expiry.timedOut == ["big"])
        guard case .one("small") = expiry.grants else {
            Issue.record("the small waiter fits once the big one left")
            return
        }
        #expect(machine.used == 7)
    }

    @Test func manyDeparturesKeepTheQueueCompactAndOrdered() {
        var machine = Machine(capacity: 1, maxQueued: 100_000, maxWait: nil)
        _ = machine.acquire(weight: 1, now: self.noClock)
        var live: [UInt64] = []
        for index in 0..<10_000 {
            guard case .enqueued(let id, _, _) = machine.acquire(weight: 1, now: { .zero }) else { return }
            _ = machine.park(id: id, waiter: "\(index)")
            if index % 10 == 0 { live.append(id) } else { _ = machine.cancel(id: id) }
        }
        #expect(machine.queued == live.count)
        var granted: [String] = []
        while case .one(let waiter) = machine.release(weight: 1) { granted.append(waiter) }
        #expect(granted == stride(from: 0, to: 10_000, by: 10).map { "\($0)" })
        #expect(machine.queued == 0)
        #expect(machine.used == 0)
    }

    @Test func randomOperationsAlwaysBalance() {
        // 100,000 random acquire / park / cancel / expire / release steps against a model.
        var generator = BulkheadSplitMix(seed: 7)
        var machine = Machine(capacity: 4, maxQueued: 16, maxWait: .seconds(1))
        var now = Duration.zero
        var holders = 0
        var unparked: [UInt64] = []
        var parked: [UInt64] = []
        for _ in 0..<100_000 {
            switch generator.next() % 6 {
            case 0, 1:
                switch machine.acquire(weight: 1, now: { now }) {
                case .acquired: holders += 1
                case .rejected: break
                case .enqueued(let id, _, _): unparked.append(id)
                }
            case 2:
                // Every queued waiter reaches its park step; some were resolved before it.
                while let id = unparked.popLast() {
                    switch machine.park(id: id, waiter: "\(id)") {
                    case .parked: parked.append(id)
                    case .resume(let outcome): if outcome == .granted { holders += 1 }
                    }
                }
            case 3:
                let all = unparked + parked
                if !all.isEmpty {
                    let id = all[Int(generator.next() % UInt64(all.count))]
                    let cancellation = machine.cancel(id: id)
                    if cancellation.waiter != nil { parked.removeAll { $0 == id } }
                    holders += self.grantedParked(cancellation.grants, parked: &parked)
                }
            case 4:
                if holders > 0 {
                    holders -= 1
                    holders += self.grantedParked(machine.release(weight: 1), parked: &parked)
                }
            default:
                now += .milliseconds(Int64(generator.next() % 400))
                let expiry = machine.expire(now: now)
                for waiter in expiry.timedOut { parked.removeAll { "\($0)" == waiter } }
                holders += self.grantedParked(expiry.grants, parked: &parked)
            }
            // Grants to waiters that have not parked yet count once they park.
            if machine.used > 4 || machine.used < holders {
                Issue.record("used \(machine.used) with \(holders) known holders")
                break
            }
        }
        // Settle: park the rest, cancel every waiter, release every holder.
        for id in unparked {
            if case .resume(.granted) = machine.park(id: id, waiter: "\(id)") {
                holders += 1
            } else {
                parked.append(id)
            }
        }
        for id in parked { holders += self.grantedParked(machine.cancel(id: id).grants, parked: &parked) }
        while holders > 0 {
            holders -= 1
            holders += machine.release(weight: 1).count
        }
        #expect(machine.used == 0)
        #expect(machine.inFlight == 0)
        #expect(machine.queued == 0)
    }

    private func grantedParked(_ grants: Machine.Grants, parked: inout [UInt64]) -> Int {
        let names: [String]
        switch grants {
        case .none: names = []
        case .one(let name): names = [name]
        case .many(let all): names = all
        }
        parked.removeAll { names.contains("\($0)") }
        return names.count
    }
}

extension BulkheadStateMachine.ParkAction {
    var isParked: Bool {
        if case .parked = self { return true }
        return false
    }

    var outcome: BulkheadWaitOutcome? {
        if case .resume(let outcome) = self { return outcome }
        return nil
    }
}

/// A tiny seeded generator for repeatable random tests.
struct BulkheadSplitMix: RandomNumberGenerator {
    var state: UInt64

    init(seed: UInt64) {
        self.state = seed
    }

    mutating func next() -> UInt64 {
        self.state &+= 0x9E37_79B9_7F4A_7C15
        var z = self.state
        z = (z ^ (z &>> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z &>> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z &>> 31)
    }
}
