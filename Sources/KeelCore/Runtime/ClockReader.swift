/// Reads elapsed time from a type-erased clock: durations since the reader was made.
///
/// `any Clock<Duration>` cannot subtract its own instants without opening the existential; the
/// reader captures a concrete clock once and then measures in `Duration`s.
package struct ClockReader: Sendable {
    private let elapsed: @Sendable () -> Duration

    package init(_ clock: any Clock<Duration>) {
        func make<C: Clock<Duration>>(_ clock: C) -> @Sendable () -> Duration {
            let origin = clock.now
            return { origin.duration(to: clock.now) }
        }
        self.elapsed = make(clock)
    }

    /// Time since the reader was made.
    package func now() -> Duration {
        self.elapsed()
    }
}

extension Deadline {
    /// A deadline `duration` from now on a type-erased clock.
    package static func after(_ duration: Duration, onAny clock: any Clock<Duration>) -> Deadline {
        func make<C: Clock<Duration>>(_ clock: C) -> Deadline {
            Deadline(clock.now.advanced(by: duration))
        }
        return make(clock)
    }

    /// The time left on a type-erased clock; `nil` for a deadline of another clock kind.
    package func remaining(onAny clock: any Clock<Duration>) -> Duration? {
        func read<C: Clock<Duration>>(_ clock: C) -> Duration? {
            self.remaining(on: clock)
        }
        return read(clock)
    }

    /// Whether the deadline has passed on a type-erased clock; never for another clock kind.
    package func hasPassed(onAny clock: any Clock<Duration>) -> Bool {
        guard let remaining = self.remaining(onAny: clock) else { return false }
        return remaining <= .zero
    }
}
