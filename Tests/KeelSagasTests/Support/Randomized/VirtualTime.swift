import KeelCore
import KeelTesting
import Synchronization

/// Moves a ``TestClock`` shared by many concurrent sagas, only when every one of them is parked,
/// so that what a saga's sleepers race for (a slow step against its timeout) is decided by their
/// durations alone, whatever the scheduling.
///
/// The work is counted in *units*: a running saga is one, each branch of a parallel group one
/// (the body's unit passes to its branches and back). A unit *parks* on the clock just before it
/// sleeps: it says when it will wake (`now` plus the shortest of its sleeps: a slow step's own
/// sleep, or its timeout) and how many sleepers it puts on the clock (1, or 2 with the timeout's).
/// A unit may also park at a ``SiblingBarrier``, without sleepers. The driver waits until no unit
/// is active, then for the parked units' sleepers to be on the clock, then reactivates the units
/// due at the earliest wake-up and advances the clock to it. Between a unit's park and that
/// advance nothing else runs, so the units that park together sleep from the same `now`.
final class VirtualTime: Sendable {
    struct Park {
        var wake: TestClock.Instant
        var sleepers: Int
    }

    struct State {
        var active = 0
        var launched = 0
        var finished = 0
        var parks: [Int: Park] = [:]
        var nextToken = 0
        var waiter: CheckedContinuation<Void, Never>?
        let concurrency: Int
        let total: Int

        /// The driver has something to do: launch a saga into a free slot, or advance the clock.
        var hasWork: Bool {
            self.active == 0 || self.hasFreeSlot
        }

        var hasFreeSlot: Bool {
            self.launched - self.finished < self.concurrency && self.launched < self.total
        }

        mutating func takeWaiterIfWorkIsDue() -> CheckedContinuation<Void, Never>? {
            guard self.hasWork else { return nil }
            defer { self.waiter = nil }
            return self.waiter
        }
    }

    /// What ``advance()`` did.
    enum Step {
        case advanced
        case finished
        /// No unit is active or parked on the clock, and sagas are unfinished: they wait for each
        /// other (a bug of the run's own accounting, or a saga that hangs).
        case stuck(unfinished: Int)
    }

    let clock: TestClock
    private let state: Lock<State>

    init(clock: TestClock, concurrency: Int, total: Int) {
        self.clock = clock
        self.state = Lock(State(concurrency: concurrency, total: total))
    }

    private func update(_ change: (inout State) -> Void) {
        let waiter = self.state.withLock { state in
            change(&state)
            return state.takeWaiterIfWorkIsDue()
        }
        waiter?.resume()
    }

    // MARK: Units

    func sagaLaunched() {
        self.update {
            $0.launched += 1
            $0.active += 1
        }
    }

    func sagaFinished() {
        self.update {
            $0.finished += 1
            $0.active -= 1
        }
    }

    func activate(_ count: Int) {
        self.update { $0.active += count }
    }

    func deactivate(_ count: Int) {
        self.update { $0.active -= count }
    }

    /// Parks the calling unit on the clock, until `now + wake`, with `sleepers` sleepers about to
    /// go to sleep. The driver reactivates it when it advances to that instant.
    /// - Returns: The park's token, for ``unpark(_:)``.
    func park(wakingAfter wake: Duration, sleepers: Int) -> Int {
        let instant = self.clock.now.advanced(by: wake)
        var token = 0
        self.update { state in
            token = state.nextToken
            state.nextToken += 1
            state.parks[token] = Park(wake: instant, sleepers: sleepers)
            state.active -= 1
        }
        return token
    }

    /// Reactivates a unit whose sleep ended otherwise than by the driver's advance (it was
    /// cancelled); does nothing when the driver has already reactivated it.
    func unpark(_ token: Int) {
        self.update { state in
            if state.parks.removeValue(forKey: token) != nil { state.active += 1 }
        }
    }

    var hasFreeSlot: Bool {
        self.state.withLock { $0.hasFreeSlot }
    }

    // MARK: Driving

    /// Waits until no unit is active, or a saga can be launched.
    func waitForWork() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = self.state.withLock { state -> Bool in
                    if state.hasWork || Task.isCancelled { return true }
                    state.waiter = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            let waiter = self.state.withLock { state -> CheckedContinuation<Void, Never>? in
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume()
        }
    }

    /// With no unit active: waits until the parked units' sleepers are all on the clock, then
    /// wakes the units due first and moves the clock to their instant.
    func advance() async -> Step {
        let (sleepers, unfinished) = self.state.withLock { state in
            (state.parks.values.reduce(0) { $0 + $1.sleepers }, state.total - state.finished)
        }
        if sleepers == 0 {
            return unfinished == 0 ? .finished : .stuck(unfinished: unfinished)
        }
        await self.clock.waitForSleepers(count: sleepers)
        let instant = self.state.withLock { state -> TestClock.Instant in
            let instant = state.parks.values.map(\.wake).min()!
            for (token, park) in state.parks where park.wake <= instant {
                state.parks[token] = nil
                state.active += 1
            }
            return instant
        }
        self.clock.advance(to: instant)
        return .advanced
    }
}

/// Makes the outcome of a parallel group a function of its plan: a branch's failing step first
/// *settles* its branch and waits until every branch has settled (finished, or reached its own
/// failing step). Then no branch is cancelled in the middle of a step that would otherwise
/// complete, and the completed steps are the same in every run.
final class SiblingBarrier: Sendable {
    private struct State {
        var settled: Set<Int> = []
        var isOpen = false
        var waiters: [Int: CheckedContinuation<Void, any Error>] = [:]
    }

    private let branches: Int
    private let time: VirtualTime
    private let state = Lock(State())

    init(branches: Int, time: VirtualTime) {
        self.branches = branches
        self.time = time
    }

    /// Marks `branch` settled; the last one opens the barrier and reactivates its waiters.
    func settle(_ branch: Int) {
        let waiters = self.state.withLock { state -> [CheckedContinuation<Void, any Error>] in
            guard state.settled.insert(branch).inserted, state.settled.count == self.branches else { return [] }
            state.isOpen = true
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        // The settling unit is active until it returns: reactivate the waiters before they run.
        self.time.activate(waiters.count)
        for waiter in waiters { waiter.resume() }
    }

    /// Waits until every branch has settled; the calling unit is parked meanwhile.
    func wait(branch: Int) async throws {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                enum Next { case pass, cancelled, park }
                let next = self.state.withLock { state -> Next in
                    if state.isOpen { return .pass }
                    if Task.isCancelled { return .cancelled }
                    state.waiters[branch] = continuation
                    self.time.deactivate(1)
                    return .park
                }
                switch next {
                case .pass: continuation.resume()
                case .cancelled: continuation.resume(throwing: CancellationError())
                case .park: break
                }
            }
        } onCancel: {
            let waiter = self.state.withLock { $0.waiters.removeValue(forKey: branch) }
            if let waiter {
                self.time.activate(1)
                waiter.resume(throwing: CancellationError())
            }
        }
    }
}

/// The units of a parallel group: the body's unit passes to the branches when the group starts
/// (`n - 1` more are activated beforehand), each branch's ends with it, and the last branch to end
/// hands its unit back to the body, so the count never drops to zero while the saga still runs.
final class BranchUnits: Sendable {
    private struct State {
        var started = 0
        var ended = 0
    }

    private let branches: Int
    private let time: VirtualTime
    private let state = Lock(State())

    /// Activates the units of the branches beyond the body's own.
    init(branches: Int, time: VirtualTime) {
        self.branches = branches
        self.time = time
        time.activate(branches - 1)
    }

    func branchStarted() {
        self.state.withLock { $0.started += 1 }
    }

    func branchEnded() {
        let isLast = self.state.withLock { state -> Bool in
            state.ended += 1
            return state.ended == self.branches
        }
        if !isLast { self.time.deactivate(1) }
    }

    /// After the group's call returns or throws: when no branch ran (the call failed before it
    /// started them), gives back the units activated for them.
    func bodyResumed() {
        if self.state.withLock({ $0.started == 0 }) { self.time.deactivate(self.branches - 1) }
    }
}

/// A saga's request to cancel its own task, at a point its plan chooses; the task that runs the
/// saga waits for it and cancels the saga's child task.
final class CancelRequest: Sendable {
    private struct State {
        var isRequested = false
        var waiter: CheckedContinuation<Void, Never>?
    }

    private let state = Lock(State())

    func request() {
        let waiter = self.state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.isRequested = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    /// Waits until the cancellation is requested, or the calling task is cancelled.
    func wait() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = self.state.withLock { state -> Bool in
                    if state.isRequested || Task.isCancelled { return true }
                    state.waiter = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            let waiter = self.state.withLock { state -> CheckedContinuation<Void, Never>? in
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume()
        }
    }
}

/// Waits until the calling task is cancelled: where a plan's step hangs until the cancellation
/// it requested arrives. (`Gate.pass()` of `ShopWorld` can resume its continuation twice when the
/// cancellation races with it; see the report of this branch.)
enum Cancellation {
    private final class Waiter: Sendable {
        let state = Lock<(isCancelled: Bool, continuation: CheckedContinuation<Void, any Error>?)>((false, nil))
    }

    /// Suspends until the calling task is cancelled.
    /// - Throws: `CancellationError`, always.
    static func arrival() async throws {
        let waiter = Waiter()
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let isCancelled = waiter.state.withLock { state -> Bool in
                    if state.isCancelled { return true }
                    state.continuation = continuation
                    return false
                }
                if isCancelled { continuation.resume(throwing: CancellationError()) }
            }
        } onCancel: {
            let continuation = waiter.state.withLock { state -> CheckedContinuation<Void, any Error>? in
                state.isCancelled = true
                defer { state.continuation = nil }
                return state.continuation
            }
            continuation?.resume(throwing: CancellationError())
        }
    }
}
