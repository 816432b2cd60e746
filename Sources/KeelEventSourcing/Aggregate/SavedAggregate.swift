/// The outcome of a save: the new state and version, the events appended, and the snapshot.
public struct SavedAggregate<A: Aggregate>: Sendable {
    /// The aggregate's id.
    public var id: String
    /// The state after the appended events.
    public var aggregate: A
    /// The stream's version after the save; `nil` only when nothing was appended to a new
    /// aggregate.
    public var version: UInt64?
    /// The events appended, in order; empty when the command emitted none (nothing was written).
    public var events: [A.Event]
    /// The global positions the events received; empty when none was appended.
    public var positions: Range<UInt64>
    /// How many times the command ran: 1 unless a conflict was retried.
    public var attempts: Int
    /// What the save did about a snapshot.
    public var snapshot: SnapshotWriteOutcome

    /// Creates a result (repositories do).
    /// - Parameters:
    ///   - id: The aggregate's id.
    ///   - aggregate: The new state.
    ///   - version: The new version.
    ///   - events: The events appended.
    ///   - positions: Their global positions.
    ///   - attempts: The times the command ran.
    ///   - snapshot: The snapshot outcome.
    public init(
        id: String,
        aggregate: A,
        version: UInt64?,
        events: [A.Event],
        positions: Range<UInt64>,
        attempts: Int,
        snapshot: SnapshotWriteOutcome
    ) {
        self.id = id
        self.aggregate = aggregate
        self.version = version
        self.events = events
        self.positions = positions
        self.attempts = attempts
        self.snapshot = snapshot
    }
}
