import KeelCore
import Synchronization

/// The table in which a service declares the requests it handles and the events it subscribes
/// to.
///
/// A service fills it in ``ServiceActor/registerHandlers(_:)``. Each handler receives the
/// service's actor isolated, so it reads and changes the service's state directly; the call that
/// reaches it is a direct call on the actor: no task, queue or continuation per request.
///
/// ```swift
/// nonisolated func registerHandlers(_ handlers: inout RequestHandlers<InventoryService>) {
///     handlers.on(CheckStock.self) { service, request in
///         service.stock[request.sku, default: 0] >= request.quantity
///     }
///     handlers.subscribe(to: OrderCancelled.self) { service, event, _ in
///         service.release(event.reservationID)
///     }
/// }
/// ```
///
/// Subscriptions declared here (``subscribe(to:name:options:_:)-(_,_,_,(Service,E,EventEnvelope)->Void)``,
/// ``subscribe(pattern:name:options:_:)``, ``subscribeDurably(to:name:configuration:_:)``) are
/// made by the host once the instance's ``ServiceActor/start(_:)`` has returned, and ended before
/// its ``ServiceActor/stop()``.
public struct RequestHandlers<Service: ServiceActor> {
    let service: Service
    let environment: EnvironmentBox
    var entries: [ObjectIdentifier: AnyBoundHandler] = [:]
    var order: [ObjectIdentifier] = []
    var duplicates: [String] = []
    var subscriptions: [DeclaredSubscription] = []

    init(service: Service, environment: EnvironmentBox) {
        self.service = service
        self.environment = environment
    }

    /// Declares the handler for requests of type `type`.
    ///
    /// The handler runs on the service's actor, in the caller's task: it is cancelled when the
    /// caller is cancelled or its deadline passes, and it sees the caller's ``/KeelCore/TraceContext`` and
    /// deadline. Whatever it throws reaches the caller as
    /// ``RequestError/Code-swift.struct/handlerFailed`` with the error as the cause.
    /// Declaring two handlers for one request type makes registration fail.
    /// - Parameters:
    ///   - type: The request type.
    ///   - handler: The handler, given the isolated service and the request.
    @_disfavoredOverload  // for a `Done` response, the overload whose handler returns nothing
    public mutating func on<R: ServiceRequest>(
        _ type: R.Type,
        _ handler: @escaping @Sendable (isolated Service, R) async throws -> R.Response
    ) {
        let key = ObjectIdentifier(type)
        guard self.entries[key] == nil else {
            self.duplicates.append(R.name)
            return
        }
        self.entries[key] = ServiceHandler(service: self.service, handler: handler)
        self.order.append(key)
    }

    /// Declares the handler for requests of type `type`, giving it the service's
    /// ``ServiceEnvironment`` too, for handlers that send requests or publish events.
    ///
    /// The same as the form whose handler takes the service and the request, except that the
    /// handler also receives the environment the instance was started with. An instance takes requests only
    /// once started, so the environment is always there.
    /// - Parameters:
    ///   - type: The request type.
    ///   - handler: The handler, given the isolated service, the request and the environment.
    @_disfavoredOverload  // for a `Done` response, the overload whose handler returns nothing
    public mutating func on<R: ServiceRequest>(
        _ type: R.Type,
        _ handler: @escaping @Sendable (isolated Service, R, ServiceEnvironment) async throws -> R.Response
    ) {
        let box = self.environment
        self.on(type) { service, request in
            guard let environment = box.value else { throw EnvironmentBox.NotStarted(service: Service.name) }
            return try await handler(service, request, environment)
        }
    }
}

extension RequestHandlers {
    /// Declares the handler for requests of type `type`, whose response is ``Done``: the handler
    /// returns nothing, and the caller receives `Done()` once it has returned. Otherwise it is
    /// the handler of any request: it runs on the service's actor in the caller's task, and what
    /// it throws reaches the caller as ``RequestError/Code-swift.struct/handlerFailed``.
    /// - Parameters:
    ///   - type: The request type.
    ///   - handler: The handler, given the isolated service and the request.
    public mutating func on<R: ServiceRequest>(
        _ type: R.Type,
        _ handler: @escaping @Sendable (isolated Service, R) async throws -> Void
    ) where R.Response == Done {
        self.on(type) { (service: isolated Service, request: R) async throws -> Done in
            try await handler(service, request)
            return Done()
        }
    }

    /// Declares the handler for requests of type `type`, whose response is ``Done``, with the
    /// instance's ``ServiceEnvironment``; the handler returns nothing.
    /// - Parameters:
    ///   - type: The request type.
    ///   - handler: The handler, given the isolated service, the request and the environment.
    public mutating func on<R: ServiceRequest>(
        _ type: R.Type,
        _ handler: @escaping @Sendable (isolated Service, R, ServiceEnvironment) async throws -> Void
    ) where R.Response == Done {
        self.on(type) { (service: isolated Service, request: R, environment: ServiceEnvironment) async throws -> Done in
            try await handler(service, request, environment)
            return Done()
        }
    }
}

extension RequestHandlers {
    /// Declares that requests of type `type` are served elsewhere, by `forward`: for a service
    /// that stands in for one in another process (a proxy, such as the gRPC remote service of
    /// Keel's integrations).
    ///
    /// The caller's ``RequestClient/send(_:deadline:)`` is unchanged, and so is everything the
    /// route does on the caller's side: its policy, its deadline, its metrics and span, and the
    /// choice of an instance. `forward` runs in the caller's task with the caller's
    /// ``/KeelCore/TraceContext`` bound (its deadline included) but off the service's actor, so
    /// concurrent calls do not queue on the proxy. A ``RequestError`` it throws reaches the
    /// caller as it is, with its code and message (the remote route's error, or
    /// ``RequestError/Code-swift.struct/noHealthyInstance`` for a host it cannot reach); any
    /// other error reaches the caller as the cause of
    /// ``RequestError/Code-swift.struct/handlerFailed``, as a handler's does. Declaring two
    /// handlers for one request type makes registration fail.
    ///
    /// ```swift
    /// nonisolated func registerHandlers(_ handlers: inout RequestHandlers<PaymentProxy>) {
    ///     handlers.forward(ChargeCard.self) { request in
    ///         try await connection.send(request)
    ///     }
    /// }
    /// ```
    /// - Parameters:
    ///   - type: The request type.
    ///   - forward: Sends the request on and returns the response.
    public mutating func forward<R: ServiceRequest>(
        _ type: R.Type,
        _ forward: @escaping @Sendable (R) async throws -> R.Response
    ) {
        let key = ObjectIdentifier(type)
        guard self.entries[key] == nil else {
            self.duplicates.append(R.name)
            return
        }
        self.entries[key] = ForwardingHandler(forward: forward)
        self.order.append(key)
    }

    /// What the host keeps of the table, without the service's type.
    var table: HandlerTable {
        HandlerTable(
            entries: self.entries,
            order: self.order,
            duplicates: self.duplicates,
            subscriptions: self.subscriptions
        )
    }
}

/// A service's handlers and declared subscriptions, with the service's type erased.
struct HandlerTable: Sendable {
    var entries: [ObjectIdentifier: AnyBoundHandler]
    var order: [ObjectIdentifier]
    var duplicates: [String]
    var subscriptions: [DeclaredSubscription]
}

/// The environment of one instance, set by the host just before the instance starts.
final class EnvironmentBox: Sendable {
    /// A handler ran before its instance was started; the registry never routes to such an
    /// instance, so this means a handler was called some other way.
    struct NotStarted: Error, CustomStringConvertible {
        var service: ServiceName
        var description: String { "\(self.service) received a request before it was started" }
    }

    private let storage = Lock<ServiceEnvironment?>(nil)

    var value: ServiceEnvironment? {
        self.storage.withLock { $0 }
    }

    func set(_ environment: ServiceEnvironment) {
        self.storage.withLock { $0 = environment }
    }
}

/// A handler bound to one service instance, with its request type erased: a class, so that a
/// route holds its handlers as plain references. Its subclass is ``BoundHandler``.
@usableFromInline
package class AnyBoundHandler: @unchecked Sendable {
    // `@unchecked`: a class with a subclass cannot be checked; its one stored property, and its
    // subclass's, are immutable `Sendable` values.
    /// The name of the request type it handles.
    package let requestName: String
    /// Whether a ``RequestError`` the handler throws reaches the caller as it is, rather than as
    /// the cause of ``RequestError/Code-swift.struct/handlerFailed``: true for a handler that
    /// forwards the request to another process (``RequestHandlers/forward(_:_:)``), whose errors
    /// are the remote route's own.
    package let forwardsRequestErrors: Bool

    init(requestName: String, forwardsRequestErrors: Bool = false) {
        self.requestName = requestName
        self.forwardsRequestErrors = forwardsRequestErrors
    }
}

/// A handler bound to one service instance, for requests of type `R`, with the service's type
/// erased. Its subclasses, ``ServiceHandler`` and ``ForwardingHandler``, are what routes hold.
///
/// A subclass rather than a stored closure: calling a stored async closure here costs one more
/// executor switch and one more task allocation per request than calling an overridden method.
@usableFromInline
package class BoundHandler<R: ServiceRequest>: AnyBoundHandler, @unchecked Sendable {
    // `@unchecked`: as for `AnyBoundHandler`; no stored state of its own.
    init(forwardsRequestErrors: Bool = false) {
        super.init(requestName: R.name, forwardsRequestErrors: forwardsRequestErrors)
    }

    /// Runs the handler on its service's actor, in the caller's task, in the context the caller
    /// has bound. ``ServiceHandler`` and ``ForwardingHandler`` override it; this one, never
    /// reached through a route, throws
    /// ``RequestError/Code-swift.struct/noHandler``.
    /// - Parameter request: The request.
    /// - Returns: The handler's response.
    /// - Throws: What the handler throws.
    @usableFromInline
    func call(_ request: R) async throws -> R.Response {
        throw RequestError(
            code: .noHandler,
            request: R.name,
            service: nil,
            message: "a handler of \(R.name) with no service bound"
        )
    }
}

/// The handler of requests of type `R` on one instance of `Service`.
///
/// The handler is called directly, with the instance as its isolated parameter: the call hops
/// onto the instance's actor and the caller hops back when it returns, as a direct call on the
/// actor does, with nothing in between but the trace context's binding.
final class ServiceHandler<Service: ServiceActor, R: ServiceRequest>: BoundHandler<R>, @unchecked Sendable {
    // `@unchecked`: every stored property is an immutable `Sendable` value.
    private let service: Service
    private let handler: @Sendable (isolated Service, R) async throws -> R.Response

    init(service: Service, handler: @escaping @Sendable (isolated Service, R) async throws -> R.Response) {
        self.service = service
        self.handler = handler
    }

    override func call(_ request: R) async throws -> R.Response {
        try await self.handler(self.service, request)
    }
}

/// The handler of requests of type `R` that another process serves: it runs in the caller's task,
/// off every actor, and a ``RequestError`` it throws reaches the caller as it is.
final class ForwardingHandler<R: ServiceRequest>: BoundHandler<R>, @unchecked Sendable {
    // `@unchecked`: every stored property is an immutable `Sendable` value.
    private let forward: @Sendable (R) async throws -> R.Response

    init(forward: @escaping @Sendable (R) async throws -> R.Response) {
        self.forward = forward
        super.init(forwardsRequestErrors: true)
    }

    override func call(_ request: R) async throws -> R.Response {
        try await self.forward(request)
    }
}
