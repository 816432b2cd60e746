import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// Reads JSON request bodies within the configured size limit, and writes JSON responses.
enum JSONBody {
    /// Decodes the request's body as `type`.
    ///
    /// A `Content-Length` over `limit` is refused before anything is read; a body that turns out
    /// longer while it streams is refused as soon as it passes the limit.
    /// - Throws: ``APIError`` 413 for a body over `limit`; `DecodingError` (a 400 for the routes)
    ///   for a body that is not the JSON expected.
    static func decode<T: Decodable>(_ type: T.Type, from request: Request, limit: Int) async throws -> T {
        if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > limit {
            throw APIError(.contentTooLarge, "body_too_large", "the request body is larger than \(limit) bytes")
        }
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: limit)
        } catch is NIOTooManyBytesError {
            throw APIError(.contentTooLarge, "body_too_large", "the request body is larger than \(limit) bytes")
        }
        return try JSONDecoder().decode(T.self, from: Data(buffer.readableBytesView))
    }

    /// Encodes `value` as compact JSON with sorted keys.
    static func encode(_ value: some Encodable) -> ByteBuffer {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Our own plain value types: they always encode.
        let data = (try? encoder.encode(value)) ?? Data("{}".utf8)
        return ByteBuffer(bytes: data)
    }

    /// A JSON response.
    /// - Parameters:
    ///   - value: The body.
    ///   - status: The status.
    ///   - headers: Further headers.
    static func response(
        _ value: some Encodable,
        status: HTTPResponse.Status = .ok,
        headers: HTTPFields = [:]
    ) -> Response {
        var headers = headers
        headers[.contentType] = "application/json; charset=utf-8"
        return Response(status: status, headers: headers, body: .init(byteBuffer: self.encode(value)))
    }
}
