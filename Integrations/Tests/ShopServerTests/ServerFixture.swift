import Foundation
import HTTPTypes
import InMemoryLogging
import Logging
import NIOCore
import ShopServer
import Tracing

/// A failure of the fixture itself.
struct FixtureError: Error, CustomStringConvertible {
    var description: String
}

/// A `ShopServer` running on 127.0.0.1 and a port of its own, for the length of one test.
struct ServerFixture: Sendable {
    let server: ShopServer
    let port: Int
    /// Every line the server logged.
    let log: InMemoryLogHandler

    /// Runs `body` with a server that listens on loopback, any free port, in memory, with no signal
    /// handling of its own (the test process's signals stay alone) and the given tracer (none by
    /// default); then shuts it down gracefully and waits for it to stop.
    static func with<T: Sendable>(
        tracer: (any Tracer)? = nil,
        _ configure: (inout ShopServer.Configuration) -> Void = { _ in },
        _ body: @Sendable (ServerFixture) async throws -> T
    ) async throws -> T {
        var configuration = ShopServer.Configuration()
        configuration.host = "127.0.0.1"
        configuration.port = 0
        configuration.gracefulShutdownSignals = []
        configuration.logLevel = .info
        configure(&configuration)
        let handler = InMemoryLogHandler()
        let logger = Logger(label: "shop-server.tests") { _ in handler }
        let server = try await ShopServer(configuration: configuration, logger: logger, tracer: tracer)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await server.run() }
            guard let port = await server.waitUntilRunning() else {
                try await group.waitForAll()
                throw FixtureError(description: "the server ended before it was running")
            }
            let result: Result<T, any Error>
            do {
                result = .success(try await body(ServerFixture(server: server, port: port, log: handler)))
            } catch {
                result = .failure(error)
            }
            await server.triggerGracefulShutdown()
            try await group.waitForAll()
            return try result.get()
        }
    }

    /// Sends one request on a connection of its own, and waits for the answer (at most 30 s: a
    /// safety net, not a timing).
    func send(
        _ method: HTTPRequest.Method,
        _ uri: String,
        json: String? = nil,
        headers: HTTPFields = [:]
    ) async throws -> Reply {
        var headers = headers
        if json != nil {
            headers[.contentType] = "application/json"
        }
        let port = self.port
        let fields = headers
        return try await withThrowingTaskGroup(of: Reply.self) { group in
            group.addTask {
                try await LoopbackClient.send(
                    method,
                    uri,
                    headers: fields,
                    body: json.map { ByteBuffer(string: $0) },
                    port: port
                )
            }
            group.addTask {
                try await Task.sleep(for: .seconds(30))
                throw FixtureError(description: "no answer to \(method) \(uri) within 30 s")
            }
            defer { group.cancelAll() }
            guard let reply = try await group.next() else {
                throw FixtureError(description: "no answer to \(method) \(uri)")
            }
            return reply
        }
    }
}

/// An HTTP answer.
struct Reply: Sendable {
    var status: HTTPResponse.Status
    var headers: HTTPFields
    var body: String

    /// The body as a JSON object.
    func json() throws -> [String: Any] {
        guard let object = try JSONSerialization.jsonObject(with: Data(self.body.utf8)) as? [String: Any] else {
            throw FixtureError(description: "not a JSON object: \(self.body)")
        }
        return object
    }

    /// The header `name`'s value.
    func header(_ name: String) -> String? {
        HTTPField.Name(name).flatMap { self.headers[$0] }
    }
}
