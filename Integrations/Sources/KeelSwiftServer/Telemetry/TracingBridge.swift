import Instrumentation
import KeelCore
import Synchronization
import Tracing

/// The tracing half of ``SwiftServerTelemetry``: starts each Keel span as a span of a
/// swift-distributed-tracing `Tracer`, under the right parent, and tells Keel the ids the tracer
/// gave it.
///
/// **Parents.** A Keel span with a parent starts under the tracer span Keel knows by that id while
/// it is open. A parent that has ended, or that came from another process, is handed to the tracer
/// as a W3C `traceparent` (continuing its trace, with it as the remote parent), on top of the
/// task's current tracing context. A Keel span with no parent (the first of a call from outside
/// Keel) starts under the task's current tracing context: an HTTP server's request span, for
/// example.
///
/// **Ids.** After starting a span the bridge asks the tracer to inject its context as a W3C
/// `traceparent`. A tracer that propagates W3C trace context (swift-otel does) answers with its
/// trace and span ids, and the bridge returns them in the span's ``/KeelCore/TelemetrySpan/context``:
/// Keel then runs the work under those ids, so its trace context, its logs and the tracer's spans
/// agree. A tracer that propagates otherwise leaves Keel's ids as they are; the span still gets
/// the right parent, and the attributes `keel.trace_id` and `keel.span_id` name Keel's ids.
final class TracingBridge: Sendable {
    let tracer: any Tracer
    /// The tracer's context of every span started and not yet ended, by its Keel span id.
    private let open = Mutex<[SpanID: InstrumentationContext]>([:])

    init(tracer: any Tracer) {
        self.tracer = tracer
    }

    /// How many spans are open: for tests, which check that every span ends.
    var openCount: Int { self.open.withLock { $0.count } }

    func startSpan(_ operationName: String, context: TraceContext, kind: TelemetrySpanKind) -> any TelemetrySpan {
        let parent = self.parentContext(of: context)
        let span = self.tracer.startSpan(operationName, context: parent, ofKind: kind.tracingKind)
        var assigned = context
        if let ids = self.w3cIDs(of: span.context) {
            assigned.traceID = ids.traceID
            assigned.spanID = ids.spanID
            if context.parentSpanID == nil {
                // The first Keel span of the call: its parent is the caller's tracing span, if any.
                assigned.parentSpanID = self.w3cIDs(of: parent)?.spanID
            }
        } else {
            span.attributes["keel.trace_id"] = context.traceID.description
            span.attributes["keel.span_id"] = context.spanID.description
        }
        span.attributes["keel.correlation_id"] = assigned.correlationID
        if let causation = assigned.causationID {
            span.attributes["keel.causation_id"] = causation
        }
        let spanID = assigned.spanID
        self.open.withLock { $0[spanID] = span.context }
        return BridgedSpan(span: span, context: assigned, bridge: self)
    }

    /// Forgets an ended span.
    func ended(_ spanID: SpanID) {
        _ = self.open.withLock { $0.removeValue(forKey: spanID) }
    }

    private func parentContext(of context: TraceContext) -> InstrumentationContext {
        let current = InstrumentationContext.current ?? .topLevel
        guard let parentID = context.parentSpanID else { return current }
        if let open = self.open.withLock({ $0[parentID] }) { return open }
        var continued = current
        let header = TraceContext(traceID: context.traceID, spanID: parentID, correlationID: "").traceparent
        self.tracer.extract(["traceparent": header], into: &continued, using: HeaderExtractor())
        return continued
    }

    /// The trace and span ids of a tracing context, read through the tracer's W3C propagation.
    private func w3cIDs(of context: InstrumentationContext) -> TraceContext? {
        var headers: [String: String] = [:]
        self.tracer.inject(context, into: &headers, using: HeaderInjector())
        return headers["traceparent"].flatMap { TraceContext(traceparent: $0) }
    }
}

/// A Keel span backed by a tracer's span.
struct BridgedSpan: TelemetrySpan {
    let span: any Tracing.Span
    let context: TraceContext
    let bridge: TracingBridge

    func setAttribute(_ key: String, _ value: TelemetryAttribute) {
        switch value {
        case .string(let text): self.span.attributes[key] = text
        case .int(let number): self.span.attributes[key] = number
        case .double(let number): self.span.attributes[key] = number
        case .bool(let flag): self.span.attributes[key] = flag
        }
    }

    /// Records the error on the tracer's span and sets its status to error.
    func recordError(_ error: any Error) {
        self.span.recordError(error)
        self.span.setStatus(SpanStatus(code: .error))
    }

    func end() {
        self.span.end()
        self.bridge.ended(self.context.spanID)
    }

    /// Binds the tracer's span as `InstrumentationContext.current` (`ServiceContext.current`), so
    /// that code in the operation that uses swift-distributed-tracing starts its spans under it.
    func withCurrent<T, Failure: Error>(
        _ operation: () async throws(Failure) -> T
    ) async throws(Failure) -> T {
        do {
            return try await InstrumentationContext.withValue(self.span.context) { try await operation() }
        } catch {
            // `withValue` rethrows only what `operation` threw.
            throw error as! Failure
        }
    }
}

/// Writes headers into a dictionary, for the tracer's W3C propagation.
struct HeaderInjector: Injector {
    func inject(_ value: String, forKey key: String, into carrier: inout [String: String]) {
        carrier[key] = value
    }
}

/// Reads headers from a dictionary, for the tracer's W3C propagation.
struct HeaderExtractor: Extractor {
    func extract(key: String, from carrier: [String: String]) -> String? {
        carrier[key]
    }
}

extension TelemetrySpanKind {
    /// The swift-distributed-tracing kind of the same role.
    var tracingKind: SpanKind {
        switch self {
        case .internal: .internal
        case .server: .server
        case .client: .client
        case .producer: .producer
        case .consumer: .consumer
        }
    }
}
