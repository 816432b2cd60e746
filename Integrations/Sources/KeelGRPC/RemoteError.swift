import Foundation

/// An error thrown in another process, as it reached this one: its type's name and its text.
///
/// When a handler behind a ``RemoteService`` throws, the caller gets a `RequestError` with code
/// `handlerFailed`, the remote route's message, and a `RemoteError` as its `underlying` error
/// (unless the error's type is registered in ``RemoteService/Configuration/errorTypes``: then
/// the error itself, decoded). A resilience strategy on the caller's route classifies it like any
/// other error:
///
/// ```swift
/// Retry(configuration: .init(shouldRetryError: { ($0 as? RemoteError)?.type == "GatewayTimeout" }))
/// ```
///
/// Across several hops the first remote error is kept as it is: a proxy that forwards a
/// `RemoteError` sends it on unchanged, so `type` names the error the handler threw.
public struct RemoteError: Error, Codable, Sendable, Hashable, CustomStringConvertible {
    /// The thrown error's type name, unqualified (`String(describing: type(of: error))`), such
    /// as `CardDeclined`.
    public var type: String
    /// The thrown error's text, `String(describing: error)`.
    public var message: String
    /// The thrown error's JSON, when its type is `Encodable`; what a caller decodes it from when
    /// it registered the type (``RemoteService/Configuration/errorTypes``).
    public var json: String?

    /// Creates a remote error from its parts.
    /// - Parameters:
    ///   - type: The thrown error's type name.
    ///   - message: The thrown error's text.
    ///   - json: The thrown error's JSON, if it had one.
    public init(type: String, message: String, json: String? = nil) {
        self.type = type
        self.message = message
        self.json = json
    }

    /// Describes `error` for the wire: a `RemoteError` as it is; any other error by its type's
    /// name, its text and, when it is `Encodable`, its JSON.
    /// - Parameter error: The error.
    init(describing error: any Error) {
        if let remote = error as? RemoteError {
            self = remote
            return
        }
        self.type = String(describing: Swift.type(of: error))
        self.message = String(describing: error)
        self.json = (error as? any Encodable).flatMap { value in
            (try? JSONEncoder().encode(value)).map { String(decoding: $0, as: UTF8.self) }
        }
    }

    /// `type: message`.
    public var description: String {
        "\(self.type): \(self.message)"
    }
}
