import KeelCore
import Synchronization
import Testing

@testable import Keel

/// The host's count of work in flight: admission and draining are one atomic state.
@Suite("Work tracker", .timeLimit(.minutes(2)))
struct WorkTrackerTests {
    final class Flags: Sendable {
        let idle = Atomic<Bool>(false)
        let admitted = Atomic<Int>(0)
        let admittedLate = Atomic<Int>(0)
    }

    @Test("outside work is refused once draining starts; nested work is still counted; idle waits for both")
    func drainingRefusesOutsideWork() async {
        let tracker = WorkTracker()
        #expect(tracker.enter(nested: false))
        tracker.startDraining()
        #expect(tracker.isDraining)
        #expect(!tracker.enter(nested: false))
        #expect(tracker.enter(2, nested: true))
        #expect(tracker.inFlight == 3)
        tracker.leave(3)
        await tracker.waitUntilIdle()
        #expect(tracker.inFlight == 0)
        #expect(tracker.isDraining)
    }

    @Test(
        "a drain that starts while an admission is being decided refuses it: the drain never sees idle under admitted work"
    )
    func drainDuringAdmission() {
        final class Box: Sendable {
            let tracker = Lock<WorkTracker?>(nil)
            let sawIdle = Atomic<Bool>(false)
        }
        let box = Box()
        let tracker = WorkTracker(beforeAdmission: {
            // Once: shutdown starts draining and finds nothing in flight.
            guard let tracker = box.tracker.withLock({ $0 }), !tracker.isDraining else { return }
            tracker.startDraining()
            if tracker.inFlight == 0 { box.sawIdle.store(true, ordering: .relaxed) }
        })
        box.tracker.withLock { $0 = tracker }
        let admitted = tracker.enter(nested: false)
        let sawIdle = box.sawIdle.load(ordering: .relaxed)
        #expect(sawIdle, "the drain ran inside the admission")
        #expect(!admitted, "admitted after the drain found the tracker idle")
        #expect(tracker.inFlight == 0)
    }

    @Test("under contention, no outside work is admitted after a drain found the tracker idle")
    func admissionRacesDraining() async {
        var late = 0
        for _ in 0..<300 {
            let tracker = WorkTracker()
            let flags = Flags()
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<3 {
                    group.addTask {
                        while tracker.enter(nested: false) {
                            // Admitted: a drain that already saw the tracker idle missed this work.
                            if flags.idle.load(ordering: .acquiring) { flags.admittedLate.add(1, ordering: .relaxed) }
                            flags.admitted.add(1, ordering: .relaxed)
                            tracker.leave()
                            // The pool has as many threads as cores: let the drain run.
                            await Task.yield()
                        }
                    }
                }
                group.addTask {
                    // Drain in the middle of the admissions, not before them.
                    while flags.admitted.load(ordering: .relaxed) < 20, !Task.isCancelled { await Task.yield() }
                    tracker.startDraining()
                    await tracker.waitUntilIdle()
                    flags.idle.store(true, ordering: .releasing)
                }
            }
            late += flags.admittedLate.load(ordering: .relaxed)
            #expect(tracker.inFlight == 0)
        }
        #expect(late == 0, "\(late) admissions after the drain found the tracker idle")
    }

    @Test("a waiter is woken by the leave that brings the count to zero, however the two race; nobody waits after")
    func waitersAreNeverLost() async {
        let tracker = WorkTracker()
        for round in 0..<2_000 {
            #expect(tracker.enter(nested: false))
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await tracker.waitUntilIdle() }
                group.addTask {
                    // Leave before, during or after the waiter registers.
                    if round % 3 != 0 { await Task.yield() }
                    tracker.leave()
                }
            }
            #expect(tracker.inFlight == 0)
        }
        // Work after the waits takes no lock and leaves nothing to wake: the next wait returns at once.
        #expect(tracker.enter(nested: false))
        tracker.leave()
        await tracker.waitUntilIdle()
    }

    @Test("a cancelled waiter leaves; a later one is still woken")
    func cancelledWaiterLeaves() async {
        let tracker = WorkTracker()
        #expect(tracker.enter(nested: false))
        for _ in 0..<200 {
            // Cancelled before or after it parks: it returns either way, and leaves no waiter.
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await tracker.waitUntilIdle() }
                group.cancelAll()
            }
        }
        #expect(tracker.inFlight == 1)
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await tracker.waitUntilIdle() }
            group.addTask {
                await Task.yield()
                tracker.leave()
            }
        }
        #expect(tracker.inFlight == 0)
    }
}
