import InMemoryLogging
import InMemoryTracing
import Instrumentation
import IntegrationsTestSupport
import Keel
import KeelCore
import KeelTesting
import Logging
import Testing
import Tracing

@testable import KeelSwiftServer

private typealias Front = TracingFixtures.Front
private typealias Back = TracingFixtures.Back
private typealias Outer = TracingFixtures.Outer
private typealias Noted = TracingFixtures.Noted

/// Keel's spans as swift-distributed-tracing spans: names, kinds, parents both ways, attributes,
/// errors, and the tracer's ids in Keel's context.
@Suite("SwiftServerTelemetry: tracing", .timeLimit(.minutes(1)))
struct TracingBridgeTests {
    /// A host with Front and Back, and a subscriber of Noted that records what it saw.
    private static func run(
        tracer: any Tracer,
        logger: Logger? = nil,
        sightings: TracingFixtures.Sightings,
        _ body: (ServiceHost) async throws -> Void
    ) async throws -> SwiftServerTelemetry {
        let telemetry = SwiftServerTelemetry(metrics: nil, tracer: tracer, logger: logger)
        let host = Fixtures.makeHost(clock: TestClock(), telemetry: telemetry)
        try await host.register(Front(sightings))
        try await host.register(Back(sightings, tracer: tracer))
        let delivered = Fixtures.Arrivals()
        try host.bus.subscribe(to: Noted.self, name: "watcher") { _, _ in
            sightings.record("event")
            delivered.arrive()
        }
        try await host.start()
        try await body(host)
        await delivered.wait(for: 1)
        await host.shutdown()
        return telemetry
    }

    private static func span(_ name: String, in tracer: InMemoryTracer) throws -> FinishedInMemorySpan {
        try #require(tracer.finishedSpans.first { $0.operationName == name }, "no span \(name)")
    }

    @Test("under an HTTP span, Keel's spans nest as the calls do, and a handler's own spans nest under Keel's")
    func nesting() async throws {
        let tracer = InMemoryTracer()
        let sightings = TracingFixtures.Sightings()
        let telemetry = try await Self.run(tracer: tracer, sightings: sightings) { host in
            let reply = try await tracer.withSpan("GET /orders", ofKind: .server) { _ in
                try await host.client.send(Outer())
            }
            #expect(reply == 2)
        }
        let http = try Self.span("GET /orders", in: tracer)
        let outer = try Self.span("front.Outer", in: tracer)
        let inner = try Self.span("back.Inner", in: tracer)
        let query = try Self.span("db query", in: tracer)
        let publish = try Self.span("publish test.noted", in: tracer)
        #expect(outer.parentSpanID == http.spanID, "the first Keel span is the HTTP span's child")
        #expect(inner.parentSpanID == outer.spanID)
        #expect(query.parentSpanID == inner.spanID, "the handler's own span is Keel's span's child")
        #expect(publish.parentSpanID == outer.spanID)
        #expect([outer, inner, publish].allSatisfy { $0.traceID == http.traceID })
        #expect(outer.kind == .server && publish.kind == .producer)
        // Inside the handler, swift-distributed-tracing's current span is Keel's.
        #expect(sightings["inner"]?.tracing?.spanID == inner.spanID)
        // A tracer without W3C ids leaves Keel's; the attributes name them.
        let keelInner = try #require(sightings["inner"]?.keel)
        #expect(inner.attributes.get("keel.span_id") == .string(keelInner.spanID.description))
        #expect(inner.attributes.get("keel.trace_id") == .string(keelInner.traceID.description))
        #expect(inner.attributes.get("keel.correlation_id") == .string(keelInner.correlationID))
        // The consumer's producer span had ended: the consumer span still carries Keel's trace.
        let consumer = try Self.span("handle watcher", in: tracer)
        #expect(consumer.kind == .consumer)
        #expect(consumer.attributes.get("keel.trace_id") == .string(keelInner.traceID.description))
        #expect(telemetry.openSpanCount == 0, "every span ended")
    }

    @Test("a failed request records the error and sets the span's status to error")
    func errors() async throws {
        let tracer = InMemoryTracer()
        let sightings = TracingFixtures.Sightings()
        _ = try await Self.run(tracer: tracer, sightings: sightings) { host in
            await #expect(throws: RequestError.self) { try await host.client.send(Outer(fail: true)) }
            _ = try await host.client.send(Outer())
        }
        let failed = try #require(tracer.finishedSpans.first { $0.operationName == "back.Inner" })
        #expect(failed.status?.code == .error)
        #expect(failed.errors.count == 1)
        let succeeded = try #require(tracer.finishedSpans.last { $0.operationName == "back.Inner" })
        #expect(succeeded.status == nil && succeeded.errors.isEmpty)
    }

    @Test("with a W3C tracer, Keel's context, logs and envelopes carry the tracer's ids")
    func w3cIDs() async throws {
        let tracer = W3CTracer()
        let sightings = TracingFixtures.Sightings()
        let (logger, logs) = Fixtures.makeLogger()
        _ = try await Self.run(tracer: tracer, logger: logger, sightings: sightings) { host in
            _ = try await tracer.withSpan("GET /orders", ofKind: .server) { _ in
                try await host.client.send(Outer())
            }
        }
        let http = try Self.span("GET /orders", in: tracer.base)
        let inner = try Self.span("back.Inner", in: tracer.base)
        let outer = try Self.span("front.Outer", in: tracer.base)
        let keel = try #require(sightings["inner"]?.keel)
        #expect(keel.traceID.description == http.traceID)
        #expect(keel.spanID.description == inner.spanID)
        #expect(keel.parentSpanID?.description == outer.spanID)
        #expect(try #require(sightings["outer"]?.keel?.parentSpanID).description == http.spanID)
        #expect(keel.traceparent == "00-\(http.traceID)-\(inner.spanID)-01")
        // The consumer continues the trace under the ended producer span, through W3C propagation.
        let publish = try Self.span("publish test.noted", in: tracer.base)
        let consumer = try Self.span("handle watcher", in: tracer.base)
        #expect(consumer.traceID == http.traceID)
        #expect(consumer.parentSpanID == publish.spanID)
        #expect(sightings["event"]?.keel?.spanID.description == consumer.spanID)
        // The service's log line carries the tracer's ids.
        let line = try #require(logs.entries.first { $0.message.description == "handling inner" })
        #expect(line.metadata["trace_id"] == .string(http.traceID))
        #expect(line.metadata["span_id"] == .string(inner.spanID))
        #expect(line.metadata["service"] == .string("back"))
    }

    @Test("a traceparent that came in continues the remote trace under the remote span")
    func inboundTraceparent() async throws {
        let tracer = W3CTracer()
        let sightings = TracingFixtures.Sightings()
        let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        _ = try await Self.run(tracer: tracer, sightings: sightings) { host in
            let remote = try #require(TraceContext(traceparent: header))
            _ = try await TraceContext.$current.withValue(remote) { try await host.client.send(Outer()) }
        }
        let outer = try Self.span("front.Outer", in: tracer.base)
        #expect(outer.traceID == "4bf92f3577b34da6a3ce929d0e0e4736")
        #expect(outer.parentSpanID == "00f067aa0ba902b7")
        #expect(sightings["outer"]?.keel?.traceID.description == "4bf92f3577b34da6a3ce929d0e0e4736")
    }

    @Test("NoOpTracer, or no tracer, records no spans")
    func spansOff() {
        #expect(!SwiftServerTelemetry(metrics: nil, tracer: nil).recordsSpans)
        #expect(!SwiftServerTelemetry(metrics: nil, tracer: NoOpTracer()).recordsSpans)
        #expect(SwiftServerTelemetry(metrics: nil, tracer: InMemoryTracer()).recordsSpans)
        // Not bootstrapped in tests: the default is the no-op tracer.
        #expect(!SwiftServerTelemetry(metrics: nil).recordsSpans)
        // Metrics off: Keel's components skip measuring.
        #expect(!SwiftServerTelemetry(metrics: nil).recordsMetrics)
    }
}
