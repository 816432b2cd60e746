/// How much a log record matters, from the most verbose to the most severe.
///
/// The seven levels are the ones Swift servers already use, in the same order, so that a bridge
/// to a logging library maps each one to exactly one of its levels. Levels compare by severity:
/// `.trace < .debug < … < .critical`.
public enum LogLevel: Int, Sendable, Hashable, Comparable, Codable, CaseIterable, CustomStringConvertible {
    /// Fine-grained detail for following one call through the code.
    case trace
    /// Detail for developers diagnosing a problem.
    case debug
    /// A normal event worth recording: a service started, a breaker closed again.
    case info
    /// A normal but significant event: a service stopped, a breaker half-opened.
    case notice
    /// Something went wrong and Keel coped: a breaker opened, a bulkhead rejects callers.
    case warning
    /// Something went wrong that loses or parks work: a start rolled back, an event
    /// dead-lettered or parked, a service that failed to stop.
    case error
    /// The process cannot go on as intended.
    case critical

    /// The level's name in lowercase, such as `warning`.
    public var description: String {
        switch self {
        case .trace: "trace"
        case .debug: "debug"
        case .info: "info"
        case .notice: "notice"
        case .warning: "warning"
        case .error: "error"
        case .critical: "critical"
        }
    }

    /// Orders levels by severity.
    public static func < (lhs: LogLevel, rhs: LogLevel) -> Bool {
        lhs.rawValue < rhs.rawValue
    }
}
