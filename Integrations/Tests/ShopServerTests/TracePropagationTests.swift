import HTTPTypes
import InMemoryTracing
import IntegrationsTestSupport
import KeelCore
import Testing
import Tracing

/// One trace from the caller's `traceparent` through the HTTP span, Keel's requests, the event
/// and its subscribers, and back in the response's `traceparent`.
@Suite("shop-server: trace propagation", .timeLimit(.minutes(1)))
struct TracePropagationTests {
    @Test("a request's trace crosses HTTP, Keel's requests, the event and its subscribers, both ways")
    func acrossTheServer() async throws {
        let tracer = W3CTracer()
        let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        let reply = try await ServerFixture.with(tracer: tracer) { server in
            try await server.send(
                .post,
                "/orders",
                json: #"{"customerId": 1, "lines": [{"sku": "mouse", "quantity": 1}]}"#,
                headers: [HTTPField.Name("traceparent")!: incoming]
            )
        }
        // The server has shut down: every span has ended, the subscribers' too.
        #expect(reply.status == .created, "\(reply.body)")
        let spans = tracer.base.finishedSpans
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736"
        let http = try #require(spans.first { $0.operationName == "HTTP POST" })
        #expect(http.traceID == trace && http.parentSpanID == "00f067aa0ba902b7", "the caller's trace continues")
        #expect(http.kind == .server)
        // Out: the response names the server's span, in the caller's trace.
        let echoed = try #require(reply.header("traceparent").flatMap { TraceContext(traceparent: $0) })
        #expect(echoed.traceID.description == trace && echoed.spanID.description == http.spanID)
        // Keel's request spans nest under the HTTP span, all in one trace.
        let place = try #require(spans.first { $0.operationName == "order.PlaceOrder" })
        #expect(place.parentSpanID == http.spanID)
        let requests = spans.filter { $0.kind == .server && $0.operationName != "HTTP POST" }
        #expect(requests.count > 1, "PlaceOrder calls other services: \(requests.map(\.operationName))")
        #expect(requests.allSatisfy { $0.traceID == trace })
        // The event and every subscriber that handled it: same trace, under the publish span.
        let publish = try #require(spans.first { $0.operationName == "publish order.created" })
        #expect(publish.traceID == trace)
        let consumers = spans.filter { $0.kind == .consumer }
        #expect(!consumers.isEmpty)
        #expect(consumers.allSatisfy { $0.traceID == trace && $0.parentSpanID == publish.spanID })
    }
}
