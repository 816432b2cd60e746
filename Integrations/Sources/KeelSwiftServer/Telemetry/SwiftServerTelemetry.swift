import CoreMetrics
import KeelCore

/// Keel's ``/KeelCore/Telemetry`` backed by the Swift server ecosystem's libraries: today
/// swift-metrics, for every counter, gauge, timer and histogram Keel's components report.
///
/// Give it to a host, a breaker or any other Keel component that takes a telemetry, and Keel's
/// metrics reach whatever swift-metrics backend the process bootstrapped (Prometheus,
/// OpenTelemetry, StatsD…):
///
/// ```swift
/// MetricsSystem.bootstrap(PrometheusMetricsFactory())  // once per process, as usual
///
/// let host = ServiceHost(telemetry: SwiftServerTelemetry())
/// let breaker = CircuitBreaker(name: "payments", telemetry: SwiftServerTelemetry())
/// ```
///
/// Each Keel instrument becomes one swift-metrics metric with the same label and the same
/// dimensions, in the same order: a counter a `Counter`, a gauge a `Gauge`, a timer a `Timer`
/// (in nanoseconds) and a histogram an aggregating `Recorder`. The swift-metrics metric is made
/// once, when the Keel component makes its instrument; recording on Keel's hot paths only
/// forwards to the backend's handler.
///
/// **Spans.** This telemetry records no spans yet: ``recordsSpans`` is `false`, so Keel's
/// components start none, and ``startSpan(_:context:kind:)`` returns a span that records nothing
/// and only carries its context. Keel still makes and binds trace contexts, so handlers see
/// theirs.
///
/// **Concurrency.** A value type whose stored parts are all `Sendable`; every method may be
/// called from any task at once, never suspends, and takes no lock of its own (the backend's
/// handlers may).
public struct SwiftServerTelemetry: Telemetry {
    /// The swift-metrics factory that Keel's instruments are made with, or `nil` when metrics are
    /// off.
    public var metrics: (any MetricsFactory)? { self.metricsBridge.factory }

    private let metricsBridge: MetricsBridge

    /// Creates a telemetry that reports Keel's metrics to swift-metrics.
    ///
    /// The factory is read once, here, and kept: a telemetry made before
    /// `MetricsSystem.bootstrap(_:)` keeps the no-op factory the metrics system starts with.
    /// Bootstrap first, then make the telemetry and Keel's components.
    /// - Parameter metrics: The factory that makes the swift-metrics handlers. By default
    ///   `MetricsSystem.factory`: the factory bound to the calling task with `withMetricsFactory`,
    ///   if any, else the process's bootstrapped one. `nil` turns metrics off: every instrument
    ///   then records nothing, and no swift-metrics metric is made.
    public init(metrics: (any MetricsFactory)? = MetricsSystem.factory) {
        self.metricsBridge = MetricsBridge(factory: metrics)
    }

    // MARK: Metrics

    /// Makes a swift-metrics `Counter` with the same label and dimensions.
    /// - Parameters:
    ///   - label: The metric name, passed through unchanged.
    ///   - dimensions: The dimensions, passed through unchanged and in order.
    /// - Returns: A counter that increments the swift-metrics counter.
    public func makeCounter(label: String, dimensions: [(String, String)]) -> any TelemetryCounter {
        self.metricsBridge.makeCounter(label: label, dimensions: dimensions)
    }

    /// Makes a swift-metrics `Gauge` (a non-aggregating `Recorder`) with the same label and
    /// dimensions.
    /// - Parameters:
    ///   - label: The metric name, passed through unchanged.
    ///   - dimensions: The dimensions, passed through unchanged and in order.
    /// - Returns: A gauge that records each value it is set to.
    public func makeGauge(label: String, dimensions: [(String, String)]) -> any TelemetryGauge {
        self.metricsBridge.makeGauge(label: label, dimensions: dimensions)
    }

    /// Makes a swift-metrics `Timer` with the same label and dimensions.
    /// - Parameters:
    ///   - label: The metric name, passed through unchanged.
    ///   - dimensions: The dimensions, passed through unchanged and in order.
    /// - Returns: A timer that records each duration in whole nanoseconds, clamped to `Int64`.
    public func makeTimer(label: String, dimensions: [(String, String)]) -> any TelemetryTimer {
        self.metricsBridge.makeTimer(label: label, dimensions: dimensions)
    }

    /// Makes an aggregating swift-metrics `Recorder` with the same label and dimensions.
    /// - Parameters:
    ///   - label: The metric name, passed through unchanged.
    ///   - dimensions: The dimensions, passed through unchanged and in order.
    /// - Returns: A histogram that records each value.
    public func makeHistogram(label: String, dimensions: [(String, String)]) -> any TelemetryHistogram {
        self.metricsBridge.makeHistogram(label: label, dimensions: dimensions)
    }

    // MARK: Spans

    /// `false`: the spans of this telemetry record nothing, so Keel's components start none.
    public var recordsSpans: Bool { false }

    /// Returns a span that records nothing and carries `context`.
    /// - Parameters:
    ///   - operationName: What the work is; ignored.
    ///   - context: The span's context, returned by the span's `context`.
    ///   - kind: The span's role; ignored.
    /// - Returns: The span.
    public func startSpan(
        _ operationName: String,
        context: TraceContext,
        kind: TelemetrySpanKind
    ) -> any TelemetrySpan {
        UnrecordedSpan(context: context)
    }
}
