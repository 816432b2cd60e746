import KeelCore

/// Deadlines on the host's clock, which a host holds type-erased (`any Clock<Duration>`).
extension Deadline {
    /// A deadline `duration` from now on a type-erased clock.
    static func after(_ duration: Duration, onAnyClock clock: any Clock<Duration>) -> Deadline {
        func make<C: Clock<Duration>>(_ clock: C) -> Deadline {
            .after(duration, on: clock)
        }
        return make(clock)
    }

    /// The time left on a type-erased clock; `nil` for a deadline of another clock kind.
    func remaining(onAnyClock clock: any Clock<Duration>) -> Duration? {
        func read<C: Clock<Duration>>(_ clock: C) -> Duration? {
            self.remaining(on: clock)
        }
        return read(clock)
    }
}
