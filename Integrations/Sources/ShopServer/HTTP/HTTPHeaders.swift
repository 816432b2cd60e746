import HTTPTypes

extension HTTPField.Name {
    /// `x-request-id`: the request's id, the client's own when it sent a usable one.
    static let requestID = HTTPField.Name("x-request-id")!
    /// `traceparent`: the W3C trace context of the request.
    static let traceparent = HTTPField.Name("traceparent")!
    /// `x-read-position`: the global position of a write's last event, for read-your-writes.
    static let readPosition = HTTPField.Name("x-read-position")!
}
