import Foundation
import KeelCore

extension WallClock {
    /// A wall clock that reads the time from `read`, for code that keeps time as `Date`s.
    /// - Parameter read: Returns the current time; called on whatever task reads the clock,
    ///   possibly from many at once; it must not block.
    public init(_ read: @escaping @Sendable () -> Date) {
        self.init(nanosecondsSinceEpoch: { Self.nanoseconds(of: read()) })
    }

    /// A clock that always reads `date`: for tests that check the time stamped on events.
    /// - Parameter date: The time.
    /// - Returns: The clock.
    public static func fixed(_ date: Date) -> WallClock {
        let nanoseconds = Self.nanoseconds(of: date)
        return .fixed(nanosecondsSinceEpoch: nanoseconds)
    }

    /// The current time as a `Date` (which keeps it to about a microsecond).
    /// - Returns: The time.
    public func date() -> Date {
        Date(timeIntervalSince1970: Double(self.nanosecondsSinceEpoch()) / 1_000_000_000)
    }

    private static func nanoseconds(of date: Date) -> Int64 {
        Int64((date.timeIntervalSince1970 * 1_000_000_000).rounded())
    }
}
