import KeelCore
import KeelTesting
import Testing

@Suite("InMemoryRecorder", .timeLimit(.minutes(2)))
struct InMemoryRecorderTests {
    @Test("the recorder records spans; the no-op telemetry says it records none; a telemetry says yes by default")
    func recordsSpans() {
        struct Forwarding: Telemetry {
            let base = NoOpTelemetry()
            func makeCounter(label: String, dimensions: [(String, String)]) -> any TelemetryCounter {
                self.base.makeCounter(label: label, dimensions: dimensions)
            }
            func makeGauge(label: String, dimensions: [(String, String)]) -> any TelemetryGauge {
                self.base.makeGauge(label: label, dimensions: dimensions)
            }
            func makeTimer(label: String, dimensions: [(String, String)]) -> any TelemetryTimer {
                self.base.makeTimer(label: label, dimensions: dimensions)
            }
            func makeHistogram(label: String, dimensions: [(String, String)]) -> any TelemetryHistogram {
                self.base.makeHistogram(label: label, dimensions: dimensions)
            }
            func startSpan(
                _ operationName: String,
                context: TraceContext,
                kind: TelemetrySpanKind
            )
                -> any TelemetrySpan
            {
                self.base.startSpan(operationName, context: context, kind: kind)
            }
        }
        #expect(InMemoryRecorder(clock: TestClock()).recordsSpans)
        #expect(!NoOpTelemetry().recordsSpans)
        #expect(Forwarding().recordsSpans, "the default, for telemetries written before the requirement")
        #expect(!(NoOpTelemetry() as any Telemetry).recordsSpans, "dispatched through the protocol")
    }

    // MARK: Metrics

    @Test("counters add up per label and dimensions, whatever the dimension order")
    func counters() {
        let recorder = InMemoryRecorder(clock: TestClock())
        #expect(recorder.counter("requests") == 0)

        let plain = recorder.makeCounter(label: "requests")
        plain.increment(by: 2)
        plain.increment(by: 3)
        #expect(recorder.counter("requests") == 5)

        let routed = recorder.makeCounter(label: "requests", dimensions: [("route", "/a"), ("method", "GET")])
        routed.increment(by: 7)
        #expect(recorder.counter("requests", dimensions: [("method", "GET"), ("route", "/a")]) == 7)
        #expect(recorder.counter("requests", dimensions: [("route", "/a")]) == 0)
        #expect(recorder.counter("requests") == 5)

        recorder.makeCounter(label: "requests.failed").increment(by: 100)
        #expect(recorder.counterTotal("requests") == 12)
        #expect(recorder.counterTotal("requests.failed") == 100)
        #expect(recorder.counterTotal("absent") == 0)
    }

    @Test("handlers made separately for the same key share one value")
    func handlersShareKey() {
        let recorder = InMemoryRecorder(clock: TestClock())
        recorder.makeCounter(label: "hits", dimensions: [("a", "1")]).increment(by: 1)
        recorder.makeCounter(label: "hits", dimensions: [("a", "1")]).increment(by: 1)
        #expect(recorder.counter("hits", dimensions: [("a", "1")]) == 2)
    }

    @Test("a gauge holds its last value")
    func gauges() {
        let recorder = InMemoryRecorder(clock: TestClock())
        #expect(recorder.gauge("depth") == nil)
        let gauge = recorder.makeGauge(label: "depth", dimensions: [])
        gauge.set(1.5)
        gauge.set(-3)
        #expect(recorder.gauge("depth") == -3)
        #expect(recorder.gauge("depth", dimensions: [("x", "y")]) == nil)
    }

    @Test("a timer keeps every duration in recording order")
    func timers() {
        let recorder = InMemoryRecorder(clock: TestClock())
        #expect(recorder.timer("latency").isEmpty)
        let timer = recorder.makeTimer(label: "latency", dimensions: [("route", "/")])
        timer.record(.milliseconds(3))
        timer.record(.milliseconds(1))
        timer.record(.milliseconds(2))
        #expect(
            recorder.timer("latency", dimensions: [("route", "/")]) == [
                .milliseconds(3), .milliseconds(1), .milliseconds(2),
            ]
        )
        #expect(recorder.timer("latency").isEmpty)
    }

    @Test("increments from many concurrent tasks are never lost")
    func concurrentIncrements() async {
        let recorder = InMemoryRecorder(clock: TestClock())
        let shared = recorder.makeCounter(label: "shared")
        await withTaskGroup(of: Void.self) { group in
            for task in 0..<100 {
                group.addTask {
                    let own = recorder.makeCounter(
                        label: "own",
                        dimensions: [("parity", task % 2 == 0 ? "even" : "odd")]
                    )
                    let timer = recorder.makeTimer(label: "work", dimensions: [])
                    for _ in 0..<100 {
                        shared.increment(by: 1)
                        own.increment(by: 1)
                    }
                    timer.record(.milliseconds(Int64(task)))
                }
            }
        }
        #expect(recorder.counter("shared") == 10_000)
        #expect(recorder.counter("own", dimensions: [("parity", "even")]) == 5_000)
        #expect(recorder.counter("own", dimensions: [("parity", "odd")]) == 5_000)
        #expect(recorder.counterTotal("own") == 10_000)
        #expect(Set(recorder.timer("work")) == Set((0..<100).map { Duration.milliseconds($0) }))
    }

    @Test("renderMetrics lists every metric, sorted by kind then key")
    func renderMetrics() {
        let recorder = InMemoryRecorder(clock: TestClock())
        #expect(recorder.renderMetrics() == "")

        recorder.makeCounter(label: "requests", dimensions: [("route", "/b"), ("method", "GET")]).increment(by: 2)
        recorder.makeCounter(label: "errors").increment(by: 1)
        recorder.makeGauge(label: "queue.depth", dimensions: []).set(3.5)
        let latency = recorder.makeTimer(label: "latency", dimensions: [])
        for milliseconds in [3, 1, 2, 10] {
            latency.record(.milliseconds(milliseconds))
        }
        let precise = recorder.makeTimer(label: "precise", dimensions: [])
        precise.record(.microseconds(1))
        precise.record(.seconds(2) + .microseconds(345))
        let size = recorder.makeHistogram(label: "size", dimensions: [])
        for value in [5.0, 1, 3] {
            size.record(value)
        }

        #expect(
            recorder.renderMetrics() == """
                counter errors = 1
                counter requests{method=GET,route=/b} = 2
                gauge queue.depth = 3.5
                timer latency count=4 p50=3.000 ms max=10.000 ms
                timer precise count=2 p50=2000.345 ms max=2000.345 ms
                histogram size count=3 p50=3.0 max=5.0
                """
        )
    }

    @Test("a negative duration shorter than a millisecond keeps its sign")
    func negativeSubMillisecondDuration() {
        let recorder = InMemoryRecorder(clock: TestClock())
        recorder.makeTimer(label: "skew", dimensions: []).record(.microseconds(-500))
        recorder.makeTimer(label: "skew.large", dimensions: []).record(.microseconds(-1500))
        #expect(
            recorder.renderMetrics() == """
                timer skew count=1 p50=-0.500 ms max=-0.500 ms
                timer skew.large count=1 p50=-1.500 ms max=-1.500 ms
                """
        )
    }

    @Test("reset forgets every metric and span")
    func reset() {
        let recorder = InMemoryRecorder(clock: TestClock())
        recorder.makeCounter(label: "c").increment(by: 1)
        recorder.startSpan("work", context: .makeRoot(using: RandomSource(seed: 1)), kind: .internal).end()
        recorder.reset()
        #expect(recorder.counter("c") == 0)
        #expect(recorder.spans.isEmpty)
        #expect(recorder.renderMetrics() == "")
    }

    // MARK: Spans

    @Test("span times come from the recorder's clock")
    func spanTimes() throws {
        let clock = TestClock(now: .init(offset: .seconds(100)))
        let recorder = InMemoryRecorder(clock: clock)
        clock.advance(by: .milliseconds(5))
        let context = TraceContext.makeRoot(using: RandomSource(seed: 2))
        let span = recorder.startSpan("work", context: context, kind: .internal)
        #expect(recorder.spans.first?.start == .milliseconds(5), "start is measured from the recorder's creation")
        #expect(recorder.spans.first?.duration == nil)

        clock.advance(by: .milliseconds(20))
        span.end()
        clock.advance(by: .milliseconds(20))
        span.end()
        let recorded = try #require(recorder.spans.first)
        #expect(recorded.end == .milliseconds(25))
        #expect(recorded.duration == .milliseconds(20), "a second end() moved the end")
        #expect(recorded.context == context)
        #expect(recorded.kind == .internal)
        #expect(recorded.name == "work")
    }

    @Test("renderTrace draws the span tree with exact durations, attributes and errors")
    func renderTrace() {
        let clock = TestClock()
        let recorder = InMemoryRecorder(clock: clock)
        let random = RandomSource(seed: 3)

        let rootContext = TraceContext.makeRoot(using: random)
        let request = recorder.startSpan("request PlaceOrder", context: rootContext, kind: .client)
        clock.advance(by: .microseconds(100))
        let handleContext = rootContext.makeChild(using: random)
        let handle = recorder.startSpan("handle PlaceOrder", context: handleContext, kind: .server)
        clock.advance(by: .microseconds(50))
        let getUser = recorder.startSpan(
            "request GetUser",
            context: handleContext.makeChild(using: random),
            kind: .client
        )
        clock.advance(by: .microseconds(101))
        getUser.setAttribute("retries", .int(2))
        getUser.setAttribute("cached", .bool(false))
        getUser.end()
        let publishContext = handleContext.makeChild(using: random)
        let publish = recorder.startSpan("publish order.created", context: publishContext, kind: .producer)
        clock.advance(by: .microseconds(12))
        publish.end()
        let consume = recorder.startSpan(
            "handle order.created",
            context: publishContext.makeChild(using: random),
            kind: .consumer
        )
        clock.advance(by: .microseconds(51))
        consume.recordError(Failure(text: "boom"))
        consume.end()
        let unrelated = recorder.startSpan("other", context: .makeRoot(using: random), kind: .internal)
        unrelated.end()
        clock.advance(by: .microseconds(936))
        handle.setAttribute("status", .string("ok"))
        handle.end()
        clock.advance(by: .microseconds(54))
        request.end()
        _ = recorder.startSpan("audit", context: handleContext.makeChild(using: random), kind: .internal)

        #expect(
            recorder.renderTrace(rootContext.traceID) == """
                request PlaceOrder (client) 1.304 ms
                  handle PlaceOrder (server) 1.150 ms [status=ok]
                    request GetUser (client) 0.101 ms [cached=false, retries=2]
                    publish order.created (producer) 0.012 ms
                      handle order.created (consumer) 0.051 ms error: boom
                    audit (internal) (running)
                """
        )
        #expect(recorder.spans(inTrace: rootContext.traceID).count == 6)
        #expect(recorder.spans.count == 7)
    }

    @Test("spans whose parent is not recorded render as roots, in start order")
    func orphansRenderAsRoots() {
        let clock = TestClock()
        let recorder = InMemoryRecorder(clock: clock)
        let random = RandomSource(seed: 4)
        let remote = TraceContext.makeRoot(using: random)
        let first = remote.makeChild(using: random)
        let second = remote.makeChild(using: random)
        recorder.startSpan("first", context: first, kind: .server).end()
        clock.advance(by: .milliseconds(1))
        let child = recorder.startSpan("child", context: second.makeChild(using: random), kind: .internal)
        let secondSpan = recorder.startSpan("second", context: second, kind: .server)
        clock.advance(by: .milliseconds(2))
        child.end()
        secondSpan.end()
        // "child" started before its parent: it is still drawn under it once the parent is known.
        #expect(
            recorder.renderTrace(remote.traceID) == """
                first (server) 0.000 ms
                second (server) 2.000 ms
                  child (internal) 2.000 ms
                """
        )
        #expect(recorder.renderTrace(TraceID(high: 1, low: 1)) == "")
    }
}

private struct Failure: Error, CustomStringConvertible {
    var text: String
    var description: String { self.text }
}
