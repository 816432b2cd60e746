#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The time of day: what Keel stamps on events, envelopes and snapshots.
///
/// A `Clock<Duration>` measures how long things take and is what Keel waits on; a wall clock says
/// what time it is. Keel reads the time of day only through a `WallClock`, and a host has exactly
/// one (Keel's `ServiceHost.Configuration.wallClock`), which it hands to every part that stamps a
/// time: the bus's envelopes, durable publications, the events and snapshots of aggregate
/// repositories made from a service's environment. Inject a fixed or a test-driven one to make
/// those times exact in tests.
///
/// ```swift
/// var configuration = ServiceHost.Configuration()
/// configuration.wallClock = .fixed(nanosecondsSinceEpoch: 1_700_000_000_000_000_000)
/// let host = ServiceHost(configuration: configuration)
/// ```
///
/// Reading it never suspends and takes no lock of its own; it is as cheap as the function it
/// wraps (`clock_gettime(CLOCK_REALTIME)` for ``system``).
public struct WallClock: Sendable {
    private let read: @Sendable () -> Int64

    /// Creates a wall clock that reads the time from `read`.
    /// - Parameter read: Returns the current time in nanoseconds since 1970-01-01 00:00:00 UTC.
    ///   Called on whatever task reads the clock, possibly from many at once; it must not block.
    public init(nanosecondsSinceEpoch read: @escaping @Sendable () -> Int64) {
        self.read = read
    }

    /// The current time.
    /// - Returns: Nanoseconds since 1970-01-01 00:00:00 UTC.
    public func nanosecondsSinceEpoch() -> Int64 {
        self.read()
    }

    /// The system's real-time clock (`CLOCK_REALTIME`): the default everywhere.
    public static let system = WallClock(nanosecondsSinceEpoch: WallClock.systemNanoseconds)

    /// A clock that always reads `nanoseconds`: for tests that check the time stamped on what they
    /// write.
    /// - Parameter nanoseconds: The time, in nanoseconds since 1970-01-01 00:00:00 UTC.
    /// - Returns: The clock.
    public static func fixed(nanosecondsSinceEpoch nanoseconds: Int64) -> WallClock {
        WallClock { nanoseconds }
    }

    @Sendable
    private static func systemNanoseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
    }
}
