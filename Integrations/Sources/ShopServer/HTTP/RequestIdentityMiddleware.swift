import HTTPTypes
import Hummingbird
import KeelCore
import Logging

/// The outermost middleware: gives every request an id and a server span, binds the span's trace
/// context as Keel's task-local ``/KeelCore/TraceContext/current`` around the handler (so every
/// Keel request the handler sends is its child), turns every error into the API's JSON answer,
/// adds the `x-request-id` and `traceparent` headers, and logs one line per request with both ids.
///
/// The span is started through the host's telemetry: with a tracer, it is the request's span in
/// the tracer (a child of the caller's span when the request came with a `traceparent`), current
/// as `ServiceContext.current` while the handler runs, and its ids are the ones returned in
/// `traceparent`; the request id is the trace's correlation id.
struct RequestIdentityMiddleware: RouterMiddleware {
    typealias Context = ShopRequestContext

    let logger: Logger
    let telemetry: any Telemetry
    let random: RandomSource

    // Hummingbird is built without NonisolatedNonsendingByDefault: its `next` is `@concurrent`.
    func handle(
        _ request: Request,
        context: ShopRequestContext,
        next: @concurrent (Request, ShopRequestContext) async throws -> Response
    ) async throws -> Response {
        let started = ContinuousClock.now
        let requestID = request.headers[.requestID].flatMap(Self.usable) ?? Self.makeID(using: self.random)
        // A valid `traceparent` is the caller's span: this request's span is its child. Without
        // one, the request starts a trace.
        var given =
            request.headers[.traceparent].flatMap { TraceContext(traceparent: $0)?.makeChild(using: self.random) }
            ?? TraceContext.makeRoot(using: self.random)
        given.correlationID = requestID
        let span = self.telemetry.startSpan("HTTP \(request.method)", context: given, kind: .server)
        span.setAttribute("http.request.method", .string("\(request.method)"))
        span.setAttribute("url.path", .string(request.uri.path))
        span.setAttribute("request.id", .string(requestID))
        defer { span.end() }
        // The span's context: the tracer's ids when it assigns its own, the rest as given.
        let trace = span.context
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
                try await span.withCurrent { try await next(request, context) }
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
                span.recordError(error)
            }
            response = failure.response(requestID: requestID)
        }
        span.setAttribute("http.response.status_code", .int(Int64(response.status.code)))
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
