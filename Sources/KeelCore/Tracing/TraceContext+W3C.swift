extension TraceContext {
    /// The context as a W3C Trace Context `traceparent` header value: version `00`, the trace id
    /// (32 lowercase hex digits), this span's id (16) and the flags `01` (sampled), such as
    /// `00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01`.
    ///
    /// Send it with an outgoing call, or return it in a response, so that the other side continues
    /// this trace with this span as its parent.
    public var traceparent: String {
        "00-\(self.traceID)-\(self.spanID)-01"
    }

    /// Reads a W3C Trace Context `traceparent` header value: the context of the remote span that
    /// called in, to bind while the call is handled, so that the work it starts continues the
    /// remote trace with the remote span as its parent.
    ///
    /// The result has the header's trace id and its parent id as ``spanID``, no ``parentSpanID``,
    /// no deadline, and the trace id's text as ``correlationID``. Keel's first span under it is a
    /// child of the remote span.
    ///
    /// Parsing follows the W3C rules: four `-`-separated fields of 2, 32, 16 and 2 lowercase hex
    /// digits; version `ff` is invalid; version `00` has exactly those four fields; a later version
    /// may append fields after another `-`, which are ignored; an all-zero trace id or parent id is
    /// invalid. Surrounding spaces and tabs are ignored.
    /// - Parameter traceparent: The header's value.
    /// - Returns: The remote span's context, or `nil` when the value is not a valid `traceparent`
    ///   (then start a new trace, as the W3C specification asks).
    public init?(traceparent: some StringProtocol) {
        let text = traceparent.utf8.drop { $0 == 0x20 || $0 == 0x09 }
        var bytes = Array(text)
        while let last = bytes.last, last == 0x20 || last == 0x09 { bytes.removeLast() }
        // version "-" trace-id "-" parent-id "-" flags: 2 + 1 + 32 + 1 + 16 + 1 + 2 = 55 bytes.
        guard bytes.count >= 55, bytes[2] == 0x2D, bytes[35] == 0x2D, bytes[52] == 0x2D,
            let version = Self.hexValue(bytes[0..<2]), version != 0xFF,
            let high = Self.hexValue(bytes[3..<19]), let low = Self.hexValue(bytes[19..<35]),
            let parent = Self.hexValue(bytes[36..<52]),
            Self.hexValue(bytes[53..<55]) != nil
        else { return nil }
        if version == 0 {
            guard bytes.count == 55 else { return nil }
        } else if bytes.count > 55 {
            guard bytes[55] == 0x2D else { return nil }
        }
        guard high != 0 || low != 0, parent != 0 else { return nil }
        self.init(
            traceID: TraceID(high: high, low: low),
            spanID: SpanID(rawValue: parent),
            parentSpanID: nil,
            correlation: nil,
            causation: nil
        )
    }

    /// The value of up to 16 lowercase hex digits, or `nil` for any other byte.
    private static func hexValue(_ digits: ArraySlice<UInt8>) -> UInt64? {
        var value: UInt64 = 0
        for digit in digits {
            let nibble: UInt8
            switch digit {
            case 0x30...0x39: nibble = digit - 0x30
            case 0x61...0x66: nibble = digit - 0x61 + 10
            default: return nil
            }
            value = value << 4 | UInt64(nibble)
        }
        return value
    }

    /// Takes the trace, span and parent ids of `other`, keeping everything else: what Keel does
    /// with the context of a span that a telemetry started with ids of its own.
    /// - Parameter other: The context whose ids to take.
    package mutating func adoptIDs(of other: TraceContext) {
        self.traceID = other.traceID
        self.spanID = other.spanID
        self.parentSpanID = other.parentSpanID
    }
}
