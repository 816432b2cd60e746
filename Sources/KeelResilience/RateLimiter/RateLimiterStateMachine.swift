/// The pure state of a rate limiter: the permits of its algorithm and its FIFO queue of waiters.
///
/// Times are offsets from the limiter's creation on its clock. The first waiter in the queue (the
/// head) sleeps on the clock until its permits are due; the others park on a continuation until
/// they are granted or become the head. A waiter is admitted only if fewer than `maxQueued` wait
/// and, with everyone ahead of it served in order, its permits come due within `maxWait`; a waiter
/// that leaves only makes the others' turn come sooner (and frees its place in the queue), so no
/// waiter needs a timer of its own.
struct RateLimiterStateMachine {
    /// What a waiter does next.
    enum Instruction: Sendable, Equatable {
        /// The permits were taken at this offset: go ahead.
        case granted(at: Duration)
        /// You are the head: sleep until this offset, then call ``headWoke(id:now:)``.
        case sleep(until: Duration)
    }

    /// What ``acquire(permits:now:maxWait:maxQueued:)`` decided.
    enum AcquireAction: Equatable {
        case granted
        case rejected(wait: Duration?)
        case exceedsCapacity
        case queueFull
        case enqueued(id: UInt64, Instruction?)
    }

    /// A continuation to resume, after the lock is released.
    struct Resumption {
        let continuation: CheckedContinuation<Instruction, any Error>
        let result: Result<Instruction, any Error>

        func resume() {
            self.continuation.resume(with: self.result)
        }
    }

    private struct Waiter {
        let id: UInt64
        let permits: Int
        var continuation: CheckedContinuation<Instruction, any Error>?
    }

    private(set) var algorithm: RateLimiterAlgorithmState
    private var queue: [Waiter] = []
    /// Instructions for waiters that were promoted before they parked their continuation.
    private var early: [UInt64: Instruction] = [:]
    private var nextID: UInt64 = 0

    init(algorithm: RateLimiterAlgorithmState) {
        self.algorithm = algorithm
    }

    var queued: Int { self.queue.count }

    func available(now: Duration) -> Int {
        self.algorithm.available(now: now)
    }

    /// A caller asks for `permits` at `now`. It may wait up to `maxWait` (`nil`: without limit)
    /// behind fewer than `maxQueued` others (`nil`: any number).
    mutating func acquire(
        permits: Int,
        now: Duration,
        maxWait: Duration?,
        maxQueued: Int? = nil
    ) -> AcquireAction {
        guard permits <= self.algorithm.capacity else { return .exceedsCapacity }
        if self.queue.isEmpty && self.algorithm.readyTime(permits: permits, now: now) <= now {
            self.algorithm.take(permits: permits, at: now)
            return .granted
        }
        if maxWait == .zero { return .rejected(wait: nil) }
        if let maxQueued, self.queue.count >= maxQueued { return .queueFull }
        let due = self.dueTime(permits: permits, now: now)
        if let maxWait, due - now > maxWait { return .rejected(wait: due - now) }
        let id = self.nextID
        self.nextID += 1
        self.queue.append(Waiter(id: id, permits: permits, continuation: nil))
        return .enqueued(id: id, self.queue.count == 1 ? .sleep(until: due) : nil)
    }

    /// A parked waiter stores its continuation; the returned resumption must be performed at once.
    mutating func park(
        id: UInt64,
        continuation: CheckedContinuation<Instruction, any Error>
    ) -> Resumption? {
        if let instruction = self.early.removeValue(forKey: id) {
            return Resumption(continuation: continuation, result: .success(instruction))
        }
        guard let index = self.queue.firstIndex(where: { $0.id == id }) else {
            return Resumption(continuation: continuation, result: .failure(CancellationError()))
        }
        self.queue[index].continuation = continuation
        return nil
    }

    /// The head's sleep ended at `now`. Returns its own instruction (or `nil` if it was cancelled
    /// meanwhile) and the waiters to resume.
    mutating func headWoke(id: UInt64, now: Duration) -> (Instruction?, [Resumption]) {
        guard let head = self.queue.first, head.id == id else { return (nil, []) }
        let ready = self.algorithm.readyTime(permits: head.permits, now: now)
        guard ready <= now else { return (.sleep(until: ready), []) }
        self.algorithm.take(permits: head.permits, at: now)
        self.queue.removeFirst()
        return (.granted(at: now), self.promote(now: now))
    }

    /// The waiter `id` was cancelled. Returns the waiters to resume, its own parked continuation
    /// (with `CancellationError`) among them.
    mutating func cancel(id: UInt64, now: Duration) -> [Resumption] {
        guard let index = self.queue.firstIndex(where: { $0.id == id }) else { return [] }
        let waiter = self.queue.remove(at: index)
        var resumptions: [Resumption] = []
        if let continuation = waiter.continuation {
            resumptions.append(Resumption(continuation: continuation, result: .failure(CancellationError())))
        }
        if index == 0 {
            resumptions += self.promote(now: now)
        }
        return resumptions
    }

    /// A granted waiter gives its permits back (it was cancelled as it was granted).
    mutating func refund(permits: Int, takenAt: Duration) {
        self.algorithm.refund(permits: permits, takenAt: takenAt)
    }

    /// Grants every waiter at the front whose permits are ready; the first that is not becomes
    /// the head and is told when to wake.
    private mutating func promote(now: Duration) -> [Resumption] {
        var resumptions: [Resumption] = []
        while let next = self.queue.first {
            let ready = self.algorithm.readyTime(permits: next.permits, now: now)
            let granted = ready <= now
            let instruction: Instruction
            if granted {
                self.algorithm.take(permits: next.permits, at: now)
                self.queue.removeFirst()
                instruction = .granted(at: now)
            } else {
                instruction = .sleep(until: ready)
                // The new head is told once; it is no longer parked.
                self.queue[0].continuation = nil
            }
            if let continuation = next.continuation {
                resumptions.append(Resumption(continuation: continuation, result: .success(instruction)))
            } else {
                self.early[next.id] = instruction
            }
            if !granted { break }
        }
        return resumptions
    }

    /// When `permits` would be granted to a new waiter if everyone queued is served first, in order.
    private func dueTime(permits: Int, now: Duration) -> Duration {
        var simulation = self.algorithm
        var cursor = now
        for waiter in self.queue {
            cursor = simulation.readyTime(permits: waiter.permits, now: cursor)
            simulation.take(permits: waiter.permits, at: cursor)
        }
        return simulation.readyTime(permits: permits, now: cursor)
    }
}

/// The permits of one of the algorithms, in exact `Duration` arithmetic.
enum RateLimiterAlgorithmState: Sendable {
    /// A token bucket kept as GCRA's "theoretical arrival time": the bucket is full when `tat` is
    /// at or before now, and each token moves `tat` on by `cost`.
    case tokenBucket(capacity: Int, cost: Duration, tat: Duration)
    /// A sliding log of grants, oldest first; a grant counts until `window` after it was made.
    case slidingWindow(limit: Int, window: Duration, log: [(time: Duration, permits: Int)])
    /// A count of grants per bucket; a grant counts until `window` after the end of its bucket.
    case slidingWindowCounter(RateLimiterWindowCounter)

    var capacity: Int {
        switch self {
        case .tokenBucket(let capacity, _, _): capacity
        case .slidingWindow(let limit, _, _): limit
        case .slidingWindowCounter(let counter): counter.limit
        }
    }

    /// The permits that could be taken at `now`.
    func available(now: Duration) -> Int {
        switch self {
        case .tokenBucket(let capacity, let cost, let tat):
            let debt = max(tat, now) - now
            return capacity - Int((debt / cost).rounded(.up))
        case .slidingWindow(let limit, let window, let log):
            return limit - log.lazy.filter { $0.time + window > now }.reduce(0) { $0 + $1.permits }
        case .slidingWindowCounter(let counter):
            return counter.available(now: now)
        }
    }

    /// The earliest time at or after `now` when `permits` (at most the capacity) can be taken.
    func readyTime(permits: Int, now: Duration) -> Duration {
        switch self {
        case .tokenBucket(let capacity, let cost, let tat):
            return max(now, tat + cost * (permits - capacity))
        case .slidingWindow(let limit, let window, let log):
            var used = 0
            for entry in log where entry.time + window > now {
                used += entry.permits
            }
            var excess = used + permits - limit
            if excess <= 0 { return now }
            for entry in log where entry.time + window > now {
                excess -= entry.permits
                if excess <= 0 { return entry.time + window }
            }
            preconditionFailure("sliding window cannot fit \(permits) permits: \(self)")
        case .slidingWindowCounter(let counter):
            return counter.readyTime(permits: permits, now: now)
        }
    }

    /// Takes `permits` at `now`; the caller checked that they are ready.
    mutating func take(permits: Int, at now: Duration) {
        // `consume` hands the payload over, so that an array in it is mutated in place, not copied.
        switch consume self {
        case .tokenBucket(let capacity, let cost, let tat):
            self = .tokenBucket(capacity: capacity, cost: cost, tat: max(tat, now) + cost * permits)
        case .slidingWindow(let limit, let window, var log):
            log.removeAll { $0.time + window <= now }
            log.append((now, permits))
            self = .slidingWindow(limit: limit, window: window, log: log)
        case .slidingWindowCounter(var counter):
            counter.take(permits: permits, at: now)
            self = .slidingWindowCounter(counter)
        }
    }

    /// Gives back `permits` taken at `takenAt`.
    mutating func refund(permits: Int, takenAt: Duration) {
        switch consume self {
        case .tokenBucket(let capacity, let cost, let tat):
            self = .tokenBucket(capacity: capacity, cost: cost, tat: tat - cost * permits)
        case .slidingWindow(let limit, let window, var log):
            if let index = log.lastIndex(where: { $0.time == takenAt && $0.permits == permits }) {
                log.remove(at: index)
            }
            self = .slidingWindow(limit: limit, window: window, log: log)
        case .slidingWindowCounter(var counter):
            counter.refund(permits: permits, takenAt: takenAt)
            self = .slidingWindowCounter(counter)
        }
    }
}
