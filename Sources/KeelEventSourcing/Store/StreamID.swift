/// The name of an event stream: one aggregate instance, or any other sequence of events that is
/// appended to and versioned as a unit, such as `user-42` or `order-7f3a`.
///
/// By convention the part before the first `-` is the stream's ``category`` (`user`), which
/// projections use to follow every stream of one kind.
public struct StreamID: Hashable, Sendable, Codable, Comparable, ExpressibleByStringLiteral,
    CustomStringConvertible
{
    /// The stream's name, as given.
    public var name: String

    /// Creates a stream id.
    /// - Parameter name: The stream's name; must not be empty.
    public init(_ name: String) {
        self.name = name
    }

    /// Creates a stream id from a literal.
    /// - Parameter value: The stream's name.
    public init(stringLiteral value: String) {
        self.name = value
    }

    /// The part of the name before the first `-`, or the whole name when it has none.
    public var category: String {
        guard let dash = self.name.firstIndex(of: "-") else { return self.name }
        return String(self.name[..<dash])
    }

    /// The name.
    public var description: String { self.name }

    /// Orders stream ids by name.
    /// - Parameters:
    ///   - lhs: A stream id.
    ///   - rhs: Another.
    /// - Returns: Whether `lhs` sorts before `rhs`.
    public static func < (lhs: StreamID, rhs: StreamID) -> Bool {
        lhs.name < rhs.name
    }
}
