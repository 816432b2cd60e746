/// An aggregate as ``AggregateRepository/load(_:)`` found it: its state, the version of the last
/// event applied, and what became of its snapshot.
///
/// Pass it to ``AggregateRepository/save(_:for:loaded:)`` to append the events a command emitted
/// on it, guarded by ``expectedVersion``.
public struct LoadedAggregate<A: Aggregate>: Sendable {
    /// The id the aggregate was loaded by (its stream is `"\(A.category)-\(id)"`).
    public var id: String
    /// The state: the snapshot (if used) with every later event applied.
    public var aggregate: A
    /// The version of the last event applied; `nil` when the stream has no events, and the
    /// aggregate is `A()`.
    public var version: UInt64?
    /// What the load did with the snapshot.
    public var snapshot: SnapshotLoadOutcome
    /// How many events the load decoded and applied (those after the snapshot, or all of them).
    public var eventsReplayed: Int

    /// Creates a loaded aggregate (repositories do).
    /// - Parameters:
    ///   - id: The aggregate's id.
    ///   - aggregate: The state.
    ///   - version: The version of the last event applied.
    ///   - snapshot: What the load did with the snapshot.
    ///   - eventsReplayed: The events applied.
    public init(id: String, aggregate: A, version: UInt64?, snapshot: SnapshotLoadOutcome, eventsReplayed: Int) {
        self.id = id
        self.aggregate = aggregate
        self.version = version
        self.snapshot = snapshot
        self.eventsReplayed = eventsReplayed
    }

    /// Whether the stream has events.
    public var exists: Bool {
        self.version != nil
    }

    /// What an append after this load expects: ``ExpectedVersion/exactly(_:)`` the loaded
    /// version, or ``ExpectedVersion/noStream`` for a new aggregate.
    public var expectedVersion: ExpectedVersion {
        self.version.map { .exactly($0) } ?? .noStream
    }
}
