import Synchronization

/// Telemetry that keeps every metric, span and log record in memory, for tests and samples.
///
/// It can list metric values and render a trace as an indented tree with durations:
///
/// ```text
/// checkout (client) 0.559 ms
///   order.PlaceOrder (server) 0.463 ms
///     user.GetUser (server) 0.020 ms
///     inventory.ReserveStock (server) 0.056 ms
///     publish order.created (producer) 0.023 ms
///       handle notification:order.created (consumer) 0.053 ms
/// ```
///
/// Span times come from the clock given at creation, so a test clock makes durations exact. A
/// span still running prints as `(running)`: render a trace once its work is done (for a host,
/// after `waitUntilIdle()` or `shutdown()`).
/// All methods are thread-safe; recording takes a short `Mutex` and never suspends.
public final class InMemoryRecorder: Telemetry {
    /// One finished or running span.
    public struct RecordedSpan: Sendable, Hashable {
        /// The operation name.
        public var name: String
        /// The span's role.
        public var kind: TelemetrySpanKind
        /// The span's context.
        public var context: TraceContext
        /// When it started, measured from the recorder's creation.
        public var start: Duration
        /// When it ended, measured from the recorder's creation; `nil` while running.
        public var end: Duration?
        /// Its attributes.
        public var attributes: [String: TelemetryAttribute]
        /// The errors recorded on it, as text.
        public var errors: [String]

        /// How long it ran, once ended.
        public var duration: Duration? {
            self.end.map { $0 - self.start }
        }
    }

    /// The name and dimensions of one metric.
    public struct MetricKey: Sendable, Hashable, Comparable, CustomStringConvertible {
        /// The metric name.
        public var label: String
        /// The dimensions, sorted by key.
        public var dimensions: [String]

        /// Creates a key.
        /// - Parameters:
        ///   - label: The metric name.
        ///   - dimensions: The dimensions, in any order.
        public init(label: String, dimensions: [(String, String)] = []) {
            self.label = label
            self.dimensions = dimensions.sorted { $0.0 < $1.0 }.map { "\($0.0)=\($0.1)" }
        }

        /// `label{key=value,…}`.
        public var description: String {
            self.dimensions.isEmpty ? self.label : "\(self.label){\(self.dimensions.joined(separator: ","))}"
        }

        public static func < (lhs: MetricKey, rhs: MetricKey) -> Bool {
            lhs.description < rhs.description
        }
    }

    struct Storage {
        var spans: [RecordedSpan] = []
        var spanIndex: [SpanID: Int] = [:]
        var counters: [MetricKey: Int64] = [:]
        var gauges: [MetricKey: Double] = [:]
        var timers: [MetricKey: [Duration]] = [:]
        var histograms: [MetricKey: [Double]] = [:]
        var logs: [LogRecord] = []
    }

    let storage = Lock(Storage())
    let elapsed: @Sendable () -> Duration

    /// The least severe level recorded, or `nil` to record no logs.
    public let logLevel: LogLevel?

    /// Creates a recorder whose span times come from `clock`.
    /// - Parameters:
    ///   - clock: The clock to time spans with.
    ///   - logLevel: The least severe log level recorded; `nil` records no logs.
    public init<C: Clock<Duration>>(clock: C, logLevel: LogLevel? = .trace) {
        let origin = clock.now
        self.elapsed = { origin.duration(to: clock.now) }
        self.logLevel = logLevel
    }

    /// Creates a recorder that times spans with the continuous clock.
    /// - Parameter logLevel: The least severe log level recorded; `nil` records no logs.
    public convenience init(logLevel: LogLevel? = .trace) {
        self.init(clock: ContinuousClock(), logLevel: logLevel)
    }

    /// Keeps the record, in the order records arrive.
    /// - Parameter record: The record.
    public func log(_ record: LogRecord) {
        self.storage.withLock { $0.logs.append(record) }
    }

    /// The log records kept so far, in the order they arrived.
    public var logs: [LogRecord] {
        self.storage.withLock { $0.logs }
    }

    /// The log records kept so far from one component, in the order they arrived.
    /// - Parameter source: The component, such as `keel.breaker`.
    /// - Returns: Its records.
    public func logs(from source: String) -> [LogRecord] {
        self.storage.withLock { $0.logs.filter { $0.source == source } }
    }

    // MARK: Telemetry

    /// Makes a counter recorded in memory.
    public func makeCounter(label: String, dimensions: [(String, String)]) -> any TelemetryCounter {
        Handler(recorder: self, key: MetricKey(label: label, dimensions: dimensions))
    }

    /// Makes a gauge recorded in memory.
    public func makeGauge(label: String, dimensions: [(String, String)]) -> any TelemetryGauge {
        Handler(recorder: self, key: MetricKey(label: label, dimensions: dimensions))
    }

    /// Makes a timer recorded in memory.
    public func makeTimer(label: String, dimensions: [(String, String)]) -> any TelemetryTimer {
        Handler(recorder: self, key: MetricKey(label: label, dimensions: dimensions))
    }

    /// Makes a histogram recorded in memory.
    public func makeHistogram(label: String, dimensions: [(String, String)]) -> any TelemetryHistogram {
        Handler(recorder: self, key: MetricKey(label: label, dimensions: dimensions))
    }

    /// Starts a span recorded in memory.
    public func startSpan(
        _ operationName: String,
        context: TraceContext,
        kind: TelemetrySpanKind
    ) -> any TelemetrySpan {
        self.storage.withLock { storage in
            // Read the time under the lock so that spans are stored in start order.
            let span = RecordedSpan(
                name: operationName,
                kind: kind,
                context: context,
                start: self.elapsed(),
                end: nil,
                attributes: [:],
                errors: []
            )
            storage.spanIndex[context.spanID] = storage.spans.count
            storage.spans.append(span)
        }
        return Span(recorder: self, context: context)
    }

    // MARK: Reading

    /// Every span recorded so far, in start order.
    public var spans: [RecordedSpan] {
        self.storage.withLock { $0.spans }
    }

    /// The spans of one trace, in start order.
    /// - Parameter traceID: The trace.
    /// - Returns: Its spans.
    public func spans(inTrace traceID: TraceID) -> [RecordedSpan] {
        self.spans.filter { $0.context.traceID == traceID }
    }

    /// The current value of a counter, or zero when it was never incremented.
    /// - Parameters:
    ///   - label: The metric name.
    ///   - dimensions: Its dimensions.
    /// - Returns: The value.
    public func counter(_ label: String, dimensions: [(String, String)] = []) -> Int64 {
        let key = MetricKey(label: label, dimensions: dimensions)
        return self.storage.withLock { $0.counters[key] ?? 0 }
    }

    /// The sum of a counter over all its dimensions.
    /// - Parameter label: The metric name.
    /// - Returns: The total.
    public func counterTotal(_ label: String) -> Int64 {
        self.storage.withLock { storage in
            storage.counters.reduce(0) { $1.key.label == label ? $0 + $1.value : $0 }
        }
    }

    /// The last value of a gauge, or `nil` when it was never set.
    /// - Parameters:
    ///   - label: The metric name.
    ///   - dimensions: Its dimensions.
    /// - Returns: The value.
    public func gauge(_ label: String, dimensions: [(String, String)] = []) -> Double? {
        let key = MetricKey(label: label, dimensions: dimensions)
        return self.storage.withLock { $0.gauges[key] }
    }

    /// Every duration a timer recorded.
    /// - Parameters:
    ///   - label: The metric name.
    ///   - dimensions: Its dimensions.
    /// - Returns: The durations, in recording order.
    public func timer(_ label: String, dimensions: [(String, String)] = []) -> [Duration] {
        let key = MetricKey(label: label, dimensions: dimensions)
        return self.storage.withLock { $0.timers[key] ?? [] }
    }

    /// Renders one trace as an indented tree: one line per span, children under their parent in
    /// start order, with kind, duration, attributes and errors.
    /// - Parameter traceID: The trace.
    /// - Returns: The tree, one span per line.
    public func renderTrace(_ traceID: TraceID) -> String {
        let spans = self.spans(inTrace: traceID)
        let known = Set(spans.map(\.context.spanID))
        var children: [SpanID: [RecordedSpan]] = [:]
        var roots: [RecordedSpan] = []
        for span in spans {
            if let parent = span.context.parentSpanID, known.contains(parent) {
                children[parent, default: []].append(span)
            } else {
                roots.append(span)
            }
        }
        var lines: [String] = []
        func render(_ span: RecordedSpan, depth: Int) {
            var line = String(repeating: "  ", count: depth) + "\(span.name) (\(span.kind.rawValue))"
            if let duration = span.duration {
                line += " " + Self.format(duration)
            } else {
                line += " (running)"
            }
            if !span.attributes.isEmpty {
                let attributes = span.attributes.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
                line += " [" + attributes.joined(separator: ", ") + "]"
            }
            if !span.errors.isEmpty {
                line += " error: " + span.errors.joined(separator: "; ")
            }
            lines.append(line)
            for child in children[span.context.spanID] ?? [] {
                render(child, depth: depth + 1)
            }
        }
        for root in roots {
            render(root, depth: 0)
        }
        return lines.joined(separator: "\n")
    }

    /// Renders every metric, one per line, sorted by name: counters and gauges with their value,
    /// timers and histograms with count, median and maximum.
    /// - Returns: The summary.
    public func renderMetrics() -> String {
        let storage = self.storage.withLock { $0 }
        var lines: [String] = []
        for (key, value) in storage.counters.sorted(by: { $0.key < $1.key }) {
            lines.append("counter \(key) = \(value)")
        }
        for (key, value) in storage.gauges.sorted(by: { $0.key < $1.key }) {
            lines.append("gauge \(key) = \(value)")
        }
        for (key, values) in storage.timers.sorted(by: { $0.key < $1.key }) {
            let sorted = values.sorted()
            let median = sorted[sorted.count / 2]
            lines.append(
                "timer \(key) count=\(values.count) p50=\(Self.format(median)) max=\(Self.format(sorted.last!))"
            )
        }
        for (key, values) in storage.histograms.sorted(by: { $0.key < $1.key }) {
            let sorted = values.sorted()
            lines.append("histogram \(key) count=\(values.count) p50=\(sorted[sorted.count / 2]) max=\(sorted.last!)")
        }
        return lines.joined(separator: "\n")
    }

    /// Forgets every span and metric.
    public func reset() {
        self.storage.withLock { $0 = Storage() }
    }

    /// Formats a duration as milliseconds with three decimals.
    static func format(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        let microseconds = seconds * 1_000_000 + attoseconds / 1_000_000_000_000
        let sign = microseconds < 0 ? "-" : ""
        let magnitude = abs(microseconds)
        let fraction = String(magnitude % 1000)
        let padded = String(repeating: "0", count: 3 - fraction.count) + fraction
        return "\(sign)\(magnitude / 1000).\(padded) ms"
    }

    private struct Handler: TelemetryCounter, TelemetryGauge, TelemetryTimer, TelemetryHistogram {
        let recorder: InMemoryRecorder
        let key: MetricKey

        func increment(by amount: Int64) {
            self.recorder.storage.withLock { $0.counters[self.key, default: 0] += amount }
        }

        func set(_ value: Double) {
            self.recorder.storage.withLock { $0.gauges[self.key] = value }
        }

        func record(_ duration: Duration) {
            self.recorder.storage.withLock { $0.timers[self.key, default: []].append(duration) }
        }

        func record(_ value: Double) {
            self.recorder.storage.withLock { $0.histograms[self.key, default: []].append(value) }
        }
    }

    private struct Span: TelemetrySpan {
        let recorder: InMemoryRecorder
        let context: TraceContext

        private func update(_ body: (inout RecordedSpan) -> Void) {
            self.recorder.storage.withLock { storage in
                guard let index = storage.spanIndex[self.context.spanID] else { return }
                body(&storage.spans[index])
            }
        }

        func setAttribute(_ key: String, _ value: TelemetryAttribute) {
            self.update { $0.attributes[key] = value }
        }

        func recordError(_ error: any Error) {
            self.update { $0.errors.append(String(describing: error)) }
        }

        func end() {
            let now = self.recorder.elapsed()
            self.update { span in
                if span.end == nil { span.end = now }
            }
        }
    }
}
