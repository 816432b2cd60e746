import KeelCore
import Testing

/// W3C Trace Context `traceparent` in and out.
@Suite("traceparent")
struct TraceparentTests {
    static let example = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

    @Test("a valid header gives the remote span's context; its child continues the remote trace")
    func parses() throws {
        let context = try #require(TraceContext(traceparent: Self.example))
        #expect(context.traceID == TraceID(high: 0x4bf9_2f35_77b3_4da6, low: 0xa3ce_929d_0e0e_4736))
        #expect(context.spanID == SpanID(rawValue: 0x00f0_67aa_0ba9_02b7))
        #expect(context.parentSpanID == nil && context.deadline == nil && context.causationID == nil)
        #expect(context.correlationID == "4bf92f3577b34da6a3ce929d0e0e4736")
        let child = context.makeChild(using: RandomSource(seed: 1))
        #expect(child.traceID == context.traceID)
        #expect(child.parentSpanID == context.spanID)
        // Spaces and tabs around the value are allowed; flags other than 01 are read too.
        #expect(TraceContext(traceparent: " \t\(Self.example) ") == context)
        #expect(TraceContext(traceparent: Self.example.dropLast(2) + "00")?.spanID == context.spanID)
    }

    @Test("out and back in, a context keeps its trace and span ids")
    func roundTrip() throws {
        let random = RandomSource(seed: 9)
        for _ in 0..<100 {
            let context = TraceContext.makeRoot(using: random).makeChild(using: random)
            let header = context.traceparent
            #expect(header.utf8.count == 55)
            #expect(header.hasPrefix("00-") && header.hasSuffix("-01"))
            let back = try #require(TraceContext(traceparent: header))
            #expect(back.traceID == context.traceID && back.spanID == context.spanID)
        }
        #expect(try #require(TraceContext(traceparent: Self.example)).traceparent == Self.example)
    }

    @Test("a later version's extra fields are ignored; version 00 allows none")
    func versions() {
        #expect(TraceContext(traceparent: "01" + Self.example.dropFirst(2) + "-what-comes-next") != nil)
        #expect(TraceContext(traceparent: "01" + Self.example.dropFirst(2)) != nil)
        #expect(TraceContext(traceparent: Self.example + "-extra") == nil)
        #expect(TraceContext(traceparent: "01" + Self.example.dropFirst(2) + "x") == nil)
    }

    @Test(
        "invalid headers are refused",
        arguments: [
            "",
            "00",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  // version ff
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  // zero trace id
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  // zero parent id
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  // uppercase
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  // short trace id
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",  // short parent id
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",  // short flags
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",  // separators
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",  // not hex
            "0-04bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  // shifted
        ]
    )
    func refuses(_ header: String) {
        #expect(TraceContext(traceparent: header) == nil)
    }
}
