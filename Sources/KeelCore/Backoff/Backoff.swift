/// How long a retry waits before each new attempt: a pure, repeatable schedule of delays.
///
/// `Backoff` is Keel's one schedule for every kind of retry: KeelResilience's `Retry`, the event
/// bus's redelivery of an event whose handler failed (`RedeliveryPolicy`), a projection's
/// attempts at an event (`ProjectionRunner.Configuration`) and a command's attempts after an
/// optimistic-concurrency conflict (`ConflictRetry`). Each draws its jitter from the
/// ``RandomSource`` of the component that retries.
///
/// A `Backoff` is a value; ``makeDelays(using:)`` turns it into ``Delays``, an endless sequence
/// of durations whose first element is the wait before the second attempt. The schedule depends
/// only on the backoff and on the values drawn from the ``RandomSource`` it is given,
/// so a seeded source gives the same delays every time (the model is grpc-swift's
/// `RetryDelaySequence`).
///
/// Four shapes, each capped by a maximum:
/// - ``constant(_:)``: the same delay every time (``immediate`` is `constant(.zero)`);
/// - ``linear(initial:increment:maximum:)``: `initial`, `initial + increment`, …;
/// - ``exponential(initial:multiplier:maximum:jitter:)``: `initial × multiplierⁿ`, optionally with
///   full jitter (a uniform draw between zero and that value);
/// - ``decorrelatedJitter(base:maximum:)``: AWS's decorrelated jitter, each delay a uniform draw
///   between `base` and three times the previous delay.
///
/// ```swift
/// var delays = Backoff.exponential(initial: .milliseconds(100), maximum: .seconds(2), jitter: false)
///     .makeDelays(using: RandomSource(seed: 1))
/// delays.next()  // 100 ms, then 200 ms, 400 ms, 800 ms, 1.6 s, 2 s, 2 s, …
/// ```
///
/// `Backoff` is a `Sendable` value; the set of shapes may grow, so match on none of them.
public struct Backoff: Sendable, Hashable, CustomStringConvertible {
    enum Kind: Sendable, Hashable {
        case constant(Duration)
        case linear(initial: Duration, increment: Duration, maximum: Duration)
        case exponential(initial: Duration, multiplier: Double, maximum: Duration, jitter: Bool)
        case decorrelatedJitter(base: Duration, maximum: Duration)
    }

    let kind: Kind

    private init(_ kind: Kind) {
        self.kind = kind
    }

    /// No delay: every retry starts at once. The same as `constant(.zero)`.
    public static let immediate = Backoff(.constant(.zero))

    /// The same delay before every retry.
    /// - Parameter delay: The delay; not negative. `.zero` retries at once (``immediate``).
    /// - Returns: The backoff.
    public static func constant(_ delay: Duration) -> Backoff {
        precondition(delay >= .zero, "delay must not be negative, got \(delay)")
        return Backoff(.constant(delay))
    }

    /// A delay that grows by the same amount before each retry, up to `maximum`.
    ///
    /// The n-th delay (from zero) is `min(maximum, initial + n × increment)`.
    /// - Parameters:
    ///   - initial: The first delay; not negative.
    ///   - increment: What each later delay adds; not negative.
    ///   - maximum: The cap; at least `initial`.
    /// - Returns: The backoff.
    public static func linear(initial: Duration, increment: Duration, maximum: Duration) -> Backoff {
        precondition(initial >= .zero, "initial must not be negative, got \(initial)")
        precondition(increment >= .zero, "increment must not be negative, got \(increment)")
        precondition(maximum >= initial, "maximum (\(maximum)) must be at least initial (\(initial))")
        return Backoff(.linear(initial: initial, increment: increment, maximum: maximum))
    }

    /// A delay that is multiplied before each retry, up to `maximum`, with optional full jitter.
    ///
    /// The n-th cap (from zero) is `min(maximum, initial × multiplierⁿ)`. Without jitter that cap
    /// is the delay; with jitter the delay is a uniform draw in `0 ..< cap` (AWS's "full jitter",
    /// as gRPC does), which spreads the retries of many clients that failed together.
    /// - Parameters:
    ///   - initial: The first cap; positive.
    ///   - multiplier: The growth factor; at least 1. Default 2.
    ///   - maximum: The largest cap; at least `initial`.
    ///   - jitter: Whether to draw each delay uniformly below its cap. Default `true`.
    /// - Returns: The backoff.
    public static func exponential(
        initial: Duration,
        multiplier: Double = 2,
        maximum: Duration,
        jitter: Bool = true
    ) -> Backoff {
        precondition(initial > .zero, "initial must be positive, got \(initial)")
        precondition(
            multiplier >= 1 && multiplier.isFinite,
            "multiplier must be finite and at least 1, got \(multiplier)"
        )
        precondition(maximum >= initial, "maximum (\(maximum)) must be at least initial (\(initial))")
        return Backoff(.exponential(initial: initial, multiplier: multiplier, maximum: maximum, jitter: jitter))
    }

    /// AWS's decorrelated jitter: each delay is drawn uniformly between `base` and three times
    /// the previous delay (the first "previous" is `base`), capped at `maximum`.
    ///
    /// Delays grow roughly exponentially while staying spread out, and a long delay is not always
    /// followed by a longer one.
    /// - Parameters:
    ///   - base: The smallest delay; positive.
    ///   - maximum: The cap; at least `base`.
    /// - Returns: The backoff.
    public static func decorrelatedJitter(base: Duration, maximum: Duration) -> Backoff {
        precondition(base > .zero, "base must be positive, got \(base)")
        precondition(maximum >= base, "maximum (\(maximum)) must be at least base (\(base))")
        return Backoff(.decorrelatedJitter(base: base, maximum: maximum))
    }

    /// Starts the schedule.
    ///
    /// Each call starts again from the first delay; one retrying call uses one sequence.
    /// - Parameter random: Where jitter is drawn from (one `nextUnitDouble()` per jittered delay);
    ///   shapes without jitter draw nothing.
    /// - Returns: The endless sequence of delays.
    public func makeDelays(using random: RandomSource) -> Delays {
        Delays(kind: self.kind, random: random)
    }

    /// The shape and its parameters, such as `exponential(100 ms × 2.0 ≤ 2 s, jitter)`.
    public var description: String {
        switch self.kind {
        case .constant(let delay):
            return "constant(\(delay))"
        case .linear(let initial, let increment, let maximum):
            return "linear(\(initial) + \(increment) ≤ \(maximum))"
        case .exponential(let initial, let multiplier, let maximum, let jitter):
            return "exponential(\(initial) × \(multiplier) ≤ \(maximum)\(jitter ? ", jitter" : ""))"
        case .decorrelatedJitter(let base, let maximum):
            return "decorrelatedJitter(\(base) ≤ \(maximum))"
        }
    }
}
