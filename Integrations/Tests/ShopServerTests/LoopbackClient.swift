import HTTPTypes
import NIOCore
import NIOHTTP1
import NIOPosix

/// A minimal HTTP/1.1 client for the tests: one request per connection to 127.0.0.1, over NIO's
/// async channel, the body collected whole. (HummingbirdTesting's `TestClient` would do too, but
/// it brings swift-nio-ssl, BoringSSL and AsyncHTTPClient into the test build.)
enum LoopbackClient {
    /// Connects to 127.0.0.1:`port`, sends the request, reads the answer, closes.
    static func send(
        _ method: HTTPRequest.Method,
        _ uri: String,
        headers: HTTPFields,
        body: ByteBuffer?,
        port: Int
    ) async throws -> Reply {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(
                        wrappingChannelSynchronously: channel
                    )
                }
            }
        var head = HTTPRequestHead(version: .http1_1, method: HTTPMethod(rawValue: method.rawValue), uri: uri)
        head.headers.add(name: "Host", value: "127.0.0.1:\(port)")
        head.headers.add(name: "Connection", value: "close")
        for field in headers {
            head.headers.add(name: field.name.rawName, value: field.value)
        }
        if let body {
            head.headers.add(name: "Content-Length", value: String(body.readableBytes))
        }
        return try await channel.executeThenClose { inbound, outbound in
            try await outbound.write(.head(head))
            if let body {
                try await outbound.write(.body(.byteBuffer(body)))
            }
            try await outbound.write(.end(nil))

            var responseHead: HTTPResponseHead?
            var collected = ByteBuffer()
            for try await part in inbound {
                switch part {
                case .head(let received):
                    responseHead = received
                case .body(var chunk):
                    collected.writeBuffer(&chunk)
                case .end:
                    guard let responseHead else { throw FixtureError(description: "an answer without a head") }
                    var fields = HTTPFields()
                    for (name, value) in responseHead.headers {
                        if let name = HTTPField.Name(name) { fields.append(HTTPField(name: name, value: value)) }
                    }
                    return Reply(
                        status: HTTPResponse.Status(code: Int(responseHead.status.code)),
                        headers: fields,
                        body: String(buffer: collected)
                    )
                }
            }
            throw FixtureError(description: "the connection closed before the answer ended")
        }
    }
}
