import GRPCNIOTransportHTTP2
import Keel

extension RemoteService {
    /// Where the remote service is and which of its requests to forward.
    public struct Configuration: Sendable {
        /// The remote host's ``RequestServer`` (or other server of ``RouteService``).
        public var address: ServerAddress
        /// The request types to forward, each registered as a route of this host served by the
        /// proxy. The remote host must expose them under the same names.
        public var requests: [any ServiceRequest.Type]
        /// How long ``RemoteService/health()`` waits for the remote host's answer before it
        /// reports the proxy not ready. Default 1 second; keep it below the host's
        /// ``/Keel/ServiceHost/Configuration/healthCheckTimeout``, or the host reports it dead
        /// instead.
        public var healthTimeout: Duration
        /// The error types that the caller gets back as themselves rather than as a
        /// ``RemoteError``: when a remote handler throws an `Encodable` error whose unqualified
        /// type name is one of these types' names, the caller's
        /// `RequestError.underlying` is the error decoded from its JSON (a ``RemoteError`` when
        /// it does not decode). Empty by default.
        public var errorTypes: [any (Error & Decodable).Type]
        /// The gRPC client transport's settings. The default is gRPC's, except the reconnection
        /// backoff: from 200 ms up to 5 seconds (gRPC's own grows to 2 minutes), so that a remote
        /// host that restarts is back in rotation within seconds.
        ///
        /// The connection attempt itself is bounded by SwiftNIO's connect timeout (10 seconds),
        /// which the transport does not expose; a call with a deadline is bounded by its deadline.
        public var transport: HTTP2ClientTransport.Posix.Config

        /// Creates a configuration.
        /// - Parameters:
        ///   - address: The remote host's address.
        ///   - requests: The request types to forward.
        public init(address: ServerAddress, requests: [any ServiceRequest.Type]) {
            self.address = address
            self.requests = requests
            self.healthTimeout = .seconds(1)
            self.errorTypes = []
            self.transport = .defaults { config in
                config.backoff = HTTP2ClientTransport.Config.Backoff(
                    initial: .milliseconds(200),
                    max: .seconds(5),
                    multiplier: 1.6,
                    jitter: 0.2
                )
            }
        }
    }
}
