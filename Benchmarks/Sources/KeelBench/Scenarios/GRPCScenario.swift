import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Keel
import KeelCore
import KeelGRPC

/// The request of the gRPC scenarios: a small record, as a typical command carries.
struct RemoteEcho: ServiceRequest {
    typealias Response = RemoteEchoReply
    var orderID: Int
    var sku: String
    var quantity: Int
}

/// Its response.
struct RemoteEchoReply: Codable, Sendable {
    var orderID: Int
    var accepted: Bool
}

/// Answers ``RemoteEcho`` in the process that serves it.
actor RemoteEchoService: ServiceActor {
    static let name: ServiceName = "echo"

    nonisolated func registerHandlers(_ handlers: inout RequestHandlers<RemoteEchoService>) {
        handlers.on(RemoteEcho.self) { _, request in
            RemoteEchoReply(orderID: request.orderID, accepted: true)
        }
    }
}

/// Names the echo service for the caller's stand-in.
enum RemoteEchoName: RemoteServiceName {
    static let name: ServiceName = RemoteEchoService.name
}

/// The bytes of a message as they are: the plain gRPC baseline's serializer.
struct RawBytes: MessageSerializer, MessageDeserializer {
    func serialize<Bytes: GRPCContiguousBytes>(_ message: [UInt8]) throws -> Bytes {
        Bytes(message)
    }

    func deserialize<Bytes: GRPCContiguousBytes>(_ serializedMessageBytes: Bytes) throws -> [UInt8] {
        serializedMessageBytes.withUnsafeBytes { Array($0) }
    }
}

/// A plain gRPC service with one unary method that answers every message with the same bytes.
struct PlainEchoService: RegistrableRPCService {
    static let method = MethodDescriptor(
        service: ServiceDescriptor(fullyQualifiedService: "bench.Echo"),
        method: "Echo",
        type: .unary
    )
    let reply: [UInt8]

    func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
        let reply = self.reply
        router.registerHandler(forMethod: Self.method, deserializer: RawBytes(), serializer: RawBytes()) { stream, _ in
            let request = try await ServerRequest(stream: stream)
            _ = request.message
            return StreamingServerResponse(single: ServerResponse(message: reply))
        }
    }
}

/// `grpc.request`: one caller sending ``RemoteEcho`` through its host's `send` to a service in
/// another host over gRPC (``RemoteService`` → ``RequestServer``, HTTP/2 on 127.0.0.1), against a
/// plain grpc-swift-2 unary call carrying the same bytes (the request's and the response's JSON)
/// to a handler that answers at once, over the same transport. `grpc.request.vs-in-process`
/// measures the remote `send` again against the same `send` to the service in the caller's own
/// host: a report of what leaving the process costs, no goal.
final class GRPCRequestScenario: Scenario {
    enum Baseline {
        case plainGRPC
        case inProcess
    }

    let metrics: [Metric]
    let workload = Workload.calibrated(minimum: 16)
    private let baseline: Baseline

    private var serving: ServiceHost?
    private var calling: ServiceHost?
    private var local: ServiceHost?
    private var tasks: Task<Void, any Error>?
    private var server: RequestServer?
    private var plainServer: GRPCServer<HTTP2ServerTransport.Posix>?
    private var plainClient: GRPCClient<HTTP2ClientTransport.Posix>?
    private var request: [UInt8] = []

    init(name: String, baseline: Baseline, goal: Double? = nil) {
        self.baseline = baseline
        let description =
            switch baseline {
            case .plainGRPC:
                "a plain grpc-swift-2 unary call on 127.0.0.1 (HTTP/2, NIO Posix, plaintext) carrying the same "
                    + "JSON bytes to a handler that answers at once; ours: send through a RemoteService to a "
                    + "RequestServer in another host, one caller"
            case .inProcess:
                "the same send to the service in the caller's own host; ours: the send over gRPC, one caller"
            }
        self.metrics = [Metric(name: name, baseline: description, unit: "request", kind: .throughput, goal: goal)]
    }

    func setUp() async throws {
        let serving = ServiceHost()
        try await serving.register(RemoteEchoService())
        try await serving.start()
        self.serving = serving
        let server = RequestServer(host: serving, configuration: .init(requests: [RemoteEcho.self]))
        self.server = server
        let echo = RemoteEchoReply(orderID: 7, accepted: true)
        self.request = Array(try JSONEncoder().encode(RemoteEcho(orderID: 7, sku: "keyboard", quantity: 2)))
        let plainServer = GRPCServer(
            transport: .http2NIOPosix(
                address: .ipv4(host: "127.0.0.1", port: 0),
                transportSecurity: .plaintext,
                config: .defaults
            ),
            services: [PlainEchoService(reply: Array(try JSONEncoder().encode(echo)))]
        )
        self.plainServer = plainServer
        self.tasks = Task {
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask { try await server.run() }
                group.addTask { try await plainServer.serve() }
            }
        }
        let address = try await server.listeningAddress
        guard let plainAddress = try await plainServer.listeningAddress?.ipv4 else {
            throw RPCError(code: .internalError, message: "the plain server is not on IPv4")
        }
        let calling = ServiceHost()
        let remote = RemoteService<RemoteEchoName>(configuration: .init(address: address, requests: [RemoteEcho.self]))
        try await calling.register(remote)
        try await calling.start()
        _ = await remote.waitUntilReachable(timeout: .seconds(10))
        self.calling = calling
        let local = ServiceHost()
        try await local.register(RemoteEchoService())
        try await local.start()
        self.local = local
        let plainClient = GRPCClient(
            transport: try .http2NIOPosix(
                target: .ipv4(address: plainAddress.host, port: plainAddress.port),
                transportSecurity: .plaintext
            )
        )
        self.plainClient = plainClient
        let connections = Task { try await plainClient.runConnections() }
        self.connections = connections
    }

    private var connections: Task<Void, any Error>?

    func runOurs(_ count: Int) async throws -> [Double] {
        guard let client = self.calling?.client else { return [0] }
        return [
            try await Self.time(count) { index in
                _ = try await client.send(RemoteEcho(orderID: index, sku: "keyboard", quantity: 2))
            }
        ]
    }

    func runBaseline(_ count: Int) async throws -> [Double] {
        switch self.baseline {
        case .plainGRPC:
            guard let client = self.plainClient else { return [0] }
            let request = self.request
            return [
                try await Self.time(count) { _ in
                    _ = try await client.unary(
                        request: ClientRequest(message: request),
                        descriptor: PlainEchoService.method,
                        serializer: RawBytes(),
                        deserializer: RawBytes(),
                        options: .defaults
                    ) { try $0.message }
                }
            ]
        case .inProcess:
            guard let client = self.local?.client else { return [0] }
            return [
                try await Self.time(count) { index in
                    _ = try await client.send(RemoteEcho(orderID: index, sku: "keyboard", quantity: 2))
                }
            ]
        }
    }

    private static func time(_ count: Int, _ body: (Int) async throws -> Void) async throws -> Double {
        let clock = ContinuousClock()
        let start = clock.now
        for index in 0..<count {
            try await body(index)
        }
        return start.duration(to: clock.now).nanoseconds / Double(max(1, count))
    }

    func tearDown() async {
        self.plainClient?.beginGracefulShutdown()
        _ = await self.connections?.result
        await self.calling?.shutdown()
        await self.local?.shutdown()
        self.server?.beginGracefulShutdown()
        self.plainServer?.beginGracefulShutdown()
        _ = await self.tasks?.result
        await self.serving?.shutdown()
    }
}
