import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Keel
import KeelCore
import Synchronization

/// The gRPC side of a ``RemoteService``: its client, made when the proxy starts, and the calls
/// it makes (`Send`, `Health`), with their failures turned into `RequestError`s.
///
/// Nothing here suspends holding the lock; a call reads the running client under it and calls
/// outside it.
final class RemoteConnection: Sendable {
    typealias Client = GRPCClient<HTTP2ClientTransport.Posix>

    private enum State {
        /// Made, not started: calls fail as if the remote host were unreachable.
        case idle
        /// Started: the client, whose connections a task of the proxy runs, and the host's clock,
        /// on which the caller's deadlines are measured.
        case running(Client, any Clock<Duration>)
        /// Stopped: the client is shutting down or shut down.
        case stopped
    }

    /// The remote service.
    let service: ServiceName
    /// Where the remote host listens.
    let address: ServerAddress
    private let healthTimeout: Duration
    private let transport: HTTP2ClientTransport.Posix.Config
    private let errorTypes: [String: any (Error & Decodable).Type]
    private let state = Mutex<State>(.idle)

    init(
        service: ServiceName,
        address: ServerAddress,
        healthTimeout: Duration,
        transport: HTTP2ClientTransport.Posix.Config,
        errorTypes: [any (Error & Decodable).Type]
    ) {
        self.service = service
        self.address = address
        self.healthTimeout = healthTimeout
        self.transport = transport
        var table: [String: any (Error & Decodable).Type] = [:]
        for type in errorTypes { table[String(describing: type)] = type }
        self.errorTypes = table
    }

    // MARK: Lifecycle

    /// Makes the client; the caller runs its connections (`runConnections()`) and owns that task.
    /// - Parameter clock: The host's clock.
    /// - Returns: The client.
    /// - Throws: When the transport cannot be made for the address, or the connection was
    ///   started before.
    func start(clock: any Clock<Duration>) throws -> Client {
        let client = GRPCClient(
            transport: try HTTP2ClientTransport.Posix(
                target: self.target,
                transportSecurity: .plaintext,
                config: self.transport
            )
        )
        let started = self.state.withLock { state in
            guard case .idle = state else { return false }
            state = .running(client, clock)
            return true
        }
        guard started else {
            throw RPCError(code: .failedPrecondition, message: "the connection to \(self.address) was started before")
        }
        return client
    }

    /// Stops taking calls and begins the client's graceful shutdown: calls in flight finish, new
    /// ones fail with `noHealthyInstance`.
    func stop() {
        let client = self.state.withLock { state -> Client? in
            defer { state = .stopped }
            guard case .running(let client, _) = state else { return nil }
            return client
        }
        client?.beginGracefulShutdown()
    }

    private var running: (client: Client, clock: any Clock<Duration>)? {
        self.state.withLock { state in
            guard case .running(let client, let clock) = state else { return nil }
            return (client, clock)
        }
    }

    private var target: any ResolvableTarget {
        let (host, port) = (self.address.host, self.address.port)
        if host.contains(":") {
            return ResolvableTargets.IPv6(addresses: [SocketAddress.IPv6(host: host, port: port)])
        }
        if !host.isEmpty, host.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }) {
            return ResolvableTargets.IPv4(addresses: [SocketAddress.IPv4(host: host, port: port)])
        }
        return ResolvableTargets.DNS(host: host, port: port)
    }

    // MARK: Send

    /// Sends `request` to the remote host and returns its response: the body of the proxy's
    /// forwarding handler, in the caller's task, with the caller's trace context bound.
    ///
    /// The caller's trace context travels as `traceparent` and `keel-correlation-id`, its
    /// remaining budget (on the host's clock) as the call's gRPC timeout. The call does not wait
    /// for a connection: when the remote host cannot be reached it fails at once.
    /// - Parameter request: The request.
    /// - Returns: The remote handler's response.
    /// - Throws: The remote route's `RequestError` as it was, or one that says why the call did
    ///   not get there (`noHealthyInstance`, `deadlineExceeded`, `cancelled`).
    func send<R: ServiceRequest>(_ request: R) async throws(RequestError) -> R.Response {
        guard let (client, clock) = self.running else {
            throw RequestError(
                code: .noHealthyInstance,
                request: R.name,
                service: self.service,
                message: "the proxy of \(self.service) at \(self.address) is not running"
            )
        }
        let payload: [UInt8]
        do {
            payload = Array(try JSONEncoder().encode(request))
        } catch {
            throw RequestError(
                code: .rejected,
                request: R.name,
                service: self.service,
                message: "the request did not encode",
                underlying: error
            )
        }
        var metadata = Metadata()
        var options = CallOptions.defaults
        options.waitForReady = false
        if let context = TraceContext.current {
            metadata.addString(context.traceparent, forKey: RequestsRPC.traceparentKey)
            metadata.addString(context.correlationID, forKey: RequestsRPC.correlationKey)
            if let remaining = context.deadline?.remaining(onAnyClock: clock) {
                guard remaining > .zero else {
                    throw RequestError(
                        code: .deadlineExceeded,
                        request: R.name,
                        service: self.service,
                        message: "the deadline had passed before the call left for \(self.address)"
                    )
                }
                options.timeout = remaining
            }
        }
        let reply: Reply
        do {
            reply = try await client.unary(
                request: ClientRequest(message: SendMessage(name: R.name, payload: payload), metadata: metadata),
                descriptor: RequestsRPC.send,
                serializer: WireSerializer<SendMessage>(),
                deserializer: WireDeserializer<Reply>(),
                options: options
            ) { response in
                try response.message
            }
        } catch {
            throw self.failure(error, request: R.name)
        }
        switch reply {
        case .response(let bytes):
            do {
                return try JSONDecoder().decode(R.Response.self, from: Data(bytes))
            } catch {
                throw RequestError(
                    code: .handlerFailed,
                    request: R.name,
                    service: self.service,
                    message: "the response from \(self.address) did not decode as \(R.Response.self)",
                    underlying: error
                )
            }
        case .failure(let error):
            throw error.requestError(decoding: self.errorTypes)
        }
    }

    /// What a failed RPC means to the caller.
    func failure(_ error: any Error, request: String) -> RequestError {
        if Task.isCancelled {
            return RequestError(code: .cancelled, request: request, service: self.service, message: "caller cancelled")
        }
        guard let rpc = error as? RPCError else {
            // gRPC's own refusals (a client that is stopped) and anything else.
            return RequestError(
                code: error is RuntimeError ? .noHealthyInstance : .handlerFailed,
                request: request,
                service: self.service,
                message: "the call to \(self.address) failed",
                underlying: error
            )
        }
        let (code, message): (RequestError.Code, String) =
            switch rpc.code {
            case .unavailable: (.noHealthyInstance, "\(self.address) is unavailable: \(rpc.message)")
            case .deadlineExceeded: (.deadlineExceeded, "the deadline passed during the call to \(self.address)")
            case .cancelled: (.cancelled, "the call to \(self.address) was cancelled")
            case .unimplemented: (.noHandler, "\(self.address) serves no Keel requests: \(rpc.message)")
            case .invalidArgument: (.rejected, "\(self.address) refused the call: \(rpc.message)")
            default: (.handlerFailed, "the call to \(self.address) failed with \(rpc.code): \(rpc.message)")
            }
        return RequestError(code: code, request: request, service: self.service, message: message, underlying: rpc)
    }

    // MARK: Health

    /// Asks the remote host whether any instance of the service serves, waiting at most the
    /// configured health timeout.
    /// - Parameter waitForReady: Whether to wait, within the timeout, for a connection to the
    ///   remote host rather than fail at once when there is none.
    /// - Parameter timeout: How long to wait for the answer.
    /// - Returns: Healthy when an instance serves; not ready, with the reason, otherwise.
    func health() async -> HealthReport {
        await self.probe(waitForReady: false, timeout: self.healthTimeout).report
    }

    /// Asks the remote host for the service's health until it answers or `timeout` passes: each
    /// attempt waits for the client to connect; an attempt that fails as unavailable (the
    /// connection it went out on broke, as when the remote host restarts under it) is made again
    /// after a short pause, within the time left.
    func waitUntilReachable(timeout: Duration) async -> HealthReport {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        let pause = Duration.milliseconds(50)
        while true {
            let left = clock.now.duration(to: deadline)
            let (report, unavailable) = await self.probe(waitForReady: true, timeout: max(left, .milliseconds(1)))
            guard unavailable, clock.now + pause < deadline, !Task.isCancelled else { return report }
            try? await clock.sleep(for: pause)
        }
    }

    /// One health call: the report, and whether the call failed as unavailable.
    private func probe(waitForReady: Bool, timeout: Duration) async -> (report: HealthReport, unavailable: Bool) {
        guard let (client, _) = self.running else {
            return (.notReady("the proxy of \(self.service) is not running"), false)
        }
        var options = CallOptions.defaults
        options.timeout = timeout
        options.waitForReady = waitForReady
        let name = self.service.rawValue
        do {
            let answer = try await client.unary(
                request: ClientRequest(message: HealthQuery(services: [name])),
                descriptor: RequestsRPC.health,
                serializer: WireSerializer<HealthQuery>(),
                deserializer: WireDeserializer<HealthAnswer>(),
                options: options
            ) { response in
                try response.message
            }
            guard let entry = answer.services.first(where: { $0.service == name }), entry.serving > 0 else {
                return (.notReady("\(self.address) has no serving instance of \(name)"), false)
            }
            return (.healthy, false)
        } catch let error as RPCError {
            return (
                .notReady("\(self.address) did not answer (\(error.code)): \(error.message)"),
                error.code == .unavailable
            )
        } catch {
            return (.notReady("\(self.address) did not answer: \(error)"), false)
        }
    }
}
