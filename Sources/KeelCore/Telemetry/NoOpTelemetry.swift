/// Telemetry that records nothing. The default everywhere.
public struct NoOpTelemetry: Telemetry {
    /// Creates the no-op telemetry.
    public init() {}

    /// Returns a counter that ignores increments.
    public func makeCounter(label: String, dimensions: [(String, String)]) -> any TelemetryCounter { NoOpHandler() }
    /// Returns a gauge that ignores values.
    public func makeGauge(label: String, dimensions: [(String, String)]) -> any TelemetryGauge { NoOpHandler() }
    /// Returns a timer that ignores durations.
    public func makeTimer(label: String, dimensions: [(String, String)]) -> any TelemetryTimer { NoOpHandler() }
    /// Returns a histogram that ignores values.
    public func makeHistogram(label: String, dimensions: [(String, String)]) -> any TelemetryHistogram {
        NoOpHandler()
    }
    /// `false`: its spans record nothing, so components start none.
    public var recordsSpans: Bool { false }
    /// `false`: its instruments record nothing.
    public var recordsMetrics: Bool { false }

    /// Returns a span that records nothing.
    public func startSpan(
        _ operationName: String,
        context: TraceContext,
        kind: TelemetrySpanKind
    ) -> any TelemetrySpan {
        NoOpSpan(context: context)
    }
}

private struct NoOpHandler: TelemetryCounter, TelemetryGauge, TelemetryTimer, TelemetryHistogram {
    func increment(by amount: Int64) {}
    func set(_ value: Double) {}
    func record(_ duration: Duration) {}
    func record(_ value: Double) {}
}

private struct NoOpSpan: TelemetrySpan {
    let context: TraceContext
    func setAttribute(_ key: String, _ value: TelemetryAttribute) {}
    func recordError(_ error: any Error) {}
    func end() {}
}
