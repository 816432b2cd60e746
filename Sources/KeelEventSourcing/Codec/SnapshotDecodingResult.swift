/// What decoding a ``SnapshotEnvelope`` found: the state, or a snapshot of another schema version
/// to ignore.
public enum SnapshotDecodingResult<State> {
    /// The snapshot was written at the current schema version; here is the state.
    case current(State)
    /// The snapshot was written at another schema version: ignore it and rebuild from the events.
    /// - Parameters:
    ///   - storedVersion: The version the snapshot was written at.
    ///   - currentVersion: The version the reader expects.
    case stale(storedVersion: Int, currentVersion: Int)

    /// The state, or `nil` when the snapshot is stale.
    public var state: State? {
        switch self {
        case .current(let state): state
        case .stale: nil
        }
    }

    /// Whether the snapshot is stale.
    public var isStale: Bool {
        self.state == nil
    }
}

extension SnapshotDecodingResult: Sendable where State: Sendable {}

extension SnapshotDecodingResult: Equatable where State: Equatable {}

extension SnapshotDecodingResult: Hashable where State: Hashable {}
