import InMemoryTracing
import Instrumentation
import KeelCore
import Synchronization
import Tracing

/// An in-memory tracer that propagates W3C trace context, as swift-otel's does: hex ids, and
/// `traceparent` in and out.
public struct W3CTracer: Tracer {
    /// The tracer that records the spans.
    public let base: InMemoryTracer

    /// Creates a tracer whose trace ids are `00000000000000ab…` counting up, its span ids
    /// `000000000000c…` counting up.
    public init() {
        let next = Atomic<UInt64>(0)
        self.base = InMemoryTracer(
            idGenerator: .init(
                nextTraceID: {
                    let value = next.add(1, ordering: .relaxed).newValue
                    return TraceID(high: 0xAB, low: value).description
                },
                nextSpanID: { SpanID(rawValue: 0xC000 + next.add(1, ordering: .relaxed).newValue).description }
            )
        )
    }

    /// Starts the span in ``base``.
    public func startSpan<Instant: TracerInstant>(
        _ operationName: String,
        context: @autoclosure () -> InstrumentationContext,
        ofKind kind: SpanKind,
        at instant: @autoclosure () -> Instant,
        function: String,
        file fileID: String,
        line: UInt
    ) -> InMemorySpan {
        self.base.startSpan(
            operationName,
            context: context(),
            ofKind: kind,
            at: instant(),
            function: function,
            file: fileID,
            line: line
        )
    }

    /// Does nothing.
    public func forceFlush() {}

    /// Writes the span context as a `traceparent` header.
    public func inject<Carrier, Inject: Injector>(
        _ context: InstrumentationContext,
        into carrier: inout Carrier,
        using injector: Inject
    ) where Inject.Carrier == Carrier {
        guard let span = context.inMemorySpanContext else { return }
        injector.inject("00-\(span.traceID)-\(span.spanID)-01", forKey: "traceparent", into: &carrier)
    }

    /// Reads a `traceparent` header as the remote parent.
    public func extract<Carrier, Extract: Extractor>(
        _ carrier: Carrier,
        into context: inout InstrumentationContext,
        using extractor: Extract
    ) where Extract.Carrier == Carrier {
        guard let header = extractor.extract(key: "traceparent", from: carrier),
            let remote = TraceContext(traceparent: header)
        else { return }
        context.inMemorySpanContext = InMemorySpanContext(
            traceID: remote.traceID.description,
            spanID: remote.spanID.description,
            parentSpanID: nil
        )
    }
}
