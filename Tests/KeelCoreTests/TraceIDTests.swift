import Foundation
import KeelCore
import Testing

@Suite("TraceID and SpanID", .timeLimit(.minutes(2)))
struct TraceIDTests {
    @Test("a trace id is 32 lowercase hex digits, high half first, zero padded")
    func traceIDFormatting() {
        #expect(TraceID(high: 0, low: 0).description == String(repeating: "0", count: 32))
        #expect(TraceID(high: 0, low: 1).description == "00000000000000000000000000000001")
        #expect(TraceID(high: 0xABC, low: 0xF).description == "0000000000000abc000000000000000f")
        #expect(
            TraceID(high: 0x0123_4567_89AB_CDEF, low: .max).description == "0123456789abcdefffffffffffffffff"
        )
    }

    @Test("a span id is 16 lowercase hex digits, zero padded")
    func spanIDFormatting() {
        #expect(SpanID(rawValue: 0).description == "0000000000000000")
        #expect(SpanID(rawValue: 0x1F).description == "000000000000001f")
        #expect(SpanID(rawValue: 0xDEAD_BEEF_0000_0001).description == "deadbeef00000001")
        #expect(SpanID(rawValue: .max).description == "ffffffffffffffff")
    }

    @Test("random ids have the fixed width, are never zero and are deterministic for a seed")
    func randomIDs() {
        let first = RandomSource(seed: 1)
        let second = RandomSource(seed: 1)
        for _ in 0..<200 {
            let trace = TraceID.random(using: first)
            let span = SpanID.random(using: first)
            #expect(trace == TraceID.random(using: second))
            #expect(span == SpanID.random(using: second))
            #expect(trace.description.count == 32)
            #expect(span.description.count == 16)
            #expect(trace != TraceID(high: 0, low: 0))
            #expect(span.rawValue != 0)
            #expect(trace.description.allSatisfy { "0123456789abcdef".contains($0) })
        }
    }

    @Test("random ids from one source are distinct")
    func randomIDsAreDistinct() {
        let random = RandomSource(seed: 8)
        #expect(Set((0..<500).map { _ in TraceID.random(using: random) }).count == 500)
        #expect(Set((0..<500).map { _ in SpanID.random(using: random) }).count == 500)
    }

    @Test("ids survive a Codable round trip")
    func codableRoundTrip() throws {
        let trace = TraceID(high: 0x1234, low: .max)
        let span = SpanID(rawValue: 0xFEED)
        let decodedTrace = try JSONDecoder().decode(TraceID.self, from: JSONEncoder().encode(trace))
        let decodedSpan = try JSONDecoder().decode(SpanID.self, from: JSONEncoder().encode(span))
        #expect(decodedTrace == trace)
        #expect(decodedSpan == span)
    }
}
