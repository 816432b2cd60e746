extension AggregateRepository {
    /// How an ``AggregateRepository`` takes snapshots.
    public struct Configuration: Sendable {
        /// When to write a snapshot; ``SnapshotPolicy/never`` by default.
        public var snapshotPolicy: SnapshotPolicy

        /// How many snapshots each snapshot stream keeps readable, at least 1; 2 by default.
        ///
        /// The repository sets this as the ``StreamMetadata/maxCount`` of a snapshot stream when
        /// it writes the stream's first snapshot; older snapshots are hidden from reads (they stay
        /// in the store's global log). Only the latest is ever used.
        public var retainedSnapshots: Int {
            didSet {
                precondition(self.retainedSnapshots >= 1, "retainedSnapshots must be at least 1")
            }
        }

        /// Makes a configuration.
        /// - Parameters:
        ///   - snapshotPolicy: When to write a snapshot.
        ///   - retainedSnapshots: Snapshots kept readable per aggregate, at least 1.
        /// - Precondition: `retainedSnapshots >= 1`.
        public init(snapshotPolicy: SnapshotPolicy = .never, retainedSnapshots: Int = 2) {
            precondition(retainedSnapshots >= 1, "retainedSnapshots must be at least 1, got \(retainedSnapshots)")
            self.snapshotPolicy = snapshotPolicy
            self.retainedSnapshots = retainedSnapshots
        }
    }
}
