import CoreMetrics
import KeelCore
import Logging
import Tracing

/// Keel's ``/KeelCore/Telemetry`` backed by the Swift server ecosystem's libraries: Keel's metrics
/// go to swift-metrics, its spans to a swift-distributed-tracing `Tracer`, its log records to a
/// swift-log `Logger`.
///
/// Bootstrap the libraries as usual, then give one telemetry to the host (and to any other Keel
/// component that takes one):
///
/// ```swift
/// MetricsSystem.bootstrap(PrometheusMetricsFactory())  // once per process, as usual
/// InstrumentationSystem.bootstrap(otelTracer)
///
/// let telemetry = SwiftServerTelemetry(logger: Logger(label: "keel"))
/// let host = ServiceHost(telemetry: telemetry)
/// let breaker = CircuitBreaker(name: "payments", telemetry: telemetry)
/// ```
///
/// **Metrics.** Each Keel instrument becomes one swift-metrics metric with the same label and the
/// same dimensions, in the same order: a counter a `Counter`, a gauge a `Gauge`, a timer a
/// `Timer` (in nanoseconds) and a histogram an aggregating `Recorder`. The swift-metrics metric is
/// made once, when the Keel component makes its instrument; recording on Keel's hot paths only
/// forwards to the backend's handler.
///
/// **Spans.** Each Keel span (a request's `service.Request` span, the bus's `publish` and
/// `handle` spans, ``/KeelCore/Telemetry/withSpan(_:kind:random:_:)``) becomes a span of the
/// tracer, with Keel's name, kind and attributes; an error recorded on it sets its status to
/// error. The first Keel span of a call made from code that runs inside a tracing span (an HTTP
/// server's request span, bound as `ServiceContext.current`) is that span's child. While a Keel
/// handler runs, its span is `ServiceContext.current`, so spans your handler starts with
/// swift-distributed-tracing are children of Keel's. With a tracer that propagates W3C trace
/// context (swift-otel does), Keel's trace context takes the tracer's trace and span ids, so the
/// ids in Keel's logs, envelopes and ``/KeelCore/TraceContext/traceparent`` are the tracer's.
/// See `TracingBridge` in the sources for the rules, and the package's README.
///
/// **Logs.** Keel's log records (``/KeelCore/LogRecord``: starts, stops, rollbacks, breaker
/// transitions, rejections, dead letters, recovery cuts, parked events, and what services write
/// with their `ServiceLogger`) go to the logger at the same level, with the record's source as
/// swift-log's `source`, its metadata as string values, and its trace context as `trace_id`,
/// `span_id`, `correlation_id` and `causation_id`. Keel reads the logger's level before it builds
/// a record. For your own loggers, ``/Logging/Logger/MetadataProvider/keelTraceContext`` adds the
/// same ids.
///
/// **Concurrency.** Every method may be called from any task at once and never suspends. Spans
/// in flight are kept in a short `Mutex`-guarded table from their start to their end, for their
/// children to find; the backends' handlers may take locks of their own.
public struct SwiftServerTelemetry: Telemetry {
    /// The swift-metrics factory that Keel's instruments are made with, or `nil` when metrics are
    /// off.
    public var metrics: (any MetricsFactory)? { self.metricsBridge.factory }
    /// The tracer Keel's spans go to, or `nil` when spans are off.
    public var tracer: (any Tracer)? { self.tracingBridge?.tracer }
    /// The logger Keel's log records go to, or `nil` when logs are off.
    public var logger: Logger? { self.loggingBridge?.logger }

    private let metricsBridge: MetricsBridge
    private let tracingBridge: TracingBridge?
    private let loggingBridge: LoggingBridge?

    /// Creates a telemetry that reports Keel's metrics, spans and logs to the Swift server
    /// ecosystem's libraries.
    ///
    /// The factory and the tracer are read once, here, and kept: a telemetry made before
    /// `MetricsSystem.bootstrap(_:)` or `InstrumentationSystem.bootstrap(_:)` keeps the no-op
    /// ones those systems start with. Bootstrap first, then make the telemetry and Keel's
    /// components.
    /// - Parameters:
    ///   - metrics: The factory that makes the swift-metrics handlers. By default
    ///     `MetricsSystem.factory`: the factory bound to the calling task with
    ///     `withMetricsFactory`, if any, else the process's bootstrapped one. `nil` turns metrics
    ///     off: every instrument then records nothing, and no swift-metrics metric is made.
    ///   - tracer: The tracer of Keel's spans. By default `InstrumentationSystem.tracer`, the
    ///     process's bootstrapped tracer. `nil`, or swift-distributed-tracing's `NoOpTracer`,
    ///     turns spans off: ``recordsSpans`` is then `false` and Keel's components start none
    ///     (they still make and bind trace contexts).
    ///   - logger: The logger of Keel's log records, at its own level; `nil` (the default) turns
    ///     Keel's logs off.
    public init(
        metrics: (any MetricsFactory)? = MetricsSystem.factory,
        tracer: (any Tracer)? = InstrumentationSystem.tracer,
        logger: Logger? = nil
    ) {
        self.metricsBridge = MetricsBridge(factory: metrics)
        self.tracingBridge = tracer.flatMap { $0 is NoOpTracer ? nil : TracingBridge(tracer: $0) }
        self.loggingBridge = logger.map(LoggingBridge.init(logger:))
    }

    /// How many of Keel's spans are open: started and not yet ended. For tests.
    var openSpanCount: Int { self.tracingBridge?.openCount ?? 0 }

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

    /// Whether Keel's metrics go to swift-metrics: `false` when metrics are off, so that Keel's
    /// components skip measuring.
    public var recordsMetrics: Bool { self.metricsBridge.factory != nil }

    // MARK: Spans

    /// Whether Keel's spans go to a tracer: `false` without one (or with `NoOpTracer`), so that
    /// Keel's components start none.
    public var recordsSpans: Bool { self.tracingBridge != nil }

    /// Starts the span as a span of the tracer, under its parent (see the type's documentation);
    /// without a tracer, returns a span that records nothing and carries `context`.
    /// - Parameters:
    ///   - operationName: What the work is, the tracer span's operation name.
    ///   - context: The span's Keel context; its parent id names the parent span.
    ///   - kind: The span's role, the tracer span's kind.
    /// - Returns: The span; its context has the tracer's ids when the tracer propagates W3C trace
    ///   context.
    public func startSpan(
        _ operationName: String,
        context: TraceContext,
        kind: TelemetrySpanKind
    ) -> any TelemetrySpan {
        guard let tracing = self.tracingBridge else { return UnrecordedSpan(context: context) }
        return tracing.startSpan(operationName, context: context, kind: kind)
    }

    // MARK: Logs

    /// The logger's level, or `nil` when logs are off.
    public var logLevel: LogLevel? { self.loggingBridge?.logLevel }

    /// Writes the record to the logger (see the type's documentation); does nothing when logs are
    /// off.
    /// - Parameter record: The record.
    public func log(_ record: LogRecord) {
        self.loggingBridge?.log(record)
    }
}
