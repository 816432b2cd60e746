/// A point in time by which work must finish, measured on a particular clock.
///
/// A deadline remembers the instant on the clock that produced it, so it can be checked against
/// any `Clock<Duration>` of the same kind: a deadline made from a ``KeelCore`` host's
/// `ContinuousClock` is compared with that clock, one made from a test clock with the test clock.
/// Against a clock of another kind a deadline cannot be interpreted and reads as absent.
///
/// Deadlines are carried by ``TraceContext`` so that a callee inherits its caller's budget.
public struct Deadline: Sendable, CustomStringConvertible {
    /// The instant, boxed: a deadline is one reference (and its witness table), so that a
    /// ``TraceContext`` (which carries one, usually `nil`) copies cheaply.
    private let base: any InstantBoxing

    /// Creates a deadline at `instant`.
    /// - Parameter instant: The instant, on the clock that will check it.
    public init<I: InstantProtocol & Sendable>(_ instant: I) {
        self.base = InstantBox(instant)
    }

    /// Creates a deadline `duration` from now on `clock`.
    /// - Parameters:
    ///   - duration: How long from now.
    ///   - clock: The clock that measures it.
    /// - Returns: The deadline.
    public static func after<C: Clock<Duration>>(_ duration: Duration, on clock: C) -> Deadline
    where C.Instant: Sendable {
        Deadline(clock.now.advanced(by: duration))
    }

    /// The instant of this deadline on a clock of type `C`, or `nil` if it was made on a clock of
    /// another kind.
    /// - Parameter clock: The clock whose instant type to read it as.
    /// - Returns: The instant, or `nil`.
    public func instant<C: Clock>(on clock: C) -> C.Instant? {
        (self.base as? InstantBox<C.Instant>)?.instant
    }

    /// The time left until this deadline on `clock`: negative once it has passed, `nil` when the
    /// deadline was made on a clock of another kind.
    /// - Parameter clock: The clock to measure with.
    /// - Returns: The remaining time, or `nil`.
    public func remaining<C: Clock<Duration>>(on clock: C) -> Duration? {
        guard let instant = self.instant(on: clock) else { return nil }
        return clock.now.duration(to: instant)
    }

    /// Whether this deadline has passed on `clock`. A deadline of another clock kind never has.
    /// - Parameter clock: The clock to check with.
    /// - Returns: `true` when the deadline is at or before `clock.now`.
    public func hasPassed<C: Clock<Duration>>(on clock: C) -> Bool {
        guard let remaining = self.remaining(on: clock) else { return false }
        return remaining <= .zero
    }

    /// The earlier of two deadlines made on the same kind of clock; otherwise `self`.
    /// - Parameter other: The other deadline.
    /// - Returns: The earlier one.
    public func earliest(_ other: Deadline?) -> Deadline {
        guard let other else { return self }
        return other.isEarlier(than: self) ? other : self
    }

    private func isEarlier(than other: Deadline) -> Bool {
        self.base.isEarlier(than: other.base)
    }

    /// A textual form of the underlying instant.
    public var description: String {
        "Deadline(\(self.base.instantDescription))"
    }
}

/// A deadline's instant, its type erased; class-bound, so that a deadline is one reference and a
/// witness table.
private protocol InstantBoxing: AnyObject, Sendable {
    /// Whether this instant is before `other`'s; `false` when `other` is of another type.
    func isEarlier(than other: any InstantBoxing) -> Bool

    /// The instant's textual form.
    var instantDescription: String { get }
}

/// A deadline's instant.
private final class InstantBox<I: InstantProtocol & Sendable>: InstantBoxing {
    let instant: I

    init(_ instant: I) {
        self.instant = instant
    }

    func isEarlier(than other: any InstantBoxing) -> Bool {
        guard let other = other as? InstantBox<I> else { return false }
        return self.instant < other.instant
    }

    var instantDescription: String { "\(self.instant)" }
}
