/// A pattern that matches event topics segment by segment.
///
/// Topics and patterns are split on `.` into segments. In a pattern, a segment that is exactly
/// `*` matches exactly one topic segment, and a segment that is exactly `#` matches zero or more
/// segments; every other segment matches itself literally (so `ord*` matches only `ord*`).
///
/// | pattern | matches | does not match |
/// |---|---|---|
/// | `order.*` | `order.created` | `order`, `order.item.added` |
/// | `order.#` | `order`, `order.created`, `order.item.added` | `orders.created` |
/// | `#.failed` | `failed`, `payment.failed`, `a.b.failed` | `failed.twice` |
/// | `#` | every topic | |
///
/// Empty segments are segments like any other: `a..b` has three, the middle one empty, and
/// `a.*.b` matches it. The empty topic has one empty segment, so `*` and `#` match it.
public struct TopicPattern: Sendable, Hashable, CustomStringConvertible {
    enum Segment: Hashable, Sendable {
        case literal(Substring)
        case one
        case any
    }

    /// The pattern's text.
    public let pattern: String
    let segments: [Segment]

    /// Parses a pattern.
    /// - Parameter pattern: The pattern's text.
    public init(_ pattern: String) {
        self.pattern = pattern
        var segments: [Segment] = []
        for part in pattern.split(separator: ".", omittingEmptySubsequences: false) {
            switch part {
            case "*": segments.append(.one)
            case "#":
                // Consecutive `#` segments match the same as one.
                if segments.last != .any { segments.append(.any) }
            default: segments.append(.literal(part))
            }
        }
        self.segments = segments
    }

    /// Whether the pattern matches `topic`.
    /// - Parameter topic: The topic.
    /// - Returns: `true` when it matches.
    public func matches(_ topic: String) -> Bool {
        let parts = topic.split(separator: ".", omittingEmptySubsequences: false)
        // reachable[j]: the first i pattern segments can match the first j topic segments.
        var reachable = [Bool](repeating: false, count: parts.count + 1)
        reachable[0] = true
        for segment in self.segments {
            var next = [Bool](repeating: false, count: parts.count + 1)
            switch segment {
            case .any:
                var seen = false
                for j in 0...parts.count {
                    seen = seen || reachable[j]
                    next[j] = seen
                }
            case .one:
                for j in 0..<parts.count where reachable[j] { next[j + 1] = true }
            case .literal(let literal):
                for j in 0..<parts.count where reachable[j] && parts[j] == literal { next[j + 1] = true }
            }
            reachable = next
        }
        return reachable[parts.count]
    }

    /// The pattern's text.
    public var description: String { self.pattern }
}
