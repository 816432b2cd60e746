import Foundation
import HTTPTypes
import Hummingbird
import Keel
import KeelEventSourcing
import KeelResilience
import NIOCore
import ShopServices

/// An HTTP failure the API answers with: a status, a stable machine-readable code, a short
/// message for people and, for 503, how many seconds to wait before retrying.
///
/// ``init(mapping:)`` turns every error the routes can see (Keel's typed errors, the shop's
/// domain errors, Hummingbird's and the JSON decoder's) into one. Messages of 5xx answers never
/// carry an error's own text: that goes to the log, with the request id.
package struct APIError: Error, Sendable, Equatable {
    /// The response's status.
    package var status: HTTPResponse.Status
    /// A code such as `unknown_customer`, stable for clients to switch on.
    package var code: String
    /// A sentence for people.
    package var message: String
    /// For 503: the `Retry-After` header, in whole seconds.
    package var retryAfterSeconds: Int?

    package init(_ status: HTTPResponse.Status, _ code: String, _ message: String, retryAfterSeconds: Int? = nil) {
        self.status = status
        self.code = code
        self.message = message
        self.retryAfterSeconds = retryAfterSeconds
    }

    /// The answer while the server drains for shutdown.
    static let draining = APIError(
        .serviceUnavailable,
        "shutting_down",
        "the server is shutting down; retry on another instance",
        retryAfterSeconds: 1
    )

    /// Maps `error` to the API's answer.
    package init(mapping error: any Error) {
        switch error {
        case let error as APIError:
            self = error
        case let error as RequestError:
            self = Self.mapping(request: error)
        case let error as HTTPError:
            self = Self.mapping(http: error)
        case is NIOTooManyBytesError:
            self = APIError(.contentTooLarge, "body_too_large", "the request body is too large")
        case let error as DecodingError:
            self = APIError(.badRequest, "malformed_json", Self.reason(error))
        case let error as CircuitBreakerError:
            self = Self.circuitOpen(error)
        case is BulkheadError:
            self = APIError(.serviceUnavailable, "busy", "the shop is too busy; retry shortly", retryAfterSeconds: 1)
        case is HostError:
            self = APIError(.serviceUnavailable, "unavailable", "the shop is not running", retryAfterSeconds: 1)
        default:
            self = .internalError
        }
    }

    static let internalError = APIError(.internalServerError, "internal_error", "internal error")

    private static func mapping(request error: RequestError) -> APIError {
        switch error.code {
        case .handlerFailed:
            return self.mapping(domain: error.underlying)
        case .shuttingDown:
            return .draining
        case .noHealthyInstance:
            return APIError(.serviceUnavailable, "unavailable", "the shop is not ready", retryAfterSeconds: 1)
        case .circuitOpen:
            return self.circuitOpen(error.underlying as? CircuitBreakerError)
        case .bulkheadFull:
            return APIError(.serviceUnavailable, "busy", "the shop is too busy; retry shortly", retryAfterSeconds: 1)
        case .rateLimited:
            return APIError(.tooManyRequests, "rate_limited", "too many requests; retry shortly", retryAfterSeconds: 1)
        case .deadlineExceeded:
            return APIError(.gatewayTimeout, "timeout", "the request did not finish in time")
        case .cancelled:
            return APIError(.serviceUnavailable, "cancelled", "the request was cancelled", retryAfterSeconds: 1)
        default:
            return .internalError
        }
    }

    /// A handler's own error: the shop's domain errors and the repository's.
    private static func mapping(domain error: (any Error)?) -> APIError {
        switch error {
        case let error as UserError:
            switch error {
            case .unknownUser, .notRegistered:
                return APIError(.notFound, "unknown_customer", error.description)
            case .alreadyRegistered:
                return APIError(.conflict, "customer_exists", error.description)
            case .versionMismatch:
                return APIError(.conflict, "version_conflict", error.description)
            case .invalidID, .invalidName, .invalidEmail:
                return APIError(.unprocessableContent, "invalid_customer", error.description)
            }
        case let error as AggregateError:
            switch error.code {
            case .alreadyExists:
                return APIError(.conflict, "customer_exists", "the customer id is taken")
            case .conflict:
                return APIError(.conflict, "version_conflict", "the customer changed meanwhile; read it and retry")
            case .notFound:
                return APIError(.notFound, "unknown_customer", "no such customer")
            default:
                return .internalError
            }
        case let error as OrderError:
            switch error {
            case .unknownOrder:
                return APIError(.notFound, "unknown_order", error.description)
            case .emptyOrder, .invalidQuantity, .unknownUser, .unknownProduct, .invalidReference:
                return APIError(.unprocessableContent, "invalid_order", error.description)
            case .refusedBefore:
                return APIError(.conflict, "order_refused", error.description)
            case .outOfStock:
                return APIError(.conflict, "out_of_stock", error.description)
            case .paymentFailed(let payment):
                return self.mapping(payment: payment)
            case .upstream(let upstream):
                return self.mapping(request: upstream)
            case .needsIntervention:
                // The order's saga could neither finish nor undo; an operator resolves it.
                return APIError(
                    .internalServerError,
                    "order_needs_intervention",
                    "the order could not be completed or undone; an operator will resolve it"
                )
            }
        default:
            return .internalError
        }
    }

    /// The `ChargePayment` request's failure, as the order service reports it.
    private static func mapping(payment error: RequestError) -> APIError {
        switch error.code {
        case .circuitOpen:
            return self.circuitOpen(error.underlying as? CircuitBreakerError)
        case .bulkheadFull:
            return APIError(
                .serviceUnavailable,
                "payments_busy",
                "payments are busy; retry shortly",
                retryAfterSeconds: 1
            )
        case .deadlineExceeded:
            return APIError(.gatewayTimeout, "payment_timeout", "the payment provider did not answer in time")
        case .handlerFailed:
            return APIError(.badGateway, "payment_failed", "the payment provider did not take the payment")
        default:
            return self.mapping(request: error)
        }
    }

    private static func circuitOpen(_ error: CircuitBreakerError?) -> APIError {
        // Whole seconds, rounded up, at least 1: `Retry-After` has no fractions.
        let remaining = error?.remainingOpenDuration ?? .seconds(1)
        let (seconds, attoseconds) = remaining.components
        let wait = max(1, Int(seconds) + (attoseconds > 0 ? 1 : 0))
        return APIError(
            .serviceUnavailable,
            "payments_unavailable",
            "payments are unavailable for now; retry later",
            retryAfterSeconds: wait
        )
    }

    private static func mapping(http error: HTTPError) -> APIError {
        switch error.status {
        case .notFound:
            return APIError(.notFound, "not_found", "no such route")
        case .methodNotAllowed:
            return APIError(.methodNotAllowed, "method_not_allowed", "the route does not take this method")
        case .contentTooLarge:
            return APIError(.contentTooLarge, "body_too_large", "the request body is too large")
        case let status where status.kind == .clientError:
            return APIError(status, "bad_request", error.body ?? status.reasonPhrase)
        default:
            return .internalError
        }
    }

    /// A short reason for a body that does not decode: which field, and what is wrong with it.
    private static func reason(_ error: DecodingError) -> String {
        func path(_ context: DecodingError.Context, appending key: (any CodingKey)? = nil) -> String {
            let keys = context.codingPath + (key.map { [$0] } ?? [])
            return keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
        }
        switch error {
        case .keyNotFound(let key, let context):
            return "malformed JSON: missing field '\(path(context, appending: key))'"
        case .typeMismatch(_, let context):
            return "malformed JSON: field '\(path(context))' has the wrong type"
        case .valueNotFound(_, let context):
            return "malformed JSON: field '\(path(context))' is null"
        case .dataCorrupted(let context) where context.codingPath.isEmpty:
            return "malformed JSON: the body is not valid JSON"
        case .dataCorrupted(let context):
            return "malformed JSON: field '\(path(context))' has an invalid value"
        @unknown default:
            return "malformed JSON"
        }
    }

    /// The response: a JSON body `{"error": code, "message": message, "requestId": id}`, and
    /// `Retry-After` when there is a wait.
    func response(requestID: String) -> Response {
        struct Body: Encodable {
            var error: String
            var message: String
            var requestId: String
        }
        var headers = HTTPFields()
        headers[.contentType] = "application/json; charset=utf-8"
        if let retryAfterSeconds {
            headers[.retryAfter] = String(retryAfterSeconds)
        }
        if self == .draining {
            headers[.connection] = "close"
        }
        let body = JSONBody.encode(Body(error: self.code, message: self.message, requestId: requestID))
        return Response(status: self.status, headers: headers, body: .init(byteBuffer: body))
    }
}
