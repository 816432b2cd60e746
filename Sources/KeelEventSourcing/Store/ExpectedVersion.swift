/// What an append expects of its stream: the optimistic-concurrency check that makes two writers
/// of one stream conflict instead of overwriting each other.
///
/// Stream versions count from 0: the first event of a stream has version 0, and a stream whose
/// last event has version `n` holds `n + 1` events.
///
/// ```swift
/// // Load the aggregate at version 4, decide, then append only if nobody else did meanwhile.
/// try await store.append(events, to: "user-42", expecting: .exactly(4))
/// ```
public enum ExpectedVersion: Sendable, Hashable, CustomStringConvertible {
    /// No check: append whatever the stream holds.
    case any
    /// The stream must not exist yet (or must have been deleted).
    case noStream
    /// The stream must exist, at any version.
    case streamExists
    /// The stream's last event must have exactly this version.
    case exactly(UInt64)

    /// Whether a stream whose last version is `current` (`nil`: no events) satisfies the
    /// expectation.
    /// - Parameter current: The stream's last version, or `nil` when it holds no events.
    /// - Returns: Whether an append may go ahead.
    public func isSatisfied(by current: UInt64?) -> Bool {
        switch self {
        case .any: true
        case .noStream: current == nil
        case .streamExists: current != nil
        case .exactly(let version): current == version
        }
    }

    /// `any`, `no stream`, `stream exists` or `exactly n`.
    public var description: String {
        switch self {
        case .any: "any"
        case .noStream: "no stream"
        case .streamExists: "stream exists"
        case .exactly(let version): "exactly \(version)"
        }
    }
}
