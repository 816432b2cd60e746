/// When an ``AggregateRepository`` writes a snapshot of an aggregate.
///
/// A snapshot saves the events replayed on load at the price of an extra read on every load and
/// an extra write now and then; see <doc:AggregatesAndSnapshots> for when it pays off. The set
/// may grow: match the policies you handle and keep a default.
public struct SnapshotPolicy: Hashable, Sendable, CustomStringConvertible {
    /// Events applied since the last snapshot that make a new one due; `nil`: never.
    public let eventInterval: Int?

    private init(eventInterval: Int?) {
        self.eventInterval = eventInterval
    }

    /// No snapshots: every load replays the whole stream, and the snapshot stream is not read.
    public static let never = SnapshotPolicy(eventInterval: nil)

    /// A snapshot after a save whenever at least `count` events have been applied to the
    /// aggregate since the snapshot it was loaded from (or since the start of the stream, when
    /// there was none, or it was stale or unreadable).
    ///
    /// With commands that emit one event each, `every(100)` writes snapshots at versions 99, 199,
    /// 299, …; a load then replays at most 99 events after the snapshot.
    /// - Parameter count: The interval, at least 1.
    /// - Returns: The policy.
    /// - Precondition: `count >= 1`.
    public static func every(_ count: Int) -> SnapshotPolicy {
        precondition(count >= 1, "a snapshot interval must be at least 1, got \(count)")
        return SnapshotPolicy(eventInterval: count)
    }

    /// Whether a snapshot is due once `count` events have been applied since the last one.
    /// - Parameter count: Events replayed on load after the snapshot, plus those just appended.
    /// - Returns: Whether to write a snapshot.
    public func isDue(eventsSinceSnapshot count: Int) -> Bool {
        guard let interval = self.eventInterval else { return false }
        return count >= interval
    }

    /// `never` or `every n events`.
    public var description: String {
        self.eventInterval.map { "every \($0) events" } ?? "never"
    }
}
