import HTTPTypes
import Hummingbird
import KeelCore
import Logging

/// The outermost middleware: gives every request an id and a trace context, binds the trace as
/// Keel's task-local ``/KeelCore/TraceContext/current`` around the handler (so every Keel request
/// the handler sends belongs to it), turns every error into the API's JSON answer, adds the
/// `x-request-id` and `traceparent` headers, and logs one line per request with both ids.
struct RequestIdentityMiddleware: RouterMiddleware {
    typealias Context = ShopRequestContext

    let logger: Logger
    let random: RandomSource

    // Hummingbird is built without NonisolatedNonsendingByDefault: its `next` is `@concurrent`.
    func handle(
        _ request: Request,
        context: ShopRequestContext,
        next: @concurrent (Request, ShopRequestContext) async throws -> Response
    ) async throws -> Response {
        let started = ContinuousClock.now
        let requestID = request.headers[.requestID].flatMap(Self.usable) ?? Self.makeID(using: self.random)
        let trace =
            request.headers[.traceparent].flatMap {
                TraceContext.continuing(traceparent: $0, correlationID: requestID, using: self.random)
            } ?? TraceContext.makeRoot(using: self.random, correlationID: requestID)
        var logger = self.logger
        logger[metadataKey: "request_id"] = .string(requestID)
        logger[metadataKey: "trace_id"] = .stringConvertible(trace.traceID)
        logger[metadataKey: "span_id"] = .stringConvertible(trace.spanID)
        var context = context
        context.requestID = requestID
        context.logger = logger

        var response: Response
        do {
            response = try await TraceContext.$current.withValue(trace) {
                try await next(request, context)
            }
        } catch {
            let failure = APIError(mapping: error)
            if failure.status.code >= 500 {
                // The cause goes to the log only; the client sees the code, message and request id.
                // A refusal by design (503: draining, an open breaker, a full bulkhead) is a
                // warning; anything else an error.
                logger.log(
                    level: failure.status == .serviceUnavailable ? .warning : .error,
                    "request failed",
                    metadata: ["status": "\(failure.status.code)", "error": "\(String(reflecting: error))"]
                )
            }
            response = failure.response(requestID: requestID)
        }
        response.headers[.requestID] = requestID
        response.headers[.traceparent] = trace.traceparent
        let elapsed = ContinuousClock.now - started
        logger.info(
            "\(request.method) \(request.uri.path) \(response.status.code)",
            metadata: [
                "duration_us":
                    "\(elapsed.components.seconds * 1_000_000 + elapsed.components.attoseconds / 1_000_000_000_000)"
            ]
        )
        return response
    }

    /// A client's request id, if it is short and plain enough to echo and log.
    private static func usable(_ id: String) -> String? {
        guard (1...128).contains(id.utf8.count),
            id.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f })
        else { return nil }
        return id
    }

    /// A new request id: 16 hex digits from the host's random source.
    private static func makeID(using random: RandomSource) -> String {
        let value = random.next()
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}

/// Admits API requests through the ``DrainGate``: while the server drains for shutdown, a new
/// request is answered with 503 and `Retry-After`, and the requests already admitted finish.
struct DrainGateMiddleware: RouterMiddleware {
    typealias Context = ShopRequestContext

    let gate: DrainGate

    // Hummingbird is built without NonisolatedNonsendingByDefault: its `next` is `@concurrent`.
    func handle(
        _ request: Request,
        context: ShopRequestContext,
        next: @concurrent (Request, ShopRequestContext) async throws -> Response
    ) async throws -> Response {
        guard self.gate.enter() else { throw APIError.draining }
        defer { self.gate.leave() }
        return try await next(request, context)
    }
}
