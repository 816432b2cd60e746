/// The one protocol through which every Keel component reports metrics, spans and logs.
///
/// Its shape follows swift-metrics (handlers made once per label and dimensions, then updated on
/// the hot path) and swift-distributed-tracing (a span started with an operation name and a
/// context, given attributes and errors, then ended), so that a bridge to those libraries is a
/// few lines of forwarding.
///
/// Components make their handlers once, at construction, and keep them; implementations may
/// therefore do real work in the `make…` methods and must keep the handler methods cheap and
/// non-blocking. Every method may be called from any task concurrently.
///
/// Logs go through the same seam: Keel writes what an operator must know (a service started or
/// stopped and why, a start rolled back, a breaker opened, a bulkhead rejecting, an event
/// dead-lettered or parked, a store recovered with a cut) as ``LogRecord``s to ``log(_:)``, when
/// ``logLevel`` lets the level through. Both have defaults that log nothing, so a telemetry that
/// only records metrics and spans needs nothing more.
///
/// The default is ``NoOpTelemetry``; ``InMemoryRecorder`` records everything for tests
/// and samples.
///
/// The names of this protocol and its parts (``TelemetryCounter``, ``TelemetryGauge``,
/// ``TelemetryTimer``, ``TelemetryHistogram``, ``TelemetrySpan``, ``TelemetrySpanKind``,
/// ``TelemetryAttribute``) are Keel's own, so that a file importing KeelCore beside swift-metrics
/// (`Counter`, `CounterHandler`, `TimerHandler`…) and swift-distributed-tracing (its
/// `Instrumentation` module, `Span`, `SpanKind`, `SpanAttribute`…) needs no module qualification.
public protocol Telemetry: Sendable {
    /// Makes a counter: a monotonically increasing integer.
    /// - Parameters:
    ///   - label: The metric name, dotted (`keel.bus.published`).
    ///   - dimensions: Key/value pairs that qualify the metric.
    /// - Returns: The counter.
    func makeCounter(label: String, dimensions: [(String, String)]) -> any TelemetryCounter

    /// Makes a gauge: a value that goes up and down.
    /// - Parameters:
    ///   - label: The metric name.
    ///   - dimensions: Key/value pairs that qualify the metric.
    /// - Returns: The gauge.
    func makeGauge(label: String, dimensions: [(String, String)]) -> any TelemetryGauge

    /// Makes a timer: a distribution of durations.
    /// - Parameters:
    ///   - label: The metric name.
    ///   - dimensions: Key/value pairs that qualify the metric.
    /// - Returns: The timer.
    func makeTimer(label: String, dimensions: [(String, String)]) -> any TelemetryTimer

    /// Makes a histogram: a distribution of values.
    /// - Parameters:
    ///   - label: The metric name.
    ///   - dimensions: Key/value pairs that qualify the metric.
    /// - Returns: The histogram.
    func makeHistogram(label: String, dimensions: [(String, String)]) -> any TelemetryHistogram

    /// Starts a span for one unit of work.
    ///
    /// The caller has already made `context` (usually with ``TraceContext/makeChild(using:)``)
    /// and is responsible for calling ``TelemetrySpan/end()`` exactly once.
    ///
    /// A telemetry whose tracer assigns ids of its own may return a span whose
    /// ``TelemetrySpan/context`` has other trace, span and parent ids than `context`. Keel then
    /// takes those three ids for the work the span covers (the handler's bound context, the
    /// event's envelope), and keeps everything else of `context` (correlation, causation,
    /// deadline), so that Keel's ids, logs and spans agree with what the tracer recorded.
    /// - Parameters:
    ///   - operationName: What the work is (`request GetUser`, `handle order.created`).
    ///   - context: The span's own context: its trace id, span id and parent.
    ///   - kind: The span's role.
    /// - Returns: The span.
    func startSpan(_ operationName: String, context: TraceContext, kind: TelemetrySpanKind) -> any TelemetrySpan

    /// Whether the spans this telemetry starts are recorded anywhere.
    ///
    /// A component reads it once, when it is made, and when it is `false` starts no span: it
    /// calls neither ``startSpan(_:context:kind:)`` nor a span's methods, and does no work that
    /// only a span would use. Keel's request channels do so (a request then pays nothing for a
    /// span it would not keep); trace contexts are made and bound all the same, so handlers still
    /// see theirs. The default is `true`, so a telemetry that records spans needs nothing more.
    /// Return `false` only if ``startSpan(_:context:kind:)`` returns spans that record nothing,
    /// for every call, for the telemetry's whole life, as ``NoOpTelemetry`` does.
    var recordsSpans: Bool { get }

    /// Whether the instruments this telemetry makes record anything.
    ///
    /// A component that reads it skips the work of measuring (reading the clock, counting) when
    /// it is `false`; Keel's breakers, bulkheads, retries, rate limiters, hedges, fallbacks, bus
    /// and request channels do. The default is `true`. Return `false` only if every instrument
    /// the `make…` methods return records nothing, for the telemetry's whole life, as
    /// ``NoOpTelemetry`` does.
    var recordsMetrics: Bool { get }

    /// The least severe level this telemetry logs, or `nil` when it logs nothing.
    ///
    /// Keel reads it before it builds a ``LogRecord``, so a record below it costs one comparison.
    /// The default is `nil`.
    var logLevel: LogLevel? { get }

    /// Writes one log record. Called only for records at ``logLevel`` or above, from any task,
    /// possibly concurrently; keep it non-blocking (hand the record on, as a log handler does).
    /// The default does nothing.
    /// - Parameter record: The record.
    func log(_ record: LogRecord)
}

/// A counter made by ``Telemetry/makeCounter(label:dimensions:)``: the handle a component keeps
/// and increments on its hot path.
public protocol TelemetryCounter: Sendable {
    /// Adds `amount` to the counter.
    /// - Parameter amount: The amount, not negative.
    func increment(by amount: Int64)
}

/// A gauge made by ``Telemetry/makeGauge(label:dimensions:)``.
public protocol TelemetryGauge: Sendable {
    /// Sets the gauge's current value.
    /// - Parameter value: The value.
    func set(_ value: Double)
}

/// A timer made by ``Telemetry/makeTimer(label:dimensions:)``.
public protocol TelemetryTimer: Sendable {
    /// Records one duration.
    /// - Parameter duration: The duration.
    func record(_ duration: Duration)
}

/// A histogram made by ``Telemetry/makeHistogram(label:dimensions:)``.
public protocol TelemetryHistogram: Sendable {
    /// Records one value.
    /// - Parameter value: The value.
    func record(_ value: Double)
}

/// A span in progress, started by ``Telemetry/startSpan(_:context:kind:)``.
public protocol TelemetrySpan: Sendable {
    /// The span's own context.
    var context: TraceContext { get }
    /// Runs `operation` with this span as the current span of the telemetry's own context, if it
    /// has one beside ``TraceContext``: for example swift-distributed-tracing's task-local
    /// context, so that code in the operation that starts spans with that library starts them
    /// as children of this one.
    ///
    /// Keel calls it around the work the span covers (a request's handler, an event's handler,
    /// the body of ``Telemetry/withSpan(_:kind:random:_:)``), inside the binding of
    /// ``TraceContext/current``. The default runs `operation` as it is.
    /// - Parameter operation: The work.
    /// - Returns: What `operation` returns.
    /// - Throws: What `operation` throws.
    func withCurrent<T, Failure: Error>(_ operation: () async throws(Failure) -> T) async throws(Failure) -> T
    /// Sets an attribute on the span.
    /// - Parameters:
    ///   - key: The attribute's name.
    ///   - value: Its value.
    func setAttribute(_ key: String, _ value: TelemetryAttribute)
    /// Records that the work failed with `error`; the span's status becomes an error.
    /// - Parameter error: The error.
    func recordError(_ error: any Error)
    /// Ends the span. Call exactly once; later calls are ignored.
    func end()
}

/// The role of a span, as in OpenTelemetry.
public enum TelemetrySpanKind: String, Sendable, Hashable, Codable {
    /// Work inside one component.
    case `internal`
    /// The handling side of a request.
    case server
    /// The calling side of a request.
    case client
    /// The publishing side of a message.
    case producer
    /// The handling side of a message.
    case consumer
}

/// A span attribute's value.
public enum TelemetryAttribute: Sendable, Hashable, CustomStringConvertible {
    /// A string.
    case string(String)
    /// An integer.
    case int(Int64)
    /// A floating-point number.
    case double(Double)
    /// A Boolean.
    case bool(Bool)

    /// The value as text.
    public var description: String {
        switch self {
        case .string(let value): value
        case .int(let value): String(value)
        case .double(let value): String(value)
        case .bool(let value): String(value)
        }
    }
}

extension TelemetrySpan {
    /// Runs `operation` as it is: a span with no context of its own beside ``TraceContext``.
    /// - Parameter operation: The work.
    /// - Returns: What `operation` returns.
    /// - Throws: What `operation` throws.
    public func withCurrent<T, Failure: Error>(
        _ operation: () async throws(Failure) -> T
    ) async throws(Failure) -> T {
        try await operation()
    }
}

extension Telemetry {
    /// `true`: spans are recorded unless a telemetry says otherwise.
    public var recordsSpans: Bool { true }

    /// `true`: metrics are recorded unless a telemetry says otherwise.
    public var recordsMetrics: Bool { true }

    /// `nil`: nothing is logged unless a telemetry says otherwise.
    public var logLevel: LogLevel? { nil }

    /// Does nothing: nothing is logged unless a telemetry says otherwise.
    /// - Parameter record: The record.
    public func log(_ record: LogRecord) {}

    /// Whether a record at `level` would be logged: ``logLevel`` is set and `level` is at or
    /// above it.
    /// - Parameter level: The level.
    /// - Returns: Whether ``log(_:source:_:metadata:file:function:line:)`` would write it.
    @inlinable
    public func isLogging(_ level: LogLevel) -> Bool {
        guard let minimum = self.logLevel else { return false }
        return level >= minimum
    }

    /// Writes a record at `level` when ``logLevel`` lets it through, with the current
    /// ``TraceContext`` as its trace. The message and metadata are evaluated only then.
    /// - Parameters:
    ///   - level: How much the record matters.
    ///   - source: The component that writes it, such as `keel.breaker`.
    ///   - message: The message.
    ///   - metadata: Structured values, by key.
    ///   - file: The file that writes it.
    ///   - function: The function that writes it.
    ///   - line: The line that writes it.
    public func log(
        _ level: LogLevel,
        source: String,
        _ message: @autoclosure () -> String,
        metadata: @autoclosure () -> [String: String] = [:],
        file: String = #fileID,
        function: String = #function,
        line: UInt = #line
    ) {
        guard self.isLogging(level) else { return }
        self.log(
            LogRecord(
                level: level,
                message: message(),
                source: source,
                metadata: metadata(),
                trace: TraceContext.current,
                file: file,
                function: function,
                line: line
            )
        )
    }

    /// Makes a counter without dimensions.
    /// - Parameter label: The metric name.
    /// - Returns: The counter.
    public func makeCounter(label: String) -> any TelemetryCounter {
        self.makeCounter(label: label, dimensions: [])
    }

    /// Runs `body` inside a new span that is a child of the current task's ``TraceContext``
    /// (or a new trace's root), with the span's context bound as ``TraceContext/current`` (with the
    /// ids the telemetry gave the span) and the span current in the telemetry's own context
    /// (``TelemetrySpan/withCurrent(_:)``).
    ///
    /// The span ends when `body` returns or throws; a thrown error is recorded on the span, except
    /// `CancellationError`, which is recorded as the attribute `cancelled`.
    /// - Parameters:
    ///   - operationName: What the work is.
    ///   - kind: The span's role.
    ///   - random: The source of the new span id.
    ///   - body: The work; it receives the span to add attributes.
    /// - Returns: What `body` returns.
    /// - Throws: What `body` throws.
    public func withSpan<T, Failure: Error>(
        _ operationName: String,
        kind: TelemetrySpanKind = .internal,
        random: RandomSource,
        _ body: (any TelemetrySpan) async throws(Failure) -> T
    ) async throws(Failure) -> T {
        var context = TraceContext.makeChildOfCurrent(using: random)
        let span = self.startSpan(operationName, context: context, kind: kind)
        defer { span.end() }
        context.adoptIDs(of: span.context)
        let result: Result<T, Failure> = await TraceContext.$current.withValue(context) {
            await span.withCurrent { () async -> Result<T, Failure> in
                do throws(Failure) {
                    return .success(try await body(span))
                } catch {
                    return .failure(error)
                }
            }
        }
        switch result {
        case .success(let value):
            return value
        case .failure(let error):
            if error is CancellationError {
                span.setAttribute("cancelled", .bool(true))
            } else {
                span.recordError(error)
            }
            throw error
        }
    }
}
