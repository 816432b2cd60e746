/// The recent calls a closed breaker's rates are computed over: count-based (the last N calls,
/// a ring of outcomes) or time-based (the last T, in fixed buckets). Fixed memory, O(1) per
/// record amortized. A pure value: no locks, no clock; time comes in as an offset.
///
/// A time-based window of `buckets` buckets of width `w = T / buckets` keeps `buckets + 1` of
/// them: the current, partly elapsed one and the `buckets` before it. A bucket `[s, s + w)` is
/// dropped once `now >= s + w + T` — once all of it is at least `T` old — so a call counts for at
/// least `T` and less than `T + w` after it was recorded.
struct CircuitBreakerSlidingWindow: Sendable {
    /// What the window holds now.
    struct Totals: Sendable, Equatable {
        var calls = 0
        var failures = 0
        var slowCalls = 0
        /// The slow calls that also failed.
        var slowFailures = 0
    }

    private struct Bucket: Sendable {
        var epoch: Int64 = .min
        var totals = Totals()
    }

    /// Count-based: one byte per call (bit 0 failure, bit 1 slow), `next` the oldest once full.
    private var ring: [UInt8] = []
    private var next = 0
    private let capacity: Int
    /// Time-based: `buckets` of `bucketNanoseconds`; `nil` for a count-based window.
    private var buckets: [Bucket] = []
    private let bucketNanoseconds: Int64?
    private var currentEpoch: Int64 = .min
    private(set) var totals = Totals()

    /// Whether the window counts the last N calls (and so needs no time to record one).
    var isCountBased: Bool { self.bucketNanoseconds == nil }

    /// The calls a count-based window holds once full; the buckets of a time-based one.
    var size: Int { self.capacity }

    init(_ window: CircuitBreaker.Configuration.Window) {
        switch window.base {
        case .count(let size):
            self.capacity = size
            self.bucketNanoseconds = nil
            self.ring.reserveCapacity(size)
        case .time(let duration, let buckets):
            self.capacity = buckets
            self.bucketNanoseconds = max(Self.nanoseconds(duration / buckets), 1)
            // One more than `buckets`: the current bucket is only partly elapsed.
            self.buckets = Array(repeating: Bucket(), count: buckets + 1)
        }
    }

    /// Records one call that was a failure or not, slow or not, at `now`; `now` is evaluated only
    /// by a time-based window.
    mutating func record(isFailure: Bool, isSlow: Bool, now: @autoclosure () -> Duration) {
        if self.bucketNanoseconds != nil {
            let index = self.advance(to: now())
            self.buckets[index].totals.calls += 1
            if isFailure { self.buckets[index].totals.failures += 1 }
            if isSlow { self.buckets[index].totals.slowCalls += 1 }
            if isSlow && isFailure { self.buckets[index].totals.slowFailures += 1 }
        } else {
            let flags: UInt8 = (isFailure ? 1 : 0) | (isSlow ? 2 : 0)
            if self.ring.count < self.capacity {
                self.ring.append(flags)
            } else {
                let evicted = self.ring[self.next]
                self.totals.calls -= 1
                if evicted & 1 != 0 { self.totals.failures -= 1 }
                if evicted & 2 != 0 { self.totals.slowCalls -= 1 }
                if evicted & 3 == 3 { self.totals.slowFailures -= 1 }
                self.ring[self.next] = flags
                self.next = self.next + 1 == self.capacity ? 0 : self.next + 1
            }
        }
        self.totals.calls += 1
        if isFailure { self.totals.failures += 1 }
        if isSlow { self.totals.slowCalls += 1 }
        if isSlow && isFailure { self.totals.slowFailures += 1 }
    }

    /// What the window holds at `now`: a time-based window first forgets buckets that aged out.
    mutating func totals(at now: Duration) -> Totals {
        if self.bucketNanoseconds != nil {
            _ = self.advance(to: now)
        }
        return self.totals
    }

    /// Forgets every call.
    mutating func removeAll() {
        self.totals = Totals()
        self.ring.removeAll(keepingCapacity: true)
        self.next = 0
        for index in self.buckets.indices {
            self.buckets[index] = Bucket()
        }
        self.currentEpoch = .min
    }

    /// Moves a time-based window to the bucket of `now`, clearing the buckets it passes.
    /// - Returns: The index of `now`'s bucket.
    private mutating func advance(to now: Duration) -> Int {
        let width = self.bucketNanoseconds ?? 1
        let epoch = Self.nanoseconds(now) / width
        let count = Int64(self.buckets.count)
        if epoch > self.currentEpoch {
            // Clear every bucket whose epoch is no longer inside the window; at most all of them.
            let first =
                self.currentEpoch == .min ? epoch - count + 1 : max(self.currentEpoch + 1, epoch - count + 1)
            for passed in first...epoch {
                let index = Int(((passed % count) + count) % count)
                let old = self.buckets[index]
                if old.epoch != passed {
                    if old.epoch != .min {
                        self.totals.calls -= old.totals.calls
                        self.totals.failures -= old.totals.failures
                        self.totals.slowCalls -= old.totals.slowCalls
                        self.totals.slowFailures -= old.totals.slowFailures
                    }
                    self.buckets[index] = Bucket(epoch: passed, totals: Totals())
                }
            }
            self.currentEpoch = epoch
        }
        return Int(((epoch % count) + count) % count)
    }

    /// `duration` in whole nanoseconds, saturating.
    static func nanoseconds(_ duration: Duration) -> Int64 {
        let components = duration.components
        let (product, overflow) = components.seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return components.seconds < 0 ? .min : .max }
        return product &+ components.attoseconds / 1_000_000_000
    }
}
