import GRPCCore
import GRPCNIOTransportHTTP2
import Keel

/// A gRPC server that exposes a ``/Keel/ServiceHost``'s routes to other processes: a
/// ``RouteService`` on an HTTP/2 listener of its own (plaintext, SwiftNIO's Posix transport).
///
/// ```swift
/// let server = RequestServer(
///     host: host,
///     configuration: .init(address: ServerAddress(host: "0.0.0.0", port: 7070), requests: [ChargeCard.self])
/// )
/// try await withThrowingDiscardingTaskGroup { group in
///     group.addTask { try await server.run() }
///     print("serving on", try await server.listeningAddress)
///     // …; then, to stop after the calls in flight:
///     server.beginGracefulShutdown()
/// }
/// ```
///
/// The server serves once: ``run()`` binds and serves until ``beginGracefulShutdown()`` (no new
/// calls; those in flight finish) or until its task is cancelled (the calls in flight are
/// cancelled too: their handlers see the cancellation, their callers fail). Calls are sent
/// with the host's client whatever the host's state: before ``/Keel/ServiceHost/start()`` and
/// after its shutdown they fail as a local call would then. To serve again, make a new server.
public final class RequestServer: Sendable {
    /// Where the server listens and what it exposes.
    public struct Configuration: Sendable {
        /// The address to bind. Default `127.0.0.1` on port 0 (a free port the system picks; read
        /// it back from ``RequestServer/listeningAddress``): give another host, such as
        /// `0.0.0.0`, to take calls from other machines.
        public var address: ServerAddress
        /// The request types callers may send. See ``RouteService/Configuration/requests``.
        public var requests: [any ServiceRequest.Type]
        /// The transport's HTTP/2, connection and compression settings; gRPC's defaults.
        public var transport: HTTP2ServerTransport.Posix.Config

        /// Creates a configuration.
        /// - Parameters:
        ///   - address: The address to bind.
        ///   - requests: The request types to expose.
        public init(
            address: ServerAddress = ServerAddress(host: "127.0.0.1", port: 0),
            requests: [any ServiceRequest.Type]
        ) {
            self.address = address
            self.requests = requests
            self.transport = .defaults
        }
    }

    private let server: GRPCServer<HTTP2ServerTransport.Posix>

    /// Creates a server over `host`; it listens once ``run()`` is called.
    /// - Parameters:
    ///   - host: The host whose routes to expose.
    ///   - configuration: The address and the request types.
    public init(host: ServiceHost, configuration: Configuration) {
        let address: SocketAddress =
            configuration.address.host.contains(":")
            ? .ipv6(host: configuration.address.host, port: configuration.address.port)
            : .ipv4(host: configuration.address.host, port: configuration.address.port)
        self.server = GRPCServer(
            transport: .http2NIOPosix(address: address, transportSecurity: .plaintext, config: configuration.transport),
            services: [
                RouteService(host: host, configuration: RouteService.Configuration(requests: configuration.requests))
            ]
        )
    }

    /// Binds and serves until ``beginGracefulShutdown()`` has let the calls in flight finish, or
    /// until the calling task is cancelled, which cancels the calls in flight (each remote
    /// handler sees the cancellation; its caller fails).
    ///
    /// Call it once, from a task that owns the server (a task group's child, a service's `run()`).
    /// - Throws: When the address cannot be bound, when the server already ran, or when the
    ///   transport fails.
    public func run() async throws {
        try await self.server.serve()
    }

    /// Stops taking new calls and lets ``run()`` return once the calls in flight have finished.
    /// Returns at once; calling it again is harmless. Called before ``run()``, it makes
    /// ``run()`` throw: the server never serves.
    public func beginGracefulShutdown() {
        self.server.beginGracefulShutdown()
    }

    /// The address the server is bound to, with the port the system chose for port 0.
    ///
    /// Suspends until ``run()`` has bound the address.
    /// - Throws: When binding failed, or the server has stopped.
    public var listeningAddress: ServerAddress {
        get async throws {
            let address = try await self.server.listeningAddress
            if let ipv4 = address?.ipv4 { return ServerAddress(host: ipv4.host, port: ipv4.port) }
            if let ipv6 = address?.ipv6 { return ServerAddress(host: ipv6.host, port: ipv6.port) }
            throw RPCError(
                code: .failedPrecondition,
                message: "the server listens on \(String(describing: address)), not on an IP address"
            )
        }
    }
}
