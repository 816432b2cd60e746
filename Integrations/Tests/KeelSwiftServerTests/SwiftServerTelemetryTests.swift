import CoreMetrics
import KeelCore
import KeelSwiftServer
import MetricsTestKit
import Synchronization
import Testing

@Suite("SwiftServerTelemetry: metrics")
struct SwiftServerTelemetryTests {
    @Test("a counter increments a swift-metrics Counter with the same label and dimensions")
    func counter() throws {
        let metrics = TestMetrics()
        let telemetry = SwiftServerTelemetry(metrics: metrics)
        // Not sorted, so that a bridge that sorted or dropped dimensions would be seen.
        let dimensions = [("service", "worker"), ("request", "Work")]
        let counter = telemetry.makeCounter(label: "keel.requests", dimensions: dimensions)
        counter.increment(by: 1)
        counter.increment(by: 41)

        let recorded = try metrics.expectCounter("keel.requests", dimensions)
        #expect(recorded.totalValue == 42)
        #expect(recorded.values == [1, 41])
        #expect(recorded.label == "keel.requests")
        #expect(recorded.dimensions.map { "\($0.0)=\($0.1)" } == ["service=worker", "request=Work"])
        #expect(metrics.counters.count == 1)
    }

    @Test("a gauge records into a non-aggregating swift-metrics Gauge, last value wins")
    func gauge() throws {
        let metrics = TestMetrics()
        let telemetry = SwiftServerTelemetry(metrics: metrics)
        let gauge = telemetry.makeGauge(label: "keel.bulkhead.in_flight", dimensions: [("bulkhead", "db")])
        gauge.set(3)
        gauge.set(1.5)

        let recorded = try metrics.expectGauge("keel.bulkhead.in_flight", [("bulkhead", "db")])
        #expect(recorded.aggregate == false)
        #expect(recorded.values == [3, 1.5])
        #expect(recorded.lastValue == 1.5)
        #expect(metrics.meters.isEmpty)
    }

    @Test("a timer records nanoseconds into a swift-metrics Timer")
    func timer() throws {
        let metrics = TestMetrics()
        let telemetry = SwiftServerTelemetry(metrics: metrics)
        let timer = telemetry.makeTimer(label: "keel.requests.duration", dimensions: [("service", "worker")])
        timer.record(.milliseconds(3))
        timer.record(.seconds(2) + .nanoseconds(7))
        timer.record(.zero)

        let recorded = try metrics.expectTimer("keel.requests.duration", [("service", "worker")])
        #expect(recorded.values == [3_000_000, 2_000_000_007, 0])
    }

    /// Durations and the nanoseconds a timer must record for them.
    static let conversions: [(Duration, Int64)] = [
        (Duration.nanoseconds(1), Int64(1)),
        (.seconds(-1.5), -1_500_000_000),
        // Fractions of a nanosecond are cut off towards zero.
        (.nanoseconds(5) + .nanoseconds(1) / 2, 5),
        (.nanoseconds(-5) - .nanoseconds(1) / 2, -5),
        // The largest and smallest durations a timer can hold exactly.
        (.nanoseconds(Int64.max), .max),
        (.nanoseconds(Int64.max) - .nanoseconds(1), .max - 1),
        (.nanoseconds(Int64.min), .min),
        (.nanoseconds(Int64.min) + .nanoseconds(1), .min + 1),
        // Beyond them: 292 years and one nanosecond, and durations whose seconds times 10⁹
        // overflow Int64 many times over.
        (.nanoseconds(Int64.max) + .nanoseconds(1), .max),
        (.seconds(Int64.max), .max),
        (.seconds(Int64.max) + .seconds(Int64.max), .max),
        (.seconds(Int64.min), .min),
    ]

    @Test(
        "a timer converts durations to nanoseconds exactly, and clamps those beyond Int64",
        arguments: Self.conversions
    )
    func timerClampsAndIsExact(duration: Duration, nanoseconds: Int64) throws {
        let metrics = TestMetrics()
        let timer = SwiftServerTelemetry(metrics: metrics).makeTimer(label: "t", dimensions: [])
        timer.record(duration)
        #expect(try metrics.expectTimer("t").values == [nanoseconds])
    }

    @Test("a histogram records into an aggregating swift-metrics Recorder")
    func histogram() throws {
        let metrics = TestMetrics()
        let telemetry = SwiftServerTelemetry(metrics: metrics)
        let histogram = telemetry.makeHistogram(label: "keel.batch.size", dimensions: [("stage", "append")])
        histogram.record(12)
        histogram.record(0.25)

        let recorded = try metrics.expectRecorder("keel.batch.size", [("stage", "append")])
        #expect(recorded.aggregate == true)
        #expect(recorded.values == [12, 0.25])
    }

    @Test("each instrument is made once, when Keel makes it, and never again per record")
    func instrumentsAreMadeOnce() throws {
        let factory = CountingFactory()
        let telemetry = SwiftServerTelemetry(metrics: factory)
        let counter = telemetry.makeCounter(label: "c", dimensions: [])
        let gauge = telemetry.makeGauge(label: "g", dimensions: [])
        let timer = telemetry.makeTimer(label: "t", dimensions: [])
        let histogram = telemetry.makeHistogram(label: "h", dimensions: [])
        #expect(factory.made == ["counter c", "recorder g aggregate=false", "timer t", "recorder h aggregate=true"])

        for value in 0..<100 {
            counter.increment(by: 1)
            gauge.set(Double(value))
            timer.record(.microseconds(value))
            histogram.record(Double(value))
        }
        #expect(factory.made.count == 4)
        #expect(try factory.metrics.expectCounter("c").totalValue == 100)
        #expect(try factory.metrics.expectTimer("t").values.count == 100)
    }

    @Test("with metrics off, no metric is made, not even with the task's factory")
    func metricsOff() {
        let bound = CountingFactory()
        // A bridge that fell back to `MetricsSystem.factory` for `nil` would make its metrics here.
        withMetricsFactory(bound) {
            let telemetry = SwiftServerTelemetry(metrics: nil)
            #expect(telemetry.metrics == nil)
            telemetry.makeCounter(label: "c", dimensions: []).increment(by: 1)
            telemetry.makeGauge(label: "g", dimensions: []).set(1)
            telemetry.makeTimer(label: "t", dimensions: []).record(.seconds(1))
            telemetry.makeHistogram(label: "h", dimensions: []).record(1)
        }
        #expect(bound.made.isEmpty)
    }

    @Test("the default factory is the one swift-metrics has bound to the task")
    func defaultFactoryIsTheCurrentOne() throws {
        let metrics = TestMetrics()
        let telemetry = withMetricsFactory(metrics) { SwiftServerTelemetry() }
        #expect(telemetry.metrics as? TestMetrics === metrics)
        telemetry.makeCounter(label: "bound", dimensions: []).increment(by: 2)
        #expect(try metrics.expectCounter("bound").totalValue == 2)
    }

    @Test("spans are not recorded, and a started span carries its context")
    func spansCarryTheirContext() {
        let telemetry = SwiftServerTelemetry(metrics: nil)
        #expect(telemetry.recordsSpans == false)
        let random = RandomSource(seed: 3)
        let parent = TraceContext.makeRoot(using: random)
        let context = parent.makeChild(using: random)
        let span = telemetry.startSpan("request GetUser", context: context, kind: .server)
        span.setAttribute("instance", .int(0))
        span.recordError(CancellationError())
        span.end()
        #expect(span.context == context)
        #expect(span.context.parentSpanID == parent.spanID)
    }
}

/// A swift-metrics factory that logs every handler it makes, then lets ``TestMetrics`` make it.
final class CountingFactory: MetricsFactory {
    let metrics = TestMetrics()
    private let log = Mutex<[String]>([])

    /// What was made, in order.
    var made: [String] {
        self.log.withLock { $0 }
    }

    func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        self.log.withLock { $0.append("counter \(label)") }
        return self.metrics.makeCounter(label: label, dimensions: dimensions)
    }

    func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
        self.log.withLock { $0.append("floating-point counter \(label)") }
        return self.metrics.makeFloatingPointCounter(label: label, dimensions: dimensions)
    }

    func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        self.log.withLock { $0.append("meter \(label)") }
        return self.metrics.makeMeter(label: label, dimensions: dimensions)
    }

    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        self.log.withLock { $0.append("recorder \(label) aggregate=\(aggregate)") }
        return self.metrics.makeRecorder(label: label, dimensions: dimensions, aggregate: aggregate)
    }

    func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        self.log.withLock { $0.append("timer \(label)") }
        return self.metrics.makeTimer(label: label, dimensions: dimensions)
    }

    func destroyCounter(_ handler: any CounterHandler) {
        self.metrics.destroyCounter(handler)
    }

    func destroyMeter(_ handler: any MeterHandler) {
        self.metrics.destroyMeter(handler)
    }

    func destroyRecorder(_ handler: any RecorderHandler) {
        self.metrics.destroyRecorder(handler)
    }

    func destroyTimer(_ handler: any TimerHandler) {
        self.metrics.destroyTimer(handler)
    }
}
