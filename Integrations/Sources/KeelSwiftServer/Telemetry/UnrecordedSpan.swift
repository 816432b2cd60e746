import KeelCore

/// The span ``SwiftServerTelemetry`` starts while it records no spans: it records nothing and
/// only carries its context, so that code holding it can still read and pass the context on.
struct UnrecordedSpan: TelemetrySpan {
    let context: TraceContext

    func setAttribute(_ key: String, _ value: TelemetryAttribute) {}

    func recordError(_ error: any Error) {}

    func end() {}
}
