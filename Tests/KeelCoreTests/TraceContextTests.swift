import Foundation
import KeelCore
import KeelTesting
import Testing

@Suite("TraceContext", .timeLimit(.minutes(2)))
struct TraceContextTests {
    @Test("a root starts a trace with no parent, correlated by its trace id unless told otherwise")
    func root() {
        let random = RandomSource(seed: 1)
        let root = TraceContext.makeRoot(using: random)
        #expect(root.parentSpanID == nil)
        #expect(root.causationID == nil)
        #expect(root.deadline == nil)
        #expect(root.correlationID == root.traceID.description)
        #expect(root.description == "\(root.traceID)/\(root.spanID)")

        let named = TraceContext.makeRoot(using: random, correlationID: "order-17")
        #expect(named.correlationID == "order-17")
        #expect(named.traceID != root.traceID)
    }

    @Test("roots are deterministic for a seed")
    func deterministicRoots() {
        let first = TraceContext.makeRoot(using: RandomSource(seed: 77))
        let second = TraceContext.makeRoot(using: RandomSource(seed: 77))
        #expect(first.traceID == second.traceID)
        #expect(first.spanID == second.spanID)
    }

    @Test("a root's ids are its source's next three draws: the trace id's halves, then the span id")
    func rootDrawsThree() {
        let draws = RandomSource(seed: 77)
        let (high, low, span) = (draws.next(), draws.next(), draws.next())
        let random = RandomSource(seed: 77)
        let root = TraceContext.makeRoot(using: random)
        #expect(root.traceID == TraceID(high: high, low: low | 1))
        #expect(root.spanID == SpanID(rawValue: span | 1))
        #expect(random.next() == draws.next(), "a root draws exactly three values")
    }

    @Test("a child keeps the trace, correlation, causation and deadline and points at its parent")
    func child() {
        let random = RandomSource(seed: 2)
        let clock = TestClock()
        var root = TraceContext.makeRoot(using: random, correlationID: "order-1")
        root.causationID = "event-9"
        root.deadline = .after(.seconds(4), on: clock)

        let child = root.makeChild(using: random)
        #expect(child.traceID == root.traceID)
        #expect(child.parentSpanID == root.spanID)
        #expect(child.spanID != root.spanID)
        #expect(child.correlationID == "order-1")
        #expect(child.causationID == "event-9")
        #expect(child.deadline?.remaining(on: clock) == .seconds(4))

        let grandchild = child.makeChild(using: random)
        #expect(grandchild.traceID == root.traceID)
        #expect(grandchild.parentSpanID == child.spanID)
        #expect(Set([root.spanID, child.spanID, grandchild.spanID]).count == 3)
    }

    @Test("makeChildOfCurrent starts a root when nothing is bound and a child when something is")
    func childOfCurrent() {
        let random = RandomSource(seed: 3)
        #expect(TraceContext.current == nil)
        let orphan = TraceContext.makeChildOfCurrent(using: random)
        #expect(orphan.parentSpanID == nil)

        let root = TraceContext.makeRoot(using: random)
        TraceContext.$current.withValue(root) {
            #expect(TraceContext.current == root)
            let child = TraceContext.makeChildOfCurrent(using: random)
            #expect(child.traceID == root.traceID)
            #expect(child.parentSpanID == root.spanID)
        }
        #expect(TraceContext.current == nil)
    }

    @Test("binding nests and restores the outer context")
    func nestedBinding() {
        let random = RandomSource(seed: 4)
        let outer = TraceContext.makeRoot(using: random)
        let inner = outer.makeChild(using: random)
        TraceContext.$current.withValue(outer) {
            TraceContext.$current.withValue(inner) {
                #expect(TraceContext.current == inner)
            }
            #expect(TraceContext.current == outer)
        }
    }

    @Test("child tasks of a task group inherit the bound context")
    func inheritedByTaskGroupChildren() async {
        let random = RandomSource(seed: 5)
        let root = TraceContext.makeRoot(using: random)
        let seen = await TraceContext.$current.withValue(root) {
            await withTaskGroup(of: (TraceContext?, TraceContext).self) { group in
                for _ in 0..<20 {
                    group.addTask {
                        (TraceContext.current, TraceContext.makeChildOfCurrent(using: random))
                    }
                }
                return await group.reduce(into: []) { $0.append($1) }
            }
        }
        #expect(seen.count == 20)
        for (current, child) in seen {
            #expect(current == root)
            #expect(child.traceID == root.traceID)
            #expect(child.parentSpanID == root.spanID)
        }
        #expect(Set(seen.map(\.1.spanID)).count == 20)
        #expect(TraceContext.current == nil)
    }

    @Test("a child task can rebind without affecting its siblings")
    func rebindingInChildTask() async {
        let random = RandomSource(seed: 6)
        let root = TraceContext.makeRoot(using: random)
        let other = TraceContext.makeRoot(using: random)
        let seen = await TraceContext.$current.withValue(root) {
            await withTaskGroup(of: (Int, TraceContext?).self) { group in
                group.addTask { TraceContext.$current.withValue(other) { (0, TraceContext.current) } }
                group.addTask { (1, TraceContext.current) }
                return await group.reduce(into: [Int: TraceContext?]()) { $0[$1.0] = $1.1 }
            }
        }
        #expect(seen[0] == other)
        #expect(seen[1] == root)
    }

    @Test("a Codable round trip keeps the ids and drops the deadline")
    func codableRoundTrip() throws {
        let random = RandomSource(seed: 7)
        var context = TraceContext.makeRoot(using: random, correlationID: "order-3").makeChild(using: random)
        context.causationID = "event-1"
        context.deadline = .after(.seconds(1), on: TestClock())

        let data = try JSONEncoder().encode(context)
        let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(Set(json.keys) == ["traceID", "spanID", "parentSpanID", "correlationID", "causationID"])

        let decoded = try JSONDecoder().decode(TraceContext.self, from: data)
        #expect(decoded.traceID == context.traceID)
        #expect(decoded.spanID == context.spanID)
        #expect(decoded.parentSpanID == context.parentSpanID)
        #expect(decoded.correlationID == "order-3")
        #expect(decoded.causationID == "event-1")
        #expect(decoded.deadline == nil)
        #expect(decoded == context, "contexts that differ only in their deadline are equal")
    }

    @Test("a root without parent or causation round-trips too")
    func codableRoundTripOfRoot() throws {
        let root = TraceContext.makeRoot(using: RandomSource(seed: 8))
        let decoded = try JSONDecoder().decode(TraceContext.self, from: JSONEncoder().encode(root))
        #expect(decoded == root)
        #expect(decoded.parentSpanID == nil)
        #expect(decoded.causationID == nil)
    }

    @Test("equality compares ids, correlation and causation")
    func equality() {
        let root = TraceContext.makeRoot(using: RandomSource(seed: 9))
        var recaused = root
        recaused.causationID = "other"
        #expect(recaused != root)
        var recorrelated = root
        recorrelated.correlationID = "other"
        #expect(recorrelated != root)
        var deadlined = root
        deadlined.deadline = .after(.seconds(1), on: TestClock())
        #expect(deadlined == root)
        #expect(deadlined.hashValue == root.hashValue)
    }
}
