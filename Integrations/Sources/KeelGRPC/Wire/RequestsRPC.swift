import GRPCCore

/// The gRPC service that carries Keel requests between hosts, `keel.v1.Requests`: its methods
/// and the metadata its calls carry.
///
/// - `Send`: unary; the message is a ``SendMessage`` (the request's name and its JSON), the
///   answer a ``Reply`` (the response's JSON, or the remote route's error).
/// - `Health`: unary; JSON in (``HealthQuery``) and out (``HealthAnswer``).
///
/// Metadata of a `Send`: `traceparent` (W3C) and `keel-correlation-id`, from the caller's
/// ``/KeelCore/TraceContext``; the caller's remaining budget travels as gRPC's own timeout
/// (`grpc-timeout`), which the server reads back as a deadline on its host's clock.
enum RequestsRPC {
    /// `keel.v1.Requests`.
    static let service = ServiceDescriptor(fullyQualifiedService: "keel.v1.Requests")
    /// `keel.v1.Requests/Send`.
    static let send = MethodDescriptor(service: Self.service, method: "Send", type: .unary)
    /// `keel.v1.Requests/Health`.
    static let health = MethodDescriptor(service: Self.service, method: "Health", type: .unary)

    /// The W3C trace context of the caller's call.
    static let traceparentKey = "traceparent"
    /// The caller's correlation id, which `traceparent` does not carry.
    static let correlationKey = "keel-correlation-id"
    /// gRPC's timeout header, as the client writes it from `CallOptions.timeout`.
    static let timeoutKey = "grpc-timeout"

    /// Reads a `grpc-timeout` value: one to eight ASCII digits and a unit (`H`, `M`, `S`, `m`,
    /// `u`, `n`), as the gRPC over HTTP/2 protocol defines it.
    /// - Parameter text: The header's value.
    /// - Returns: The duration, or `nil` when the value is malformed.
    static func timeout(from text: some StringProtocol) -> Duration? {
        let bytes = Array(text.utf8)
        guard bytes.count >= 2, bytes.count <= 9, let unit = bytes.last else { return nil }
        var amount: Int64 = 0
        for digit in bytes.dropLast() {
            guard digit >= 0x30, digit <= 0x39 else { return nil }
            amount = amount * 10 + Int64(digit - 0x30)
        }
        switch unit {
        case UInt8(ascii: "H"): return .seconds(amount * 3600)
        case UInt8(ascii: "M"): return .seconds(amount * 60)
        case UInt8(ascii: "S"): return .seconds(amount)
        case UInt8(ascii: "m"): return .milliseconds(amount)
        case UInt8(ascii: "u"): return .microseconds(amount)
        case UInt8(ascii: "n"): return .nanoseconds(amount)
        default: return nil
        }
    }
}
