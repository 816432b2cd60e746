import KeelCore
import KeelTesting
import Testing

@Suite("Telemetry.withSpan", .timeLimit(.minutes(2)))
struct WithSpanTests {
    private struct Refused: Error, CustomStringConvertible {
        var description: String { "refused" }
    }

    @Test("the body runs with the span's context bound, a child of the caller's context")
    func bindsCurrentAsChild() async throws {
        let recorder = InMemoryRecorder(clock: TestClock())
        let random = RandomSource(seed: 1)
        let root = TraceContext.makeRoot(using: random, correlationID: "order-5")

        let (inside, spanContext) = await TraceContext.$current.withValue(root) {
            await recorder.withSpan("handle GetUser", kind: .server, random: random) { span in
                (TraceContext.current, span.context)
            }
        }
        #expect(inside == spanContext)
        #expect(spanContext.traceID == root.traceID)
        #expect(spanContext.parentSpanID == root.spanID)
        #expect(spanContext.correlationID == "order-5")
        #expect(TraceContext.current == nil)

        let recorded = try #require(recorder.spans.first)
        #expect(recorder.spans.count == 1)
        #expect(recorded.name == "handle GetUser")
        #expect(recorded.kind == .server)
        #expect(recorded.context == spanContext)
        #expect(recorded.end != nil)
        #expect(recorded.errors.isEmpty)
        #expect(recorded.attributes.isEmpty)
    }

    @Test("without a bound context the span starts a new trace")
    func startsRootWithoutContext() async throws {
        let recorder = InMemoryRecorder(clock: TestClock())
        let context = await recorder.withSpan("tick", random: RandomSource(seed: 2)) { span in span.context }
        #expect(context.parentSpanID == nil)
        #expect(try #require(recorder.spans.first).kind == .internal)
    }

    @Test("the span lasts exactly as long as the body, on the recorder's clock")
    func durationFromClock() async throws {
        let clock = TestClock()
        let recorder = InMemoryRecorder(clock: clock)
        let value = await recorder.withSpan("work", random: RandomSource(seed: 3)) { span in
            clock.advance(by: .milliseconds(7))
            span.setAttribute("items", .int(3))
            return 42
        }
        #expect(value == 42)
        let recorded = try #require(recorder.spans.first)
        #expect(recorded.duration == .milliseconds(7))
        #expect(recorded.attributes == ["items": .int(3)])
    }

    @Test("a thrown error is recorded on the span and rethrown with its type")
    func recordsErrors() async throws {
        let recorder = InMemoryRecorder(clock: TestClock())
        await #expect(throws: Refused.self) {
            try await recorder.withSpan("charge", random: RandomSource(seed: 4)) { (_) throws(Refused) -> Int in
                throw Refused()
            }
        }
        let recorded = try #require(recorder.spans.first)
        #expect(recorded.errors == ["refused"])
        #expect(recorded.attributes["cancelled"] == nil)
        #expect(recorded.end != nil, "a failed span was not ended")
    }

    @Test("CancellationError marks the span cancelled instead of failed")
    func cancellationIsNotAnError() async throws {
        let recorder = InMemoryRecorder(clock: TestClock())
        await #expect(throws: CancellationError.self) {
            try await recorder.withSpan("wait", random: RandomSource(seed: 5)) { _ in
                throw CancellationError()
            }
        }
        let recorded = try #require(recorder.spans.first)
        #expect(recorded.errors.isEmpty)
        #expect(recorded.attributes == ["cancelled": .bool(true)])
        #expect(recorded.end != nil)
    }

    @Test("a span around a sleep that is cancelled is marked cancelled and ends at the cancellation")
    func cancelledSleepInsideSpan() async throws {
        let clock = TestClock()
        let recorder = InMemoryRecorder(clock: clock)
        let random = RandomSource(seed: 6)
        await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await recorder.withSpan("backoff", random: random) { _ in
                    try await clock.sleep(for: .seconds(10))
                }
            }
            await clock.waitForSleepers(count: 1)
            clock.advance(by: .seconds(3))
            group.cancelAll()
            let result = await group.nextResult()
            #expect(throws: CancellationError.self) { try result?.get() }
        }
        let recorded = try #require(recorder.spans.first)
        #expect(recorded.attributes == ["cancelled": .bool(true)])
        #expect(recorded.duration == .seconds(3))
    }

    @Test("a span around a sleep lasts until the clock wakes it")
    func sleepInsideSpan() async throws {
        let clock = TestClock()
        let recorder = InMemoryRecorder(clock: clock)
        let random = RandomSource(seed: 7)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await recorder.withSpan("retry", random: random) { _ in
                    try await clock.sleep(for: .seconds(2))
                }
            }
            await clock.waitForSleepers(count: 1)
            clock.advance(by: .seconds(2))
            try await group.waitForAll()
        }
        #expect(try #require(recorder.spans.first).duration == .seconds(2))
    }

    @Test("nested spans and spans in child tasks form one tree")
    func nestedSpansFormATree() async throws {
        let clock = TestClock()
        let recorder = InMemoryRecorder(clock: clock)
        let random = RandomSource(seed: 8)
        let outer = await recorder.withSpan("checkout", kind: .server, random: random) { span in
            await recorder.withSpan("reserve stock", kind: .client, random: random) { _ in
                clock.advance(by: .milliseconds(2))
            }
            await recorder.withSpan("charge card", kind: .client, random: random) { _ in
                clock.advance(by: .milliseconds(3))
            }
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<5 {
                    group.addTask {
                        await recorder.withSpan("notify", kind: .producer, random: random) { _ in }
                    }
                }
            }
            clock.advance(by: .milliseconds(1))
            return span.context
        }

        #expect(
            recorder.renderTrace(outer.traceID) == """
                checkout (server) 6.000 ms
                  reserve stock (client) 2.000 ms
                  charge card (client) 3.000 ms
                  notify (producer) 0.000 ms
                  notify (producer) 0.000 ms
                  notify (producer) 0.000 ms
                  notify (producer) 0.000 ms
                  notify (producer) 0.000 ms
                """
        )
        let children = recorder.spans.filter { $0.context.parentSpanID == outer.spanID }
        #expect(children.count == 7)
        #expect(Set(recorder.spans.map(\.context.spanID)).count == 8)
    }

    @Test("withSpan on the no-op telemetry still binds the context and returns the value")
    func noOpTelemetry() async throws {
        let telemetry = NoOpTelemetry()
        let random = RandomSource(seed: 9)
        let root = TraceContext.makeRoot(using: random)
        let (value, bound) = await TraceContext.$current.withValue(root) {
            await telemetry.withSpan("work", random: random) { span in
                (7, TraceContext.current == span.context)
            }
        }
        #expect(value == 7)
        #expect(bound)
        await #expect(throws: Refused.self) {
            try await telemetry.withSpan("fail", random: random) { _ in throw Refused() }
        }
        let handle = telemetry.startSpan("x", context: root, kind: .client)
        #expect(handle.context == root)
        handle.setAttribute("a", .string("b"))
        handle.recordError(Refused())
        handle.end()
    }
}
