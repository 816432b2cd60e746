import Foundation
import Keel

/// A `RequestError` on the wire: its code by name (`RequestError.Code.description`), the request,
/// the service, the message, and its cause as a ``RemoteError``.
struct WireError: Codable, Sendable, Hashable {
    /// The code's name, such as `handlerFailed`.
    var code: String
    /// The request type's name.
    var request: String
    /// The service the remote host routed the request to, when known.
    var service: String?
    /// The remote error's message.
    var message: String
    /// The remote error's cause.
    var underlying: RemoteError?

    init(
        code: RequestError.Code,
        request: String,
        service: ServiceName? = nil,
        message: String,
        underlying: RemoteError? = nil
    ) {
        self.code = code.description
        self.request = request
        self.service = service?.rawValue
        self.message = message
        self.underlying = underlying
    }

    /// The error as it leaves the remote host.
    init(_ error: RequestError) {
        self.init(
            code: error.code,
            request: error.request,
            service: error.service,
            message: error.message,
            underlying: error.underlying.map(RemoteError.init(describing:))
        )
    }

    /// The error as the caller gets it: the same code, request, service and message; its cause
    /// the ``RemoteError``, or the registered error type decoded from its JSON.
    /// - Parameter errorTypes: The error types the caller decodes, by unqualified type name.
    func requestError(decoding errorTypes: [String: any (Error & Decodable).Type]) -> RequestError {
        let known = RequestError.Code(name: self.code)
        return RequestError(
            code: known ?? .handlerFailed,
            request: self.request,
            service: self.service.map { ServiceName($0) },
            message: known == nil ? "\(self.message) (remote code \(self.code))" : self.message,
            underlying: self.underlying.map { remote in Self.decode(remote, errorTypes) ?? remote }
        )
    }

    private static func decode(
        _ remote: RemoteError,
        _ errorTypes: [String: any (Error & Decodable).Type]
    ) -> (any Error)? {
        guard let type = errorTypes[remote.type], let json = remote.json else { return nil }
        func decode<E: Error & Decodable>(_ type: E.Type) -> (any Error)? {
            try? JSONDecoder().decode(E.self, from: Data(json.utf8))
        }
        return decode(type)
    }
}
