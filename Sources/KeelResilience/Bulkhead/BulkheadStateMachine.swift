/// How a queued waiter's wait ended.
enum BulkheadWaitOutcome: Sendable, Equatable {
    /// The waiter now holds its permits.
    case granted
    /// The waiter reached its deadline and left the queue.
    case timedOut
    /// The waiter was cancelled and left the queue.
    case cancelled
}

/// Why an acquisition was refused at once.
enum BulkheadRejection: Sendable, Equatable {
    /// Waiting is needed and `maxQueued` waiters already wait.
    case queueFull
    /// The request is larger than the whole capacity: it could never be granted.
    case exceedsCapacity
}

/// The pure state of a weighted, FIFO, bounded semaphore: the units in use, the queue of waiters
/// and what happened to them.
///
/// A plain bulkhead asks for one unit per operation; a memory bulkhead asks for bytes. Every
/// method runs under the owner's lock, never suspends, and returns what the caller must do after
/// releasing it (resume waiters, start the timer).
///
/// Waiters are granted strictly in arrival order: a request that does not fit blocks the ones
/// behind it (head-of-line), so a large request is never starved by small ones. A waiter is in
/// the queue from the moment ``acquire(weight:now:)`` returns ``AcquireAction/enqueued(id:enqueuedAt:startTimer:)``,
/// before its continuation is parked; anything that resolves it in between (a grant, a
/// cancellation, a timeout) is remembered and handed to ``park(id:waiter:)``, so nothing is lost
/// and no permit leaks.
///
/// Every waiter of one machine waits at most the same `maxWait`, so deadlines grow in queue order
/// and the earliest deadline is always the head's: one timer serves the whole queue.
struct BulkheadStateMachine<Waiter> {
    enum AcquireAction: Equatable {
        /// The units are held; run.
        case acquired
        /// Refused at once.
        case rejected(BulkheadRejection)
        /// Queued: park with `id`; start the timer task if `startTimer`.
        case enqueued(id: UInt64, enqueuedAt: Duration, startTimer: Bool)
    }

    enum ParkAction {
        /// Keep the continuation: someone resumes it later.
        case parked
        /// Resolved before the waiter parked: resume it now with this outcome.
        case resume(BulkheadWaitOutcome)
    }

    /// Waiters that were granted their units and must be resumed with `.granted`.
    enum Grants {
        case none
        case one(Waiter)
        case many([Waiter])

        mutating func append(_ waiter: Waiter) {
            switch self {
            case .none: self = .one(waiter)
            case .one(let first): self = .many([first, waiter])
            case .many(var all):
                self = .none
                all.append(waiter)
                self = .many(all)
            }
        }

        var count: Int {
            switch self {
            case .none: 0
            case .one: 1
            case .many(let all): all.count
            }
        }
    }

    struct Cancellation {
        /// The cancelled waiter's continuation, if it had parked; resume it with `.cancelled`.
        var waiter: Waiter?
        /// Waiters its departure unblocked.
        var grants: Grants
    }

    struct Expiry {
        /// Waiters past their deadline; resume them with `.timedOut`.
        var timedOut: [Waiter]
        /// Waiters their departure unblocked.
        var grants: Grants
        /// The next deadline to wake at, or `nil` when the queue is empty and the timer stops.
        var nextDeadline: Duration?
    }

    private struct Entry {
        let id: UInt64
        let weight: Int
        let deadline: Duration?
        var waiter: Waiter?
        var isLive = true
    }

    /// The units available in total.
    let capacity: Int
    /// The most waiters that may queue.
    let maxQueued: Int
    /// How long a waiter may wait; `nil` for no limit.
    let maxWait: Duration?

    /// Units held now.
    private(set) var used = 0
    /// Holders now (operations or leases).
    private(set) var inFlight = 0
    /// Waiters in the queue now, parked or about to park.
    private(set) var queued = 0
    /// The most units ever held at once.
    private(set) var peakUsed = 0
    /// Acquisitions granted, at once or after waiting.
    private(set) var admitted = 0
    /// Acquisitions refused at once.
    private(set) var rejected = 0
    /// Waiters that reached `maxWait`.
    private(set) var timedOut = 0
    /// Waiters cancelled while queued.
    private(set) var cancelled = 0
    /// Whether a timer task is running for this queue.
    private(set) var isTimerRunning = false

    /// The queue; `entries[head...]`, with departed entries left as tombstones. Ids grow, so the
    /// array is sorted by id. Invariant: `head` is the index of the first live entry or the end.
    private var entries: [Entry] = []
    private var head = 0
    /// Outcomes for waiters resolved before they parked.
    private var early: [UInt64: BulkheadWaitOutcome] = [:]
    private var nextID: UInt64 = 0

    init(capacity: Int, maxQueued: Int, maxWait: Duration?) {
        precondition(capacity >= 1, "capacity must be at least 1, got \(capacity)")
        precondition(maxQueued >= 0, "maxQueued must not be negative, got \(maxQueued)")
        precondition(
            maxWait.map { $0 > .zero } ?? true,
            "maxWait must be positive or nil, got \(String(describing: maxWait))"
        )
        self.capacity = capacity
        self.maxQueued = maxQueued
        self.maxWait = maxWait
    }

    /// Units free now.
    var available: Int { self.capacity - self.used }

    /// Asks for `weight` units. `now` is read only when the caller must queue.
    mutating func acquire(weight: Int, now: () -> Duration) -> AcquireAction {
        precondition(weight >= 1, "weight must be at least 1, got \(weight)")
        if self.queued == 0 && self.used + weight <= self.capacity {
            self.take(weight)
            return .acquired
        }
        if weight > self.capacity {
            self.rejected += 1
            return .rejected(.exceedsCapacity)
        }
        if self.queued >= self.maxQueued {
            self.rejected += 1
            return .rejected(.queueFull)
        }
        let enqueuedAt = now()
        let id = self.nextID
        self.nextID &+= 1
        let deadline = self.maxWait.map { enqueuedAt + $0 }
        self.entries.append(Entry(id: id, weight: weight, deadline: deadline))
        self.queued += 1
        var startTimer = false
        if deadline != nil && !self.isTimerRunning {
            self.isTimerRunning = true
            startTimer = true
        }
        return .enqueued(id: id, enqueuedAt: enqueuedAt, startTimer: startTimer)
    }

    /// The waiter `id` is ready to be resumed by someone else.
    mutating func park(id: UInt64, waiter: Waiter) -> ParkAction {
        if let outcome = self.early.removeValue(forKey: id) {
            return .resume(outcome)
        }
        guard let index = self.index(of: id) else {
            preconditionFailure("parking unknown bulkhead waiter \(id); head \(self.head) of \(self.entries.count)")
        }
        self.entries[index].waiter = waiter
        return .parked
    }

    /// The waiter `id`'s task was cancelled. Does nothing if it was already granted or timed out.
    mutating func cancel(id: UInt64) -> Cancellation {
        guard let index = self.index(of: id) else {
            return Cancellation(waiter: nil, grants: .none)
        }
        let waiter = self.remove(at: index)
        self.cancelled += 1
        if waiter == nil {
            self.early[id] = .cancelled
        }
        let grants = self.grantWaiting()
        return Cancellation(waiter: waiter, grants: grants)
    }

    /// Returns `weight` units held by one holder and grants them on in queue order.
    mutating func release(weight: Int) -> Grants {
        precondition(
            self.used >= weight && self.inFlight >= 1,
            "releasing \(weight) units with \(self.used) used by \(self.inFlight) holders"
        )
        self.used -= weight
        self.inFlight -= 1
        if self.queued == 0 { return .none }
        return self.grantWaiting()
    }

    /// Times out every waiter whose deadline is at or before `now`, and says when to look again.
    mutating func expire(now: Duration) -> Expiry {
        var timedOut: [Waiter] = []
        while self.head < self.entries.count, let deadline = self.entries[self.head].deadline, deadline <= now {
            let id = self.entries[self.head].id
            if let waiter = self.remove(at: self.head) {
                timedOut.append(waiter)
            } else {
                self.early[id] = .timedOut
            }
            self.timedOut += 1
        }
        let grants = timedOut.isEmpty ? Grants.none : self.grantWaiting()
        let next = self.head < self.entries.count ? self.entries[self.head].deadline : nil
        if next == nil {
            self.isTimerRunning = false
        }
        return Expiry(timedOut: timedOut, grants: grants, nextDeadline: next)
    }

    /// The timer task ended without emptying the queue (it was cancelled).
    mutating func timerStopped() {
        self.isTimerRunning = false
    }

    /// Takes over the units held outside the machine: `used` units held by `inFlight` holders.
    ///
    /// The owner's lock-free path (see `BulkheadStorage`) counts the holders of an idle queue in
    /// an atomic word, not here; before the machine decides again (someone must queue), the
    /// owner stops that path and hands the machine the word's figures. Only while nobody is
    /// queued. The totals (``admitted``, ``peakUsed``) keep counting only what the machine
    /// grants; ``peakUsed`` takes `used` if it is higher.
    mutating func adopt(used: Int, inFlight: Int) {
        precondition(self.queued == 0, "adopting holders with \(self.queued) waiters queued")
        precondition(
            used >= 0 && used <= self.capacity && inFlight >= 0 && inFlight <= used,
            "adopting \(used) units held by \(inFlight) holders, capacity \(self.capacity)"
        )
        self.used = used
        self.inFlight = inFlight
        if used > self.peakUsed { self.peakUsed = used }
    }

    // MARK: Internals

    private mutating func take(_ weight: Int) {
        self.used += weight
        self.inFlight += 1
        self.admitted += 1
        if self.used > self.peakUsed { self.peakUsed = self.used }
    }

    /// Grants queued waiters from the head while their requests fit.
    private mutating func grantWaiting() -> Grants {
        var grants = Grants.none
        while self.head < self.entries.count, self.used + self.entries[self.head].weight <= self.capacity {
            let id = self.entries[self.head].id
            self.take(self.entries[self.head].weight)
            if let waiter = self.remove(at: self.head) {
                grants.append(waiter)
            } else {
                self.early[id] = .granted
            }
        }
        return grants
    }

    /// The index of the live entry `id`, or `nil` if it has left the queue.
    private func index(of id: UInt64) -> Int? {
        var low = self.head
        var high = self.entries.count
        while low < high {
            let middle = (low + high) / 2
            if self.entries[middle].id < id { low = middle + 1 } else { high = middle }
        }
        guard low < self.entries.count, self.entries[low].id == id, self.entries[low].isLive else { return nil }
        return low
    }

    /// Removes a live entry, keeping the head invariant and the storage compact.
    private mutating func remove(at index: Int) -> Waiter? {
        let waiter = self.entries[index].waiter
        self.entries[index].waiter = nil
        self.entries[index].isLive = false
        self.queued -= 1
        while self.head < self.entries.count && !self.entries[self.head].isLive {
            self.head += 1
        }
        if self.head == self.entries.count {
            self.entries.removeAll(keepingCapacity: true)
            self.head = 0
        } else if self.entries.count - self.head > 2 * self.queued + 64 {
            // Tombstones behind a stuck head: keep only the live entries.
            self.entries = self.entries[self.head...].filter(\.isLive)
            self.head = 0
        } else if self.head > 64 && self.head * 2 > self.entries.count {
            self.entries.removeFirst(self.head)
            self.head = 0
        }
        return waiter
    }
}
