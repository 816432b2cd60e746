/// A 128-bit event identifier drawn from a ``RandomSource``, rendered in the
/// 8-4-4-4-12 hex form of a UUID.
public struct EventID: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The high 64 bits.
    public var high: UInt64
    /// The low 64 bits.
    public var low: UInt64

    /// Creates an id from its halves.
    /// - Parameters:
    ///   - high: The high 64 bits.
    ///   - low: The low 64 bits.
    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// Draws a fresh id.
    /// - Parameter random: The source.
    /// - Returns: The id.
    public static func random(using random: RandomSource) -> EventID {
        EventID(high: random.next(), low: random.next())
    }

    /// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
    public var description: String {
        hex([self.high, self.low], dashes: [8, 12, 16, 20])
    }
}
