/// The table in which a service declares the requests it handles.
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
/// }
/// ```
public struct RequestHandlers<Service: ServiceActor> {
    let service: Service
    var entries: [ObjectIdentifier: any AnyBoundHandler] = [:]
    var order: [ObjectIdentifier] = []
    var duplicates: [String] = []

    init(service: Service) {
        self.service = service
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
    public mutating func on<R: ServiceRequest>(
        _ type: R.Type,
        _ handler: @escaping @Sendable (isolated Service, R) async throws -> R.Response
    ) {
        let key = ObjectIdentifier(type)
        guard self.entries[key] == nil else {
            self.duplicates.append(R.name)
            return
        }
        let service = self.service
        self.entries[key] = BoundHandler<R>(service: Service.name) { request in
            try await handler(service, request)
        }
        self.order.append(key)
    }
}

/// A handler bound to one service instance, with its request type erased.
package protocol AnyBoundHandler: AnyObject, Sendable {
    var requestName: String { get }
}

/// A handler bound to one service instance.
package final class BoundHandler<R: ServiceRequest>: AnyBoundHandler {
    package let call: @Sendable (R) async throws -> R.Response
    package let service: ServiceName
    package var requestName: String { R.name }

    init(service: ServiceName, call: @escaping @Sendable (R) async throws -> R.Response) {
        self.service = service
        self.call = call
    }
}
