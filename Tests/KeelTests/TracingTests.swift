import Keel
import KeelCore
import KeelTesting
import Testing

private typealias Work = HostFixtures.Work
private typealias Worker = HostFixtures.Worker
private typealias Front = HostFixtures.Front

@Suite("Tracing across requests and events", .timeLimit(.minutes(2)))
struct TracingTests {
    @Test(
        "the bus starts publish and handler spans only when the telemetry records spans; handler durations either way",
        arguments: [false, true]
    )
    func busSpansFollowRecordsSpans(recordsSpans: Bool) async throws {
        let telemetry = SpanCountingTelemetry(recordsSpans: recordsSpans)
        let bus = EventBus(telemetry: telemetry, random: RandomSource(seed: 3))
        let handled = AsyncStream.makeStream(of: String.self)
        try bus.subscribe(to: HostFixtures.Announced.self, name: "listener") { event, _ in
            handled.continuation.yield(event.note)
        }
        try await bus.publish(HostFixtures.Announced(note: "seven"))
        var iterator = handled.stream.makeAsyncIterator()
        #expect(await iterator.next() == "seven")
        await bus.shutdown()

        let names = telemetry.recorder.spans.map(\.name).sorted()
        #expect(names == (recordsSpans ? ["handle listener", "publish hostfixtures.announced"] : []))
        #expect(
            telemetry.recorder.timer("keel.bus.handler.duration", dimensions: [("subscription", "listener")]).count == 1
        )
    }

    @Test("request → handler → publish → subscriber forms one trace tree")
    func requestPublishSubscribeIsOneTrace() async throws {
        let heard = HostFixtures.Values<TraceContext?>()
        let arrivals = HostFixtures.Arrivals()
        let listener = HostFixtures.Listener(heard: heard, arrivals: arrivals)
        let (recorder, envelope) = try await TestHost.with(HostFixtures.Announcer(), listener) { test in
            let subscribers = try await test.client.send(HostFixtures.Announce(note: "hello"))
            #expect(subscribers == 2, "the listener and the test host's recorder")
            await arrivals.wait(for: 1)
            let records = try await test.events.waitFor(count: 1, timeout: .seconds(1), clock: test.clock) { _ in true }
            // Returned so that the spans are read after shutdown, when every span has ended.
            return (test.telemetry, try #require(records.first).envelope)
        }

        let spans = recorder.spans
        let request = try #require(spans.first { $0.name == "announcer.Announce" })
        let publish = try #require(spans.first { $0.name == "publish hostfixtures.announced" })
        let handle = try #require(spans.first { $0.name == "handle listener:hostfixtures.announced" })

        // One trace, linked request → publish → handle.
        #expect(Set(spans.map(\.context.traceID)) == [request.context.traceID])
        #expect(request.kind == .server)
        #expect(request.context.parentSpanID == nil)
        #expect(publish.kind == .producer)
        #expect(publish.context.parentSpanID == request.context.spanID)
        #expect(handle.kind == .consumer)
        #expect(handle.context.parentSpanID == publish.context.spanID)
        #expect(spans.allSatisfy { $0.end != nil }, "a span was left running")

        // The envelope carries the trace, and the subscriber ran in the handle span's context.
        #expect(envelope.source == "announcer")
        #expect(envelope.traceID == request.context.traceID)
        #expect(envelope.spanID == publish.context.spanID)
        let context = try #require(heard.all.first ?? nil)
        #expect(context.traceID == request.context.traceID)
        #expect(context.spanID == handle.context.spanID)
        #expect(context.parentSpanID == publish.context.spanID)
        #expect(context.causationID == envelope.id.description)
        #expect(context.correlationID == request.context.correlationID)

        let lines = recorder.renderTrace(request.context.traceID).split(separator: "\n").map(String.init)
        #expect(lines.count == 4, "request, publish and the two subscribers' handle spans")
        #expect(lines.first?.hasPrefix("announcer.Announce (server) 0.000 ms") == true)
        #expect(lines.dropFirst().first?.hasPrefix("  publish hostfixtures.announced (producer) 0.000 ms") == true)
        #expect(lines.contains("    handle listener:hostfixtures.announced (consumer) 0.000 ms"))
        #expect(lines.contains("    handle recorder:# (consumer) 0.000 ms"))
    }

    @Test("a nested request's span is a child of its caller's")
    func nestedRequestSpans() async throws {
        let seen = HostFixtures.Values<TraceContext?>()
        let worker = Worker { _ in seen.append(TraceContext.current) }
        let recorder = try await TestHost.with(HostFixtures.Caller<Front>(), worker) { test in
            _ = try await test.client.send(HostFixtures.Relay<Front>(value: 1))
            return test.telemetry
        }
        let spans = recorder.spans
        #expect(spans.map(\.name) == ["front.Relay<Front>", "worker.Work"])
        #expect(spans.map(\.kind) == [.server, .server])
        #expect(spans[1].context.traceID == spans[0].context.traceID)
        #expect(spans[1].context.parentSpanID == spans[0].context.spanID)
        #expect(seen.all.first??.spanID == spans[1].context.spanID, "the handler runs in its request's span")
        #expect(
            recorder.renderTrace(spans[0].context.traceID)
                == "front.Relay<Front> (server) 0.000 ms\n  worker.Work (server) 0.000 ms"
        )
    }

    @Test("a request from a traced caller joins the caller's trace")
    func externalContextIsJoined() async throws {
        let seen = HostFixtures.Values<TraceContext?>()
        let worker = Worker { _ in seen.append(TraceContext.current) }
        try await TestHost.with(worker) { test in
            let root = TraceContext.makeRoot(using: RandomSource(seed: 99), correlationID: "order-7")
            try await TraceContext.$current.withValue(root) {
                _ = try await test.client.send(Work(value: 1))
            }
            let span = try #require(test.telemetry.spans.first)
            #expect(span.context.traceID == root.traceID)
            #expect(span.context.parentSpanID == root.spanID)
            let context = try #require(seen.all.first ?? nil)
            #expect(context.traceID == root.traceID)
            #expect(context.correlationID == "order-7")
            #expect(context.spanID == span.context.spanID)
        }
    }

    @Test("a failed request records its error on the span and in the failure counter")
    func failureIsRecorded() async throws {
        let worker = Worker { _ in throw HostFixtures.WorkFailure(reason: "nope") }
        try await TestHost.with(worker) { test in
            let error = await HostFixtures.failure { try await test.client.send(Work(value: 1)) }
            #expect(error?.code == .handlerFailed)
            let span = try #require(test.telemetry.spans.first)
            #expect(span.errors.count == 1)
            #expect(span.errors.first?.contains("handlerFailed") == true)
            let dimensions = [("service", "worker"), ("request", "Work")]
            #expect(test.telemetry.counter("keel.requests", dimensions: dimensions) == 1)
            #expect(test.telemetry.counter("keel.requests.failed", dimensions: dimensions) == 1)
        }
    }

    @Test("request spans and latency are timed on the host's clock")
    func latencyIsTimedOnTheClock() async throws {
        let clock = TestClock()
        let worker = Worker { _ in try await clock.sleep(for: .seconds(3)) }
        try await TestHost.with(worker, clock: clock) { test in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { _ = try await test.client.send(Work(value: 1)) }
                await clock.waitForSleepers(count: 1)
                clock.advance(by: .seconds(3))
                try await group.waitForAll()
            }
            let dimensions = [("service", "worker"), ("request", "Work")]
            #expect(test.telemetry.timer("keel.requests.duration", dimensions: dimensions) == [.seconds(3)])
            #expect(test.telemetry.spans.first?.duration == .seconds(3))
        }
    }
}
