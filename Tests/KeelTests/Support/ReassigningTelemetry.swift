import KeelCore
import Synchronization

/// A telemetry that stands for a tracer with ids of its own: every span it starts gets the trace
/// id ``traceID`` and the next of its own span ids (from 0xA000), under the parent Keel gave, and
/// binds ``ReassigningTelemetry/activeSpan`` (its "own context", as a tracing library's
/// task-local would be) while the work it covers runs.
final class ReassigningTelemetry: Telemetry {
    /// The trace id of every span: the tracer's, not Keel's.
    static let traceID = TraceID(high: 0xFEED, low: 0xBEEF)

    /// The span the telemetry's own task-local says is current.
    @TaskLocal static var activeSpan: SpanID?

    struct Started: Sendable, Hashable {
        var name: String
        var given: TraceContext
        var assigned: TraceContext
    }

    private let nextSpan = Atomic<UInt64>(0xA000)
    private let started = Mutex<[Started]>([])

    /// Every span started, in order, with the context Keel gave and the one assigned.
    var spans: [Started] { self.started.withLock { $0 } }

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
        var assigned = context
        assigned.traceID = Self.traceID
        assigned.spanID = SpanID(rawValue: self.nextSpan.add(1, ordering: .relaxed).newValue)
        self.started.withLock { $0.append(Started(name: operationName, given: context, assigned: assigned)) }
        return Span(context: assigned)
    }

    struct Span: TelemetrySpan {
        let context: TraceContext

        func setAttribute(_ key: String, _ value: TelemetryAttribute) {}
        func recordError(_ error: any Error) {}
        func end() {}

        func withCurrent<T, Failure: Error>(
            _ operation: () async throws(Failure) -> T
        ) async throws(Failure) -> T {
            do {
                return try await ReassigningTelemetry.$activeSpan.withValue(self.context.spanID) {
                    try await operation()
                }
            } catch {
                // `withValue` rethrows only what `operation` threw.
                throw error as! Failure
            }
        }
    }
}
