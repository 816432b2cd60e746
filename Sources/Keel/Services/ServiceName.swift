/// The name of a service; every instance of the service shares it.
///
/// Names appear in errors, metrics, traces and event envelopes. Write them as short lowercase
/// words (`user`, `inventory`).
public struct ServiceName: Hashable, Sendable, Codable, Comparable, ExpressibleByStringLiteral,
    CustomStringConvertible
{
    /// The name's text.
    public var rawValue: String

    /// Creates a name.
    /// - Parameter rawValue: The name's text.
    public init(_ rawValue: String) {
        self.rawValue = rawValue
    }

    /// Creates a name from a string literal.
    /// - Parameter value: The name's text.
    public init(stringLiteral value: String) {
        self.rawValue = value
    }

    /// Creates a name from its encoded text.
    /// - Parameter decoder: The decoder.
    /// - Throws: When the value is not a string.
    public init(from decoder: any Decoder) throws {
        self.rawValue = try decoder.singleValueContainer().decode(String.self)
    }

    /// Encodes the name as a plain string.
    /// - Parameter encoder: The encoder.
    /// - Throws: What the encoder throws.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(self.rawValue)
    }

    /// The name's text.
    public var description: String { self.rawValue }

    public static func < (lhs: ServiceName, rhs: ServiceName) -> Bool {
        lhs.rawValue < rhs.rawValue
    }
}

/// Identifies one instance of a service within a host: the service's name and the instance's
/// index in registration order (`user#0`, `user#1`).
public struct InstanceID: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The service.
    public var service: ServiceName
    /// The instance's index among the service's instances, in registration order.
    public var index: Int

    /// Creates an instance id.
    /// - Parameters:
    ///   - service: The service.
    ///   - index: The instance's index.
    public init(service: ServiceName, index: Int) {
        self.service = service
        self.index = index
    }

    /// `service#index`.
    public var description: String { "\(self.service)#\(self.index)" }
}
