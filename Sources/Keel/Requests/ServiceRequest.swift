/// A typed request that one service sends another, with the type of its response.
///
/// The response type comes from the request type, so a call is checked at compile time:
///
/// ```swift
/// struct GetUser: ServiceRequest {
///     typealias Response = User
///     var id: Int
/// }
/// let user: User = try await client.send(GetUser(id: 7))
/// ```
///
/// Requests and responses are `Codable` as well as `Sendable`, so that a route can later be bound
/// to a service in another process without changing its callers.
public protocol ServiceRequest: Sendable, Codable {
    /// What the handler returns.
    associatedtype Response: Sendable, Codable

    /// The request's name in traces, metrics and errors. Defaults to the type's name.
    static var name: String { get }
}

extension ServiceRequest {
    /// The type's name.
    public static var name: String { String(describing: Self.self) }
}

/// The response of a request that answers only "done": its handler returns nothing.
///
/// A response must be `Codable`, and `Void` is not; a request that has nothing to return declares
/// `Done` as its response and registers a handler that returns nothing:
///
/// ```swift
/// struct ArchiveOrder: ServiceRequest {
///     typealias Response = Done
///     var orderID: Int
/// }
///
/// handlers.on(ArchiveOrder.self) { service, request in
///     service.archive(request.orderID)
/// }
/// _ = try await client.send(ArchiveOrder(orderID: 7))  // returns once the handler has
/// ```
public struct Done: Sendable, Codable, Hashable, CustomStringConvertible {
    /// The one value.
    public init() {}

    /// `done`.
    public var description: String { "done" }
}
