/// Instrumentation that records nothing. The default everywhere.
public struct NoOpInstrumentation: Instrumentation {
    /// Creates the no-op instrumentation.
    public init() {}

    /// Returns a counter that ignores increments.
    public func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler { NoOpHandler() }
    /// Returns a gauge that ignores values.
    public func makeGauge(label: String, dimensions: [(String, String)]) -> any GaugeHandler { NoOpHandler() }
    /// Returns a timer that ignores durations.
    public func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler { NoOpHandler() }
    /// Returns a histogram that ignores values.
    public func makeHistogram(label: String, dimensions: [(String, String)]) -> any HistogramHandler {
        NoOpHandler()
    }
    /// Returns a span that records nothing.
    public func startSpan(_ operationName: String, context: TraceContext, kind: SpanKind) -> any SpanHandle {
        NoOpSpan(context: context)
    }
}

private struct NoOpHandler: CounterHandler, GaugeHandler, TimerHandler, HistogramHandler {
    func increment(by amount: Int64) {}
    func set(_ value: Double) {}
    func record(_ duration: Duration) {}
    func record(_ value: Double) {}
}

private struct NoOpSpan: SpanHandle {
    let context: TraceContext
    func setAttribute(_ key: String, _ value: SpanAttribute) {}
    func recordError(_ error: any Error) {}
    func end() {}
}
