import Foundation
import Keel
import KeelCore
import Testing

@Suite("Event envelope", .timeLimit(.minutes(2)))
struct EnvelopeTests {
    private func makeEnvelope(correlationID: String = "order-7", causationID: String? = "cause-1") -> EventEnvelope {
        EventEnvelope(
            id: EventID(high: 0x0123_4567_89ab_cdef, low: 0xfedc_ba98_7654_3210),
            time: Date(timeIntervalSince1970: 1_700_000_000),
            source: "order",
            topic: "order.created",
            eventType: "OrderCreated",
            correlationID: correlationID,
            causationID: causationID,
            traceID: TraceID(high: 1, low: 2),
            spanID: SpanID(rawValue: 3)
        )
    }

    @Test("an envelope survives a JSON round trip with every field")
    func codableRoundTrip() throws {
        let envelope = self.makeEnvelope()
        let decoded = try JSONDecoder().decode(EventEnvelope.self, from: JSONEncoder().encode(envelope))
        #expect(decoded == envelope)
        #expect(decoded.correlationID == "order-7")
        #expect(decoded.causationID == "cause-1")
        #expect(decoded.id.description == "01234567-89ab-cdef-fedc-ba9876543210")
    }

    @Test("a missing causation id stays missing")
    func missingCausation() throws {
        let envelope = self.makeEnvelope(causationID: nil)
        let decoded = try JSONDecoder().decode(EventEnvelope.self, from: JSONEncoder().encode(envelope))
        #expect(decoded.causationID == nil)
    }

    @Test("a handler's context continues the trace with the event id as causation")
    func handlerContext() {
        let envelope = self.makeEnvelope()
        let context = envelope.makeHandlerContext(using: RandomSource(seed: 9))
        #expect(context.traceID == envelope.traceID)
        #expect(context.parentSpanID == envelope.spanID)
        #expect(context.correlationID == "order-7")
        #expect(context.causationID == "01234567-89ab-cdef-fedc-ba9876543210")
    }

    @Test("a root context's correlation id is its trace id until set")
    func defaultCorrelation() {
        var root = TraceContext.makeRoot(using: RandomSource(seed: 4))
        #expect(root.correlationID == root.traceID.description)
        root.correlationID = "checkout-1"
        #expect(root.correlationID == "checkout-1")
        let child = root.makeChild(using: RandomSource(seed: 5))
        #expect(child.correlationID == "checkout-1")
    }
}
