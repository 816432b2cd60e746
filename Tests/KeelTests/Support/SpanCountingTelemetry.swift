import KeelCore
import KeelTesting
import Synchronization

/// Telemetry that counts the spans it is asked for and records metrics in memory; whether it
/// records spans is up to the test.
final class SpanCountingTelemetry: Telemetry {
    let recorder = InMemoryRecorder(clock: TestClock())
    private let records: Bool
    private let started = Atomic<Int>(0)

    init(recordsSpans: Bool) {
        self.records = recordsSpans
    }

    /// How many spans were started.
    var spansStarted: Int { self.started.load(ordering: .relaxed) }

    var recordsSpans: Bool { self.records }

    func makeCounter(label: String, dimensions: [(String, String)]) -> any TelemetryCounter {
        self.recorder.makeCounter(label: label, dimensions: dimensions)
    }

    func makeGauge(label: String, dimensions: [(String, String)]) -> any TelemetryGauge {
        self.recorder.makeGauge(label: label, dimensions: dimensions)
    }

    func makeTimer(label: String, dimensions: [(String, String)]) -> any TelemetryTimer {
        self.recorder.makeTimer(label: label, dimensions: dimensions)
    }

    func makeHistogram(label: String, dimensions: [(String, String)]) -> any TelemetryHistogram {
        self.recorder.makeHistogram(label: label, dimensions: dimensions)
    }

    func startSpan(_ operationName: String, context: TraceContext, kind: TelemetrySpanKind) -> any TelemetrySpan {
        self.started.wrappingAdd(1, ordering: .relaxed)
        return self.recorder.startSpan(operationName, context: context, kind: kind)
    }
}
