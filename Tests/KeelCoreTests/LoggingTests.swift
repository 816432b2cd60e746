import KeelCore
import Synchronization
import Testing

/// The logging seam of ``Telemetry``: defaults, levels, lazy messages, and the trace context.
@Suite("Logging through Telemetry")
struct LoggingTests {
    /// Records metrics nowhere and keeps the log records it is given.
    final class Sink: Telemetry {
        let logLevel: LogLevel?
        let records = Mutex<[LogRecord]>([])

        init(logLevel: LogLevel?) {
            self.logLevel = logLevel
        }

        func log(_ record: LogRecord) {
            self.records.withLock { $0.append(record) }
        }

        func makeCounter(label: String, dimensions: [(String, String)]) -> any TelemetryCounter {
            NoOpTelemetry().makeCounter(label: label, dimensions: dimensions)
        }
        func makeGauge(label: String, dimensions: [(String, String)]) -> any TelemetryGauge {
            NoOpTelemetry().makeGauge(label: label, dimensions: dimensions)
        }
        func makeTimer(label: String, dimensions: [(String, String)]) -> any TelemetryTimer {
            NoOpTelemetry().makeTimer(label: label, dimensions: dimensions)
        }
        func makeHistogram(label: String, dimensions: [(String, String)]) -> any TelemetryHistogram {
            NoOpTelemetry().makeHistogram(label: label, dimensions: dimensions)
        }
        func startSpan(_ operationName: String, context: TraceContext, kind: TelemetrySpanKind) -> any TelemetrySpan {
            NoOpTelemetry().startSpan(operationName, context: context, kind: kind)
        }
    }

    /// Counts how often a message or metadata closure is evaluated.
    final class Evaluations: Sendable {
        let count = Atomic<Int>(0)

        func message(_ text: String) -> String {
            self.count.add(1, ordering: .relaxed)
            return text
        }
    }

    @Test("levels order by severity, with the names swift-log uses")
    func levelOrder() {
        #expect(LogLevel.allCases == [.trace, .debug, .info, .notice, .warning, .error, .critical])
        #expect(LogLevel.allCases.sorted() == LogLevel.allCases)
        #expect(LogLevel.trace < .critical && !(LogLevel.error < .warning))
        #expect(
            LogLevel.allCases.map(\.description) == [
                "trace", "debug", "info", "notice", "warning", "error", "critical",
            ]
        )
    }

    @Test("a telemetry that says nothing about logs logs nothing, and evaluates no message")
    func defaultsLogNothing() {
        let evaluations = Evaluations()
        let telemetry: any Telemetry = NoOpTelemetry()
        #expect(telemetry.logLevel == nil)
        for level in LogLevel.allCases {
            #expect(!telemetry.isLogging(level))
            telemetry.log(level, source: "test", evaluations.message("never"))
        }
        #expect(evaluations.count.load(ordering: .relaxed) == 0)
    }

    @Test("records below the telemetry's level are dropped before the message is built")
    func levelFilters() {
        let evaluations = Evaluations()
        let sink = Sink(logLevel: .warning)
        for level in LogLevel.allCases {
            sink.log(level, source: "test", evaluations.message("\(level)"), metadata: ["level": "\(level)"])
        }
        let records = sink.records.withLock { $0 }
        #expect(records.map(\.level) == [.warning, .error, .critical])
        #expect(records.map(\.message) == ["warning", "error", "critical"])
        #expect(records.map { $0.metadata["level"] } == ["warning", "error", "critical"])
        #expect(evaluations.count.load(ordering: .relaxed) == 3, "messages below the level were built")
        #expect(records.allSatisfy { $0.source == "test" && $0.file.hasSuffix("LoggingTests.swift") })
    }

    @Test("a record carries the trace context current where it is written")
    func recordCarriesCurrentTrace() {
        let sink = Sink(logLevel: .trace)
        let context = TraceContext.makeRoot(using: RandomSource(seed: 3), correlationID: "order-7")
        sink.log(.info, source: "test", "outside")
        TraceContext.$current.withValue(context) {
            sink.log(.info, source: "test", "inside")
        }
        let records = sink.records.withLock { $0 }
        #expect(records.map(\.trace) == [nil, context])
        #expect(records.last?.trace?.correlationID == "order-7")
    }

    @Test("the in-memory recorder keeps records from its level up, in order, by source")
    func recorderKeepsLogs() {
        let recorder = InMemoryRecorder(logLevel: .info)
        recorder.log(.debug, source: "a", "dropped")
        recorder.log(.info, source: "a", "one")
        recorder.log(.error, source: "b", "two")
        recorder.log(.notice, source: "a", "three")
        #expect(recorder.logs.map(\.message) == ["one", "two", "three"])
        #expect(recorder.logs(from: "a").map(\.message) == ["one", "three"])
        #expect(InMemoryRecorder(logLevel: nil).isLogging(.critical) == false)
        #expect(InMemoryRecorder().isLogging(.trace))
    }
}
