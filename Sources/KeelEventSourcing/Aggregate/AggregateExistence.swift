/// What a command expects of the aggregate before it runs: that it is new, that it exists, or
/// either.
///
/// The check runs on the loaded aggregate, before the command; the append itself is always
/// guarded by the loaded version (``ExpectedVersion/noStream`` for a new aggregate,
/// ``ExpectedVersion/exactly(_:)`` otherwise), so a stream created or changed meanwhile
/// conflicts either way. The set may grow: match the values you handle and keep a default.
public struct AggregateExistence: Hashable, Sendable, CustomStringConvertible {
    private enum Base: String, Hashable, Sendable {
        case any
        case new
        case existing
    }

    private let base: Base

    private init(_ base: Base) {
        self.base = base
    }

    /// The command runs on whatever is stored: a fresh aggregate (`init()`) when the stream has
    /// no events.
    public static let any = AggregateExistence(.any)
    /// The stream must have no events; otherwise ``AggregateError/Code/alreadyExists``.
    public static let new = AggregateExistence(.new)
    /// The stream must have events; otherwise ``AggregateError/Code/notFound``.
    public static let existing = AggregateExistence(.existing)

    /// Whether an aggregate at `version` (`nil`: no events) satisfies the expectation.
    /// - Parameter version: The loaded version.
    /// - Returns: Whether the command may run.
    public func isSatisfied(by version: UInt64?) -> Bool {
        switch self.base {
        case .any: true
        case .new: version == nil
        case .existing: version != nil
        }
    }

    /// `any`, `new` or `existing`.
    public var description: String {
        self.base.rawValue
    }
}
