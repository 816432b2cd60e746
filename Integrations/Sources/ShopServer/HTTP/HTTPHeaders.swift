import HTTPTypes
import KeelCore

extension HTTPField.Name {
    /// `x-request-id`: the request's id, the client's own when it sent a usable one.
    static let requestID = HTTPField.Name("x-request-id")!
    /// `traceparent`: the W3C trace context of the request.
    static let traceparent = HTTPField.Name("traceparent")!
    /// `x-read-position`: the global position of a write's last event, for read-your-writes.
    static let readPosition = HTTPField.Name("x-read-position")!
}

extension TraceContext {
    /// The W3C `traceparent` header value: version 00, the trace id, this span's id, sampled.
    var traceparent: String {
        "00-\(self.traceID)-\(self.spanID)-01"
    }

    /// A context for a request that arrived with the W3C `traceparent` header `header`: the same
    /// trace, a new span whose parent is the caller's; `nil` when the header is not a valid
    /// version-00 value (the request then starts a trace of its own).
    static func continuing(
        traceparent header: String,
        correlationID: String,
        using random: RandomSource
    ) -> TraceContext? {
        let parts = header.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == "00", parts[1].count == 32, parts[2].count == 16, parts[3].count == 2,
            let high = UInt64(parts[1].prefix(16), radix: 16),
            let low = UInt64(parts[1].suffix(16), radix: 16),
            let parent = UInt64(parts[2], radix: 16),
            high != 0 || low != 0, parent != 0
        else { return nil }
        return TraceContext(
            traceID: TraceID(high: high, low: low),
            spanID: .random(using: random),
            parentSpanID: SpanID(rawValue: parent),
            correlationID: correlationID
        )
    }
}
