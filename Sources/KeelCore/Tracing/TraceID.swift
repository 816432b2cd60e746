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
        hex([self.high, self.low])
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
    hex([value])
}

/// Formats each value as exactly 16 lowercase hex digits, concatenated, with a `-` inserted
/// before each offset in `dashes` (offsets into the digits). One allocation, one pass.
package func hex(_ values: [UInt64], dashes: [Int] = []) -> String {
    let digits = values.count * 16
    return String(unsafeUninitializedCapacity: digits + dashes.count) { buffer in
        let alphabet: StaticString = "0123456789abcdef"
        var written = 0
        var digit = 0
        var nextDash = 0
        for value in values {
            var shift = 60
            while shift >= 0 {
                if nextDash < dashes.count && dashes[nextDash] == digit {
                    buffer[written] = UInt8(ascii: "-")
                    written += 1
                    nextDash += 1
                }
                buffer[written] = alphabet.utf8Start[Int((value >> UInt64(shift)) & 0xF)]
                written += 1
                digit += 1
                shift -= 4
            }
        }
        return written
    }
}
