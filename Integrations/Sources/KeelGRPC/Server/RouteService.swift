import Foundation
import GRPCCore
import Keel
import KeelCore

/// The gRPC service `keel.v1.Requests` over a ``/Keel/ServiceHost``: it exposes the host's
/// routes for a configured list of request types to other processes, where a ``RemoteService``
/// calls them.
///
/// ``RequestServer`` runs it on an address of its own; give it to a `GRPCServer` of yours to
/// serve it beside other gRPC services:
///
/// ```swift
/// let routes = RouteService(host: host, configuration: .init(requests: [ChargeCard.self, Refund.self]))
/// let server = GRPCServer(transport: .http2NIOPosix(address: .ipv4(host: "0.0.0.0", port: 7070),
///                                                    transportSecurity: .plaintext),
///                         services: [routes])
/// ```
///
/// **Send.** Each call names a request type and carries the request as JSON. The service decodes
/// it and sends it with the host's ``/Keel/ServiceHost/client``, so the host's routes do
/// everything they do for a local caller (the policy, the metrics, the choice of an instance).
/// The call runs in a child task of the RPC's, inside `TraceContext.$current.withValue(_:)` with the
/// caller's trace context read from `traceparent` (and `keel-correlation-id`): the host's call is
/// a child of the caller's span. The caller's remaining budget, read from gRPC's timeout, becomes
/// the call's deadline on the host's clock; it is shorter than the caller's by the time in
/// transit. When the RPC is cancelled (the caller was cancelled, its timeout fired, the
/// connection dropped) the host's call is cancelled, and its handler sees the cancellation.
///
/// **Errors.** Every failure is answered, never a crash: a request name not in the configuration
/// as `noHandler`, a payload that does not decode as `rejected`, the host's own `RequestError`
/// as its code, message and cause (a ``RemoteError``).
///
/// **Health.** For each service it is asked about (all of the host's when none), how many
/// instances the host's registry has and how many serve. A ``RemoteService`` asks about the one
/// it stands for.
public struct RouteService: RegistrableRPCService {
    /// What the service exposes.
    public struct Configuration: Sendable {
        /// The request types that callers in other processes may send, by their
        /// ``/Keel/ServiceRequest/name``. Two different types with one name are a programming error,
        /// caught by a `precondition` when the service is made; a type listed twice counts once.
        public var requests: [any ServiceRequest.Type]

        /// Creates a configuration.
        /// - Parameter requests: The request types to expose.
        public init(requests: [any ServiceRequest.Type]) {
            self.requests = requests
        }
    }

    /// One exposed request type.
    struct Route: Sendable {
        /// The request type, to tell apart two types of one name.
        var type: ObjectIdentifier
        /// Decodes a payload, sends the request and encodes the outcome.
        var send: @Sendable (_ payload: [UInt8], _ deadline: Deadline?) async -> Reply

        static func make<R: ServiceRequest>(_ type: R.Type, client: RequestClient) -> Route {
            Route(type: ObjectIdentifier(type)) { payload, deadline in
                let request: R
                do {
                    request = try JSONDecoder().decode(R.self, from: Data(payload))
                } catch {
                    return .failure(
                        WireError(
                            code: .rejected,
                            request: R.name,
                            message: "the payload of \(R.name) did not decode: \(error)"
                        )
                    )
                }
                let response: R.Response
                do throws(RequestError) {
                    response = try await client.send(request, deadline: deadline)
                } catch {
                    return .failure(WireError(error))
                }
                do {
                    return .response(Array(try JSONEncoder().encode(response)))
                } catch {
                    return .failure(
                        WireError(
                            code: .handlerFailed,
                            request: R.name,
                            message: "the response of \(R.name) did not encode",
                            underlying: RemoteError(describing: error)
                        )
                    )
                }
            }
        }
    }

    private let host: ServiceHost
    private let routes: [String: Route]

    /// Creates the service over `host`.
    /// - Parameters:
    ///   - host: The host whose routes to expose.
    ///   - configuration: Which request types to expose.
    public init(host: ServiceHost, configuration: Configuration) {
        var routes: [String: Route] = [:]
        for type in configuration.requests {
            let route = Route.make(type, client: host.client)
            let name = type.name
            if let existing = routes[name] {
                precondition(existing.type == route.type, "two different request types are named \(name)")
            }
            routes[name] = route
        }
        self.host = host
        self.routes = routes
    }

    /// Registers `keel.v1.Requests/Send` and `keel.v1.Requests/Health` with `router`.
    /// - Parameter router: The server's router.
    public func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
        router.registerHandler(
            forMethod: RequestsRPC.send,
            deserializer: WireDeserializer<SendMessage>(),
            serializer: WireSerializer<Reply>()
        ) { stream, context in
            let request = try await ServerRequest(stream: stream)
            let reply = await self.send(request, cancellation: context.cancellation)
            return StreamingServerResponse(single: ServerResponse(message: reply))
        }
        router.registerHandler(
            forMethod: RequestsRPC.health,
            deserializer: WireDeserializer<HealthQuery>(),
            serializer: WireSerializer<HealthAnswer>()
        ) { stream, _ in
            let request = try await ServerRequest(stream: stream)
            return StreamingServerResponse(single: ServerResponse(message: self.health(request.message)))
        }
    }

    /// Handles one `Send`, in a child task of the RPC's that is cancelled with the RPC.
    func send(
        _ request: ServerRequest<SendMessage>,
        cancellation: ServerContext.RPCCancellationHandle
    ) async -> Reply {
        let name = request.message.name
        guard let route = self.routes[name] else {
            return .failure(
                WireError(code: .noHandler, request: name, message: "the remote host exposes no request named \(name)")
            )
        }
        var parent = request.metadata.first(RequestsRPC.traceparentKey).flatMap { TraceContext(traceparent: $0) }
        if let correlation = request.metadata.first(RequestsRPC.correlationKey) {
            parent?.correlationID = correlation
        }
        let clock = self.host.clock
        let deadline = request.metadata.first(RequestsRPC.timeoutKey)
            .flatMap(RequestsRPC.timeout(from:))
            .map { Deadline.after($0, onAnyClock: clock) }
        let payload = request.message.payload
        let context = parent
        return await Self.cancellingWithRPC(cancellation) {
            guard let parent = context else { return await route.send(payload, deadline) }
            return await TraceContext.$current.withValue(parent) { await route.send(payload, deadline) }
        }
    }

    /// Answers one `Health` from the host's registry.
    func health(_ query: HealthQuery) -> HealthAnswer {
        let registry = self.host.registry
        let names = query.services.isEmpty ? registry.services : query.services.map { ServiceName($0) }
        return HealthAnswer(
            services: names.map { name in
                let instances = registry.instances(of: name)
                return HealthAnswer.Entry(
                    service: name.rawValue,
                    instances: instances.count,
                    serving: instances.count { $0.health.isServing }
                )
            }
        )
    }

    /// Runs `body` in a child task that is cancelled when the RPC is: gRPC reports an RPC's
    /// cancellation (the client's reset, its timeout) through the handle, not by cancelling the
    /// handler's task. Returns when `body` has returned.
    static func cancellingWithRPC<T: Sendable>(
        _ cancellation: ServerContext.RPCCancellationHandle,
        _ body: @escaping @Sendable () async -> T
    ) async -> T {
        await withTaskGroup(of: T?.self) { group in
            group.addTask { await body() }
            group.addTask {
                // Returns when the RPC is cancelled; throws when this watcher is cancelled because
                // `body` finished first.
                try? await cancellation.cancelled
                return nil
            }
            while let next = await group.next() {
                // The first `nil` is the RPC's cancellation: cancel `body` and wait for its outcome.
                group.cancelAll()
                if let value = next { return value }
            }
            // `body` never returns `nil`, so the loop returns its value.
            preconditionFailure("the body of an RPC ended without a value")
        }
    }
}
