/// The permits of a bucketed sliding window: how many were granted in each bucket of `width`, for
/// the buckets that still count.
///
/// Time is cut into buckets of `width` from the limiter's creation: bucket `k` spans
/// `[k * width, (k + 1) * width)`. A permit granted in bucket `k` counts until the end of its
/// bucket plus the window, `(k + buckets + 1) * width`: never less than `window` after it was
/// granted, and at most `width` more. So at most `limit` permits are granted in any span of
/// `window`, exactly as with a log, while the memory is one count per bucket.
///
/// The counts sit in a ring of `buckets + 1` slots, the bucket with index `k` in slot
/// `k mod (buckets + 1)`, covering the buckets `newest - buckets ... newest`. Buckets newer than
/// `newest` are empty. Reading at a time in bucket `current` discards the `current - newest`
/// oldest buckets without writing; taking permits writes the discarded slots to zero as it moves
/// `newest` on, so a reading or a grant costs a step per bucket that aged out since the last
/// grant (at most `buckets + 1`), and a wait's due time a walk over the buckets. All arithmetic is
/// exact, in attoseconds.
///
/// Times are offsets from the limiter's creation and normally only grow, but two callers may
/// read the clock in one order and take the lock in the other: a time in a bucket before
/// `newest` is then treated as a time in `newest`, which counts its permits a little longer, never
/// shorter.
struct RateLimiterWindowCounter: Sendable {
    /// The most permits counted at once.
    let limit: Int
    /// The width of one bucket, in attoseconds; positive.
    private let width: Int128
    /// Permits granted per bucket, a ring of `buckets + 1` slots.
    private var counts: [Int]
    /// The index of the newest bucket in the ring.
    private var newest: Int128
    /// The sum of `counts`.
    private var total: Int

    /// An empty window of `limit` permits per `window`, cut into `buckets` buckets of
    /// `window / buckets` (rounded down to the attosecond).
    init(limit: Int, window: Duration, buckets: Int) {
        precondition(limit >= 1, "limit must be at least 1, got \(limit)")
        precondition(buckets >= 1, "buckets must be at least 1, got \(buckets)")
        let width = window.attoseconds / Int128(buckets)
        precondition(width > 0, "window / buckets must be positive, got \(window) / \(buckets)")
        self.limit = limit
        self.width = width
        self.counts = Array(repeating: 0, count: buckets + 1)
        self.newest = 0
        self.total = 0
    }

    /// The number of buckets in the window.
    var buckets: Int { self.counts.count - 1 }

    /// The permits counted at `now`.
    func used(now: Duration) -> Int {
        self.used(inBucket: self.current(now))
    }

    /// The permits that could be taken at `now`.
    func available(now: Duration) -> Int {
        self.limit - self.used(now: now)
    }

    /// The earliest time at or after `now` when `permits` (at most `limit`) can be taken: `now`
    /// if they fit, else the moment enough of the oldest buckets have aged out.
    func readyTime(permits: Int, now: Duration) -> Duration {
        let current = self.current(now)
        var excess = self.used(inBucket: current) + permits - self.limit
        if excess <= 0 { return now }
        var index = current - Int128(self.buckets)
        while index <= self.newest {
            excess -= self.counts[self.slot(index)]
            if excess <= 0 { return self.start(ofBucket: index + Int128(self.buckets) + 1) }
            index += 1
        }
        preconditionFailure("bucketed window cannot fit \(permits) permits: \(self)")
    }

    /// Takes `permits` at `now`; the caller checked that they are ready.
    mutating func take(permits: Int, at now: Duration) {
        let current = self.current(now)
        if current > self.newest {
            self.advance(to: current)
        }
        self.counts[self.slot(self.newest)] += permits
        self.total += permits
    }

    /// Gives back `permits` taken at `takenAt`.
    ///
    /// They were counted in the bucket of `takenAt` or, if the clock was read late, a later one;
    /// they are taken from the bucket of `takenAt` first, then from the next ones. Taking from an
    /// earlier bucket than the grant's only makes other permits leave sooner and these later, so
    /// the window never counts less than it should.
    mutating func refund(permits: Int, takenAt: Duration) {
        var remaining = permits
        var index = max(self.bucket(of: takenAt), self.newest - Int128(self.buckets))
        while remaining > 0 && index <= self.newest {
            let slot = self.slot(index)
            let given = min(self.counts[slot], remaining)
            self.counts[slot] -= given
            self.total -= given
            remaining -= given
            index += 1
        }
    }

    /// The bucket that `now` is counted in: its own, or `newest` if that is later.
    private func current(_ now: Duration) -> Int128 {
        max(self.bucket(of: now), self.newest)
    }

    /// The permits counted in the buckets live while the time is in bucket `current`
    /// (`current >= newest`): those from `current - buckets` on.
    private func used(inBucket current: Int128) -> Int {
        let aged = current - self.newest
        if aged > Int128(self.buckets) { return 0 }
        var used = self.total
        var index = self.newest - Int128(self.buckets)
        for _ in 0..<Int(aged) {
            used -= self.counts[self.slot(index)]
            index += 1
        }
        return used
    }

    /// Moves `newest` on to `current`, emptying the slots of the buckets that aged out.
    private mutating func advance(to current: Int128) {
        if current - self.newest > Int128(self.buckets) {
            for slot in self.counts.indices { self.counts[slot] = 0 }
            self.total = 0
        } else {
            var index = self.newest + 1
            while index <= current {
                // Bucket `index` takes the slot of `index - buckets - 1`, which has aged out.
                let slot = self.slot(index)
                self.total -= self.counts[slot]
                self.counts[slot] = 0
                index += 1
            }
        }
        self.newest = current
    }

    /// The index of the bucket that holds `time`, rounding down for times before the start.
    private func bucket(of time: Duration) -> Int128 {
        let attoseconds = time.attoseconds
        let quotient = attoseconds / self.width
        return attoseconds < 0 && attoseconds % self.width != 0 ? quotient - 1 : quotient
    }

    /// The time bucket `index` begins.
    private func start(ofBucket index: Int128) -> Duration {
        Duration(attoseconds: index * self.width)
    }

    /// The ring slot of bucket `index`.
    private func slot(_ index: Int128) -> Int {
        let size = Int128(self.counts.count)
        let remainder = index % size
        return Int(remainder < 0 ? remainder + size : remainder)
    }
}
