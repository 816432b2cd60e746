import KeelCore
import Synchronization

/// A limit on retries shared by many calls: retries may be at most a fraction of the calls made
/// over a recent window, plus a small allowance, so that a failing dependency sees a bounded
/// amount of extra load instead of a retry storm.
///
/// Without a budget, every caller of a dependency that starts failing retries up to its maximum
/// attempts, multiplying the load on it exactly when it is weakest. With a budget of ratio 0.2,
/// the retries of all the calls that share it add at most 20 % (plus
/// ``Configuration/minimumRetries``) to the load, whatever the number of attempts each retry
/// allows. This is Finagle's retry budget, as gRPC's retry throttling also does.
///
/// Share one budget among every ``Retry`` that calls the same dependency:
///
/// ```swift
/// let budget = RetryBudget(configuration: .init(ratio: 0.1, minimumRetries: 5))
/// let retry = Retry(configuration: .init(maxAttempts: 4, budget: budget))
/// ```
///
/// ## Concurrency contract
/// `RetryBudget` is `Sendable`. Its counters sit in a `Mutex` that is held for a few
/// instructions; ``recordCall()`` and ``tryRetry()`` never suspend. Time comes from the injected
/// clock: the window is divided into ``Configuration/buckets`` buckets and a whole bucket ages
/// out at once.
public final class RetryBudget: Sendable {
    /// The limits it was made with.
    public let configuration: Configuration

    private let reader: ClockReader
    private let state: Lock<RetryBudgetWindow>

    /// Creates a budget.
    /// - Parameters:
    ///   - configuration: The ratio, allowance and window; checked with `precondition`.
    ///   - clock: The clock that ages the window; `ContinuousClock` by default.
    public init(configuration: Configuration = Configuration(), clock: any Clock<Duration> = ContinuousClock()) {
        configuration.validate()
        self.configuration = configuration
        self.reader = ClockReader(clock)
        self.state = Lock(RetryBudgetWindow(buckets: configuration.buckets))
    }

    /// Counts one call (a first attempt). Never suspends.
    public func recordCall() {
        let now = self.reader.now()
        self.state.withLock { window in
            window.advance(to: self.bucket(at: now))
            window.addCall()
        }
    }

    /// Takes one retry from the budget if the window allows it.
    ///
    /// A retry is allowed while the retries in the window are fewer than
    /// `minimumRetries + ratio × calls`. Never suspends.
    /// - Returns: `true` if the retry may go ahead (and was counted), `false` if the budget is
    ///   spent.
    public func tryRetry() -> Bool {
        let now = self.reader.now()
        return self.state.withLock { window in
            window.advance(to: self.bucket(at: now))
            let allowed =
                Double(window.retries)
                < Double(self.configuration.minimumRetries) + self.configuration.ratio * Double(window.calls)
            if allowed {
                window.addRetry()
            } else {
                window.refused += 1
            }
            return allowed
        }
    }

    /// A snapshot of the window: calls and retries counted in it, and the retries refused since
    /// the budget was made. Takes the lock briefly.
    public var snapshot: Snapshot {
        let now = self.reader.now()
        return self.state.withLock { window in
            window.advance(to: self.bucket(at: now))
            return Snapshot(calls: window.calls, retries: window.retries, refused: window.refused)
        }
    }

    /// What a ``RetryBudget`` has counted.
    public struct Snapshot: Sendable, Hashable {
        /// Calls (first attempts) in the current window.
        public var calls: Int
        /// Retries allowed in the current window.
        public var retries: Int
        /// Retries refused since the budget was made.
        public var refused: Int
    }

    private func bucket(at elapsed: Duration) -> Int {
        let width = self.configuration.window / self.configuration.buckets
        return Int((elapsed / width).rounded(.down))
    }
}

/// The counters of a retry budget: a ring of buckets, each covering `window / buckets`.
struct RetryBudgetWindow: Sendable {
    private var callsPerBucket: [Int]
    private var retriesPerBucket: [Int]
    /// The absolute number of the newest bucket.
    private var current = 0
    private(set) var calls = 0
    private(set) var retries = 0
    var refused = 0

    init(buckets: Int) {
        self.callsPerBucket = Array(repeating: 0, count: buckets)
        self.retriesPerBucket = Array(repeating: 0, count: buckets)
    }

    /// Moves the window so that `bucket` is the newest, clearing buckets that aged out.
    mutating func advance(to bucket: Int) {
        guard bucket > self.current else { return }
        let count = self.callsPerBucket.count
        let steps = min(bucket - self.current, count)
        for step in 1...steps {
            let slot = (self.current + step) % count
            self.calls -= self.callsPerBucket[slot]
            self.retries -= self.retriesPerBucket[slot]
            self.callsPerBucket[slot] = 0
            self.retriesPerBucket[slot] = 0
        }
        self.current = bucket
    }

    mutating func addCall() {
        self.callsPerBucket[self.current % self.callsPerBucket.count] += 1
        self.calls += 1
    }

    mutating func addRetry() {
        self.retriesPerBucket[self.current % self.retriesPerBucket.count] += 1
        self.retries += 1
    }
}
