import KeelCore
import Synchronization

/// The shared engine of every bulkhead kind: an atomic word for the uncontended path, a
/// ``BulkheadStateMachine`` in a `Mutex` for everything else, the parked waiters'
/// continuations, and the one timer task that enforces `maxWait`.
///
/// ## The uncontended path
/// While nobody is queued, the units in use and the number of holders live in one
/// `Atomic<UInt64>`, `word`: `used` in its low bits (as many as the capacity needs), the holder
/// count above them, and the top bit, *frozen*, clear. An acquisition that fits is one
/// compare-and-exchange on that word, a relaxed add to the `admitted` total and a relaxed load of
/// the peak (a compare-and-exchange too, only when the peak grows); a release is one
/// compare-and-exchange. Neither takes the lock, reads the clock or allocates.
///
/// Everything else goes under the lock: an acquisition that does not fit, or finds the word
/// frozen, or a release that finds it frozen. Under the lock, a word that is not frozen is tried
/// once more (it may have thawed meanwhile); if the units still do not fit, the word is
/// *frozen*: the frozen bit is set by a compare-and-exchange on the whole word, and the machine
/// adopts the word's `used` and holders (``BulkheadStateMachine/adopt(used:inFlight:)``), then
/// decides (grant, queue or refuse). From then on the machine alone counts the units, and every
/// caller takes the lock: the fast path's compare-and-exchange expects the bit clear, so one that
/// raced with the freeze fails and its caller goes to the lock. That keeps the queue FIFO (while
/// anyone is queued the word is frozen, so no newcomer overtakes a waiter) and loses no wakeup (a
/// release that raced with a caller queueing finds the word frozen and grants the waiter under
/// the lock). Whoever leaves the queue empty under the lock (a grant, a cancellation, a timeout,
/// or an acquisition that was granted or refused at once) writes the machine's figures back into
/// the word and clears the bit (*thaws* it); a frozen word changes only under the lock, so a
/// plain store does it.
///
/// The word stays frozen for good when the telemetry makes gauges: they are set from the state
/// read under the lock, numbered by `gaugeVersion` so that they never go back to an older state,
/// so every acquisition and release takes the lock, as before (a ``KeyedBulkhead``'s keys make no
/// gauges). It also stays frozen while it could not count the holders: the holder field has
/// `63 - b` bits, where `b` is the capacity's bit width, so only capacities of 2^31 units or more
/// (byte budgets of 2 GiB and up) can have more holders than it counts, and until their number
/// falls back to `2^(63 - b) - 1` every acquisition and release takes the lock.
///
/// The totals the machine keeps (rejected, timed out, cancelled) change only under the lock;
/// `admitted` is the machine's count plus `fastAdmitted`, and `peakUsed` the larger of the
/// machine's peak and `fastPeak`, both kept by the uncontended path with relaxed atomics just
/// after its compare-and-exchange. A ``metrics()`` snapshot is therefore exact once no
/// acquisition is in the middle of its fast path; during one it may count its units a moment
/// before its admission.
///
/// ## Waiting
/// Only a caller that must queue reads the clock, parks a continuation inside
/// `withTaskCancellationHandler`, and, if no timer is running yet, starts one.
///
/// `maxWait` is enforced by a single timer task per storage, not a task or a task-group race per
/// waiter: every waiter waits the same `maxWait`, so deadlines grow in queue order and the timer
/// sleeps on the injected clock until the head's deadline, times out whatever is due, and sleeps
/// again until the next head's; when the queue empties it ends, and the next waiter starts a new
/// one. The task is started through ``TaskSpawner`` (passing on the owner's executor preference),
/// holds the storage weakly, and is cancelled when the storage is deinitialised.
@usableFromInline
final class BulkheadStorage: Sendable {
    typealias Waiter = UnsafeContinuation<BulkheadWaitOutcome, Never>
    typealias Machine = BulkheadStateMachine<Waiter>

    private struct Locked {
        var machine: Machine
        var timer: Task<Void, Never>?
        /// Whether `word` is frozen (its top bit set) and the machine counts the units. Changes
        /// only under the lock, with the bit.
        var isFrozen: Bool
        /// Counts the states the gauges may be set to: they are set after the lock is released,
        /// and only a newer state than the one they show replaces it (see `Gauges.update`).
        var gaugeVersion: UInt64 = 0
        /// Tasks waiting for the queue to reach a length (a test handshake).
        var queueWatchers: [(count: Int, continuation: CheckedContinuation<Void, Never>)] = []

        mutating func takeSatisfiedWatchers() -> [CheckedContinuation<Void, Never>] {
            let queued = self.machine.queued
            let ready = self.queueWatchers.filter { $0.count <= queued }.map(\.continuation)
            self.queueWatchers.removeAll { $0.count <= queued }
            return ready
        }
    }

    /// What a locked acquisition decided, and the state to set the gauges to.
    private struct LockedAcquisition {
        var action: Machine.AcquireAction
        var used: Int
        var queued: Int
        var watchers: [CheckedContinuation<Void, Never>]?
        /// `nil` when the units were taken in the word (no gauges to set).
        var version: UInt64?
    }

    let name: String
    private let state: Lock<Locked>
    private let clock: any Clock<Duration>
    private let reader: ClockReader
    private let executor: (any TaskExecutor)?
    private let instruments: BulkheadInstruments
    private let queueFullCode: BulkheadError.Code
    private let unit: String
    private let maxQueued: Int
    private let waitedCount = Atomic<Int>(0)
    private let waitNanoseconds = Atomic<Int64>(0)

    /// Keeps `word` off the cache lines written under the lock and by waiters (`Locked`,
    /// `waitedCount`): while the queue is long, every caller reads the frozen word before taking
    /// the lock, and that read must hit its own cache, not fetch a line another core just wrote.
    /// Stored properties are laid out in declaration order; 64 bytes on each side of the word's
    /// group keep it on lines of its own whatever the object's alignment.
    private let paddingBefore = CacheLinePadding()
    /// The uncontended state: `used` in the low `usedBits` bits, the holder count above, the
    /// frozen bit on top (see the type's documentation).
    private let word: Atomic<UInt64>
    /// Acquisitions admitted in the word, not by the machine.
    private let fastAdmitted = Atomic<Int>(0)
    /// The most units held at once in the word (the machine keeps its own peak).
    private let fastPeak = Atomic<Int>(0)
    /// `capacity` as a word.
    private let wordCapacity: UInt64
    /// How many low bits of the word count the units: enough for the capacity.
    private let usedBits: UInt64
    /// One holder in the word.
    private let oneHolder: UInt64
    /// The largest holder count the word can hold. `word >> usedBits` is below it exactly when
    /// the word is not frozen and has room for one more holder.
    private let holderLimit: UInt64
    /// Whether the word may thaw: not when the telemetry makes gauges.
    private let mayThaw: Bool
    /// See `paddingBefore`.
    private let paddingAfter = CacheLinePadding()

    private static let frozenBit: UInt64 = 1 << 63

    /// The units available in total.
    let capacity: Int

    init(
        name: String,
        capacity: Int,
        maxQueued: Int,
        maxWait: Duration?,
        clock: any Clock<Duration>,
        executor: (any TaskExecutor)?,
        instruments: BulkheadInstruments,
        queueFullCode: BulkheadError.Code = .queueFull,
        unit: String = "permits"
    ) {
        let machine = Machine(capacity: capacity, maxQueued: maxQueued, maxWait: maxWait)
        let mayThaw = instruments.gauges == nil
        self.name = name
        self.capacity = capacity
        self.maxQueued = maxQueued
        self.state = Lock(Locked(machine: machine, isFrozen: !mayThaw))
        self.clock = clock
        self.reader = ClockReader(clock)
        self.executor = executor
        self.instruments = instruments
        self.queueFullCode = queueFullCode
        self.unit = unit
        self.mayThaw = mayThaw
        self.wordCapacity = UInt64(capacity)
        // capacity >= 1 (checked by the machine), so 1 ... 63 bits; the holders get the rest but
        // the top bit.
        self.usedBits = UInt64(64 - UInt64(capacity).leadingZeroBitCount)
        self.oneHolder = 1 << self.usedBits
        self.holderLimit = (1 << (63 - self.usedBits)) - 1
        self.word = Atomic(mayThaw ? 0 : Self.frozenBit)
    }

    deinit {
        self.state.withLock { $0.timer }?.cancel()
    }

    /// A place in the queue, to wait on with ``wait(_:)``.
    @usableFromInline
    struct Ticket: Sendable {
        let id: UInt64
        let weight: Int
        let enqueuedAt: Duration
    }

    /// Takes `weight` units, waiting in line if needed.
    ///
    /// - Throws: ``BulkheadError`` when refused or timed out; `CancellationError` when the task
    ///   is cancelled while waiting, or is found cancelled when granted (the units are then
    ///   passed on at once).
    @inlinable
    func acquire(weight: Int) async throws {
        if let ticket = try self.acquireOrEnqueue(weight: weight) {
            try await self.wait(ticket)
        }
    }

    /// Takes `weight` units at once, or queues for them and returns the ticket to wait with.
    /// Never suspends; takes no lock when the word is not frozen and the units fit.
    /// - Throws: ``BulkheadError`` when refused at once.
    @usableFromInline
    func acquireOrEnqueue(weight: Int) throws -> Ticket? {
        precondition(weight >= 1, "weight must be at least 1, got \(weight)")
        if self.acquireInWord(weight: weight) { return nil }
        return try self.acquireOrEnqueueLocked(weight: weight)
    }

    /// Gives back `weight` units held by one holder; they go to the waiters in line first.
    /// Takes no lock when the word is not frozen.
    @usableFromInline
    func release(weight: Int) {
        if self.releaseInWord(weight: weight) { return }
        self.releaseLocked(weight: weight)
    }

    // MARK: The word

    /// Takes `weight` units in the word if it is not frozen and they fit; `false` otherwise.
    @inline(__always)
    private func acquireInWord(weight: Int) -> Bool {
        let weight = UInt64(truncatingIfNeeded: weight)
        var word = self.word.load(ordering: .relaxed)
        var desired: UInt64
        while true {
            // Not frozen, room for a holder, and the units fit.
            guard word &>> self.usedBits < self.holderLimit,
                weight <= self.wordCapacity &- (word & (self.oneHolder &- 1))
            else { return false }
            desired = word &+ weight &+ self.oneHolder
            let (exchanged, original) = self.word.compareExchange(
                expected: word,
                desired: desired,
                successOrdering: .acquiring,
                failureOrdering: .relaxed
            )
            if exchanged { break }
            word = original
        }
        self.fastAdmitted.wrappingAdd(1, ordering: .relaxed)
        let used = Int(truncatingIfNeeded: desired & (self.oneHolder &- 1))
        if used > self.fastPeak.load(ordering: .relaxed) { self.raiseFastPeak(to: used) }
        return true
    }

    /// Gives back `weight` units of one holder in the word if it is not frozen; `false` otherwise.
    @inline(__always)
    private func releaseInWord(weight: Int) -> Bool {
        let weight = UInt64(truncatingIfNeeded: weight)
        var word = self.word.load(ordering: .relaxed)
        while word & Self.frozenBit == 0 {
            precondition(
                word & (self.oneHolder &- 1) >= weight && word >= self.oneHolder,
                "releasing \(weight) units with \(word & (self.oneHolder &- 1)) used by \(word &>> self.usedBits) holders"
            )
            let (exchanged, original) = self.word.compareExchange(
                expected: word,
                desired: word &- weight &- self.oneHolder,
                successOrdering: .releasing,
                failureOrdering: .relaxed
            )
            if exchanged { return true }
            word = original
        }
        return false
    }

    private func raiseFastPeak(to used: Int) {
        var peak = self.fastPeak.load(ordering: .relaxed)
        while used > peak {
            let (exchanged, original) = self.fastPeak.compareExchange(
                expected: peak,
                desired: used,
                ordering: .relaxed
            )
            if exchanged { return }
            peak = original
        }
    }

    /// Under the lock: stops the word's path and hands its units and holders to the machine.
    private func freeze(_ locked: inout Locked) {
        var word = self.word.load(ordering: .relaxed)
        while true {
            let (exchanged, original) = self.word.compareExchange(
                expected: word,
                desired: word | Self.frozenBit,
                ordering: .acquiringAndReleasing
            )
            if exchanged { break }
            word = original
        }
        locked.machine.adopt(
            used: Int(truncatingIfNeeded: word & (self.oneHolder &- 1)),
            inFlight: Int(truncatingIfNeeded: word &>> self.usedBits)
        )
        locked.isFrozen = true
    }

    /// Under the lock: once nobody is queued, writes the machine's units and holders back into
    /// the word and opens its path again (unless the gauges need the lock, or the holders do
    /// not fit in the word).
    private func thawIfIdle(_ locked: inout Locked) {
        guard locked.isFrozen, self.mayThaw, locked.machine.queued == 0,
            UInt64(locked.machine.inFlight) <= self.holderLimit
        else { return }
        // Frozen, the word changes only under this lock: a store does it.
        self.word.store(
            UInt64(locked.machine.used) | UInt64(locked.machine.inFlight) &<< self.usedBits,
            ordering: .releasing
        )
        locked.isFrozen = false
    }

    // MARK: Under the lock

    private func acquireOrEnqueueLocked(weight: Int) throws -> Ticket? {
        let decided = self.state.withLock { locked -> LockedAcquisition in
            if !locked.isFrozen {
                // It may have thawed since the word was read.
                if self.acquireInWord(weight: weight) {
                    return LockedAcquisition(action: .acquired, used: 0, queued: 0, watchers: nil, version: nil)
                }
                self.freeze(&locked)
            }
            // The clock is read only when the caller must queue.
            let action = locked.machine.acquire(weight: weight, now: { self.reader.now() })
            let watchers = locked.queueWatchers.isEmpty ? nil : locked.takeSatisfiedWatchers()
            let used = locked.machine.used
            let queued = locked.machine.queued
            self.thawIfIdle(&locked)
            locked.gaugeVersion += 1
            return LockedAcquisition(
                action: action,
                used: used,
                queued: queued,
                watchers: watchers,
                version: locked.gaugeVersion
            )
        }
        if let version = decided.version {
            self.instruments.gauges?.update(
                version: version,
                used: decided.used,
                queued: decided.queued,
                capacity: self.capacity
            )
        }
        switch decided.action {
        case .acquired:
            return nil
        case .rejected(let rejection):
            throw self.rejectionError(rejection, weight: weight, used: decided.used, queued: decided.queued)
        case .enqueued(let id, let enqueuedAt, let startTimer):
            if startTimer { self.startTimer() }
            for watcher in decided.watchers ?? [] { watcher.resume() }
            return Ticket(id: id, weight: weight, enqueuedAt: enqueuedAt)
        }
    }

    private func releaseLocked(weight: Int) {
        let released = self.state.withLock {
            locked -> (grants: Machine.Grants, used: Int, queued: Int, version: UInt64)? in
            if !locked.isFrozen {
                // Thawed since the word was read; nobody can freeze it while this lock is held.
                let isReleased = self.releaseInWord(weight: weight)
                precondition(isReleased, "a word thawed under the lock must take the release")
                return nil
            }
            let grants = locked.machine.release(weight: weight)
            let used = locked.machine.used
            let queued = locked.machine.queued
            self.thawIfIdle(&locked)
            locked.gaugeVersion += 1
            return (grants, used, queued, locked.gaugeVersion)
        }
        guard let released else { return }
        self.instruments.gauges?.update(
            version: released.version,
            used: released.used,
            queued: released.queued,
            capacity: self.capacity
        )
        if case .none = released.grants {} else { Self.resume(released.grants) }
    }

    /// A snapshot of the state and totals.
    func metrics() -> BulkheadMetrics {
        let (machine, word) = self.state.withLock { locked -> (Machine, UInt64?) in
            (locked.machine, locked.isFrozen ? nil : self.word.load(ordering: .relaxed))
        }
        // Not frozen: the word counts the units and nobody is queued.
        let used = word.map { Int(truncatingIfNeeded: $0 & (self.oneHolder &- 1)) } ?? machine.used
        let inFlight = word.map { Int(truncatingIfNeeded: $0 &>> self.usedBits) } ?? machine.inFlight
        return BulkheadMetrics(
            name: self.name,
            capacity: machine.capacity,
            used: used,
            inFlight: inFlight,
            queued: machine.queued,
            peakUsed: max(machine.peakUsed, self.fastPeak.load(ordering: .relaxed), used),
            admitted: machine.admitted + self.fastAdmitted.load(ordering: .relaxed),
            rejected: machine.rejected,
            timedOut: machine.timedOut,
            cancelled: machine.cancelled,
            waited: self.waitedCount.load(ordering: .relaxed),
            totalWaitTime: .nanoseconds(self.waitNanoseconds.load(ordering: .relaxed))
        )
    }

    /// Whether every acquisition and release takes the lock now (the word is frozen): while
    /// someone is queued, and always when the telemetry makes gauges. For tests.
    var isWordFrozen: Bool {
        self.state.withLock { $0.isFrozen }
    }

    /// Suspends until at least `count` waiters are queued at once: a handshake for tests, which
    /// may then cancel them, release units or advance the clock.
    func waitForQueued(count: Int) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let isReached = self.state.withLock { locked -> Bool in
                if locked.machine.queued >= count { return true }
                locked.queueWatchers.append((count, continuation))
                return false
            }
            if isReached { continuation.resume() }
        }
    }

    // MARK: Waiting

    /// Waits for the ticket's units; see ``acquire(weight:)``.
    @usableFromInline
    func wait(_ ticket: Ticket) async throws {
        let id = ticket.id
        let weight = ticket.weight
        let enqueuedAt = ticket.enqueuedAt
        let outcome = await withTaskCancellationHandler {
            await withUnsafeContinuation { (continuation: Waiter) in
                let action = self.state.withLock { $0.machine.park(id: id, waiter: continuation) }
                if case .resume(let outcome) = action {
                    continuation.resume(returning: outcome)
                }
            }
        } onCancel: {
            let (cancellation, used, queued, version) = self.state.withLock { locked in
                let cancellation = locked.machine.cancel(id: id)
                let used = locked.machine.used
                let queued = locked.machine.queued
                self.thawIfIdle(&locked)
                locked.gaugeVersion += 1
                return (cancellation, used, queued, locked.gaugeVersion)
            }
            self.instruments.gauges?.update(version: version, used: used, queued: queued, capacity: self.capacity)
            cancellation.waiter?.resume(returning: .cancelled)
            Self.resume(cancellation.grants)
        }
        switch outcome {
        case .granted:
            let waited = self.reader.now() - enqueuedAt
            self.waitedCount.wrappingAdd(1, ordering: .relaxed)
            self.waitNanoseconds.wrappingAdd(Self.nanoseconds(waited), ordering: .relaxed)
            self.instruments.events?.wait.record(waited)
            if Task.isCancelled {
                // Granted and cancelled at the same moment: pass the units on, run nothing.
                self.release(weight: weight)
                throw CancellationError()
            }
        case .timedOut:
            self.instruments.events?.timedOut.increment(by: 1)
            let now = self.reader.now()
            let message = "waited \(now - enqueuedAt) for \(weight) of \(self.capacity) \(self.unit)"
            self.instruments.rejections?.rejected(reason: "wait_timed_out", message: message, now: now)
            throw BulkheadError(code: .waitTimedOut, bulkhead: self.name, message: message)
        case .cancelled:
            throw CancellationError()
        }
    }

    private func rejectionError(
        _ rejection: BulkheadRejection,
        weight: Int,
        used: Int,
        queued: Int
    ) -> BulkheadError {
        let maxQueued = self.maxQueued
        let error: BulkheadError
        let reason: String
        switch rejection {
        case .queueFull:
            self.instruments.events?.queueFull.increment(by: 1)
            reason = "queue_full"
            error = BulkheadError(
                code: self.queueFullCode,
                bulkhead: self.name,
                message: "\(used) of \(self.capacity) \(self.unit) in use and \(queued) of \(maxQueued) waiters queued"
            )
        case .exceedsCapacity:
            self.instruments.events?.exceedsCapacity.increment(by: 1)
            reason = "exceeds_capacity"
            error = BulkheadError(
                code: .exceedsCapacity,
                bulkhead: self.name,
                message: "asked for \(weight) \(self.unit), more than the capacity of \(self.capacity)"
            )
        }
        self.instruments.rejections?.rejected(reason: reason, message: error.message, now: self.reader.now())
        return error
    }

    // MARK: Timer

    private func startTimer() {
        let clock = self.clock
        let reader = self.reader
        // Owned by this storage: cancelled in deinit; it holds the storage weakly and ends by
        // itself when the queue is empty.
        let task = TaskSpawner.spawn(executor: self.executor) { [weak self] in
            while let next = self?.expireDue(now: reader.now()) {
                let delay = next - reader.now()
                guard delay > .zero else { continue }
                do {
                    try await clock.sleep(for: delay)
                } catch {
                    self?.state.withLock { $0.machine.timerStopped() }
                    return
                }
            }
        }
        self.state.withLock { $0.timer = task }
    }

    /// Times out the due waiters; returns the next deadline, or `nil` when the timer must stop.
    private func expireDue(now: Duration) -> Duration? {
        let (expiry, used, queued, version) = self.state.withLock { locked in
            let expiry = locked.machine.expire(now: now)
            let used = locked.machine.used
            let queued = locked.machine.queued
            self.thawIfIdle(&locked)
            locked.gaugeVersion += 1
            return (expiry, used, queued, locked.gaugeVersion)
        }
        if !expiry.timedOut.isEmpty {
            self.instruments.gauges?.update(version: version, used: used, queued: queued, capacity: self.capacity)
        }
        for waiter in expiry.timedOut { waiter.resume(returning: .timedOut) }
        Self.resume(expiry.grants)
        return expiry.nextDeadline
    }

    private static func resume(_ grants: Machine.Grants) {
        switch grants {
        case .none:
            break
        case .one(let waiter):
            waiter.resume(returning: .granted)
        case .many(let waiters):
            for waiter in waiters { waiter.resume(returning: .granted) }
        }
    }

    private static func nanoseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}

/// 64 bytes that are never read or written: a cache line's worth of distance between the stored
/// properties around it.
private struct CacheLinePadding {
    private let bytes: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)
}
