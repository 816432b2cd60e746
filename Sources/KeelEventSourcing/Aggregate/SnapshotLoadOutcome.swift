/// What loading an aggregate did with its snapshot.
///
/// A snapshot is a cache: whatever it holds, a load returns the state the events say. When the
/// latest snapshot cannot be used the load rebuilds the state from the whole stream and says why
/// here, and the repository counts it in its telemetry; the next save writes a fresh
/// snapshot if the ``SnapshotPolicy`` says one is due.
public enum SnapshotLoadOutcome: Sendable, CustomStringConvertible {
    /// The policy is ``SnapshotPolicy/never``: no snapshot was read.
    case disabled
    /// The aggregate has no snapshot yet.
    case notFound
    /// The snapshot was used: the load replayed only the events after `streamVersion`.
    /// - Parameter streamVersion: The version of the last event the snapshot includes.
    case used(streamVersion: UInt64)
    /// The snapshot was written at another ``Aggregate/snapshotSchemaVersion`` and was ignored.
    /// - Parameters:
    ///   - storedVersion: The version it was written at.
    ///   - currentVersion: The aggregate's current version.
    case stale(storedVersion: Int, currentVersion: Int)
    /// The snapshot could not be read or decoded (a corrupt payload, or a change to the aggregate
    /// made without raising its snapshot schema version) and was ignored.
    /// - Parameter error: Why, with code ``AggregateError/Code/snapshotUnreadable``; the codec's or
    ///   the store's error is its cause.
    case unreadable(AggregateError)
    /// The snapshot claims a version the stream does not have (the stream was truncated or
    /// rewritten under it) and was ignored.
    /// - Parameters:
    ///   - snapshotVersion: The stream version the snapshot claims to include.
    ///   - streamVersion: The stream's actual last version.
    case aheadOfStream(snapshotVersion: UInt64, streamVersion: UInt64?)

    /// Whether a snapshot was found but not used, so that the state was rebuilt from the events.
    public var isIgnored: Bool {
        switch self {
        case .disabled, .notFound, .used: false
        case .stale, .unreadable, .aheadOfStream: true
        }
    }

    /// The outcome in words.
    public var description: String {
        switch self {
        case .disabled: "disabled"
        case .notFound: "not found"
        case .used(let version): "used (stream version \(version))"
        case .stale(let stored, let current): "stale (version \(stored), current \(current))"
        case .unreadable(let error): "unreadable (\(error))"
        case .aheadOfStream(let snapshot, let stream):
            "ahead of stream (snapshot at \(snapshot), stream at \(stream.map(String.init) ?? "no stream"))"
        }
    }
}

/// What saving an aggregate did about a snapshot.
///
/// A snapshot is written after the events are appended, so a failure to write it never fails the
/// save: the events are durable and the state is right. The failure is reported here and counted
/// in the repository's telemetry, and the next save tries again.
public enum SnapshotWriteOutcome: Sendable, CustomStringConvertible {
    /// The ``SnapshotPolicy`` did not call for a snapshot.
    case notDue
    /// A snapshot including the events up to `streamVersion` was written.
    /// - Parameter streamVersion: The version of the last event it includes.
    case written(streamVersion: UInt64)
    /// Writing the snapshot failed; the events were appended all the same.
    /// - Parameter error: Why, with code ``AggregateError/Code/snapshotWriteFailed``.
    case failed(AggregateError)

    /// The outcome in words.
    public var description: String {
        switch self {
        case .notDue: "not due"
        case .written(let version): "written (stream version \(version))"
        case .failed(let error): "failed (\(error))"
        }
    }
}
