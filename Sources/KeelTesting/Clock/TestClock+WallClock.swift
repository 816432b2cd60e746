import KeelCore

extension TestClock {
    /// A wall clock that moves with this clock: it reads `start` plus the time this clock has
    /// advanced since its start (``Instant/offset``), so that the times a host stamps on events
    /// move exactly as far as the test advances time.
    ///
    /// ```swift
    /// let clock = TestClock()
    /// var configuration = TestHost.defaultConfiguration
    /// configuration.wallClock = clock.wallClock(startingAt: 1_700_000_000_000_000_000)
    /// ```
    /// - Parameter start: The time of day at this clock's start, in nanoseconds since
    ///   1970-01-01 00:00:00 UTC.
    /// - Returns: The wall clock; reading it takes this clock's lock briefly and never suspends.
    public func wallClock(startingAt start: Int64) -> WallClock {
        WallClock {
            let (seconds, attoseconds) = self.now.offset.components
            return start + seconds * 1_000_000_000 + attoseconds / 1_000_000_000
        }
    }
}
