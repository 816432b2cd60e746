/// A 128-bit trace identifier, rendered as 32 lowercase hex digits (W3C trace-context form).
public struct TraceID: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The high 64 bits.
    public var high: UInt64
    /// The low 64 bits.
    public var low: UInt64

    /// Creates a trace id from its two halves.
    /// - Parameters:
    ///   - high: The high 64 bits.
    ///   - low: The low 64 bits.
    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// Draws a new random trace id.
    /// - Parameter random: The source to draw from.
    /// - Returns: A fresh, non-zero trace id.
    public static func random(using random: RandomSource) -> TraceID {
        TraceID(high: random.next(), low: random.next() | 1)
    }

    /// The 32-hex-digit form.
    public var description: String {
        hex(self.high) + hex(self.low)
    }
}

/// A 64-bit span identifier, rendered as 16 lowercase hex digits.
public struct SpanID: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The raw bits.
    public var rawValue: UInt64

    /// Creates a span id from raw bits.
    /// - Parameter rawValue: The raw bits.
    public init(rawValue: UInt64) {
        self.rawValue = rawValue
    }

    /// Draws a new random span id.
    /// - Parameter random: The source to draw from.
    /// - Returns: A fresh, non-zero span id.
    public static func random(using random: RandomSource) -> SpanID {
        SpanID(rawValue: random.next() | 1)
    }

    /// The 16-hex-digit form.
    public var description: String {
        hex(self.rawValue)
    }
}

/// Formats `value` as exactly 16 lowercase hex digits.
package func hex(_ value: UInt64) -> String {
    let digits = String(value, radix: 16)
    return String(repeating: "0", count: 16 - digits.count) + digits
}
