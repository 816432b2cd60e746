/// One log message, as Keel hands it to ``Telemetry/log(_:)``.
///
/// A record carries what an operator needs to act on it: the level, a message written for a
/// person, the component that wrote it (``source``, such as `keel.host` or `keel.breaker`),
/// structured ``metadata`` (the service, the breaker's name, the event's id…) and the trace
/// context that was current where it was written, so that a log line can be joined with the
/// trace and the events of the same call.
///
/// ```swift
/// struct PrintingTelemetry: Telemetry {
///     var logLevel: LogLevel? { .info }
///     func log(_ record: LogRecord) {
///         print("\(record.level) [\(record.source)] \(record.message) \(record.metadata)")
///     }
///     // … metrics and spans
/// }
/// ```
public struct LogRecord: Sendable, Hashable {
    /// How much the record matters.
    public var level: LogLevel
    /// The message, written for a person.
    public var message: String
    /// The component that wrote the record: `keel.host`, `keel.breaker`, `keel.bulkhead`,
    /// `keel.bus`, `keel.store`, `keel.projection`, or `service` for a service's own
    /// `ServiceLogger` (in Keel).
    public var source: String
    /// Structured values, by key: `service` for the service concerned, and the component's
    /// own keys (each of Keel's log sites documents its keys).
    public var metadata: [String: String]
    /// The trace context current where the record was written, or `nil` outside any.
    public var trace: TraceContext?
    /// The file that wrote the record (`#fileID`).
    public var file: String
    /// The function that wrote the record.
    public var function: String
    /// The line that wrote the record.
    public var line: UInt

    /// Creates a record.
    /// - Parameters:
    ///   - level: How much the record matters.
    ///   - message: The message.
    ///   - source: The component that wrote it.
    ///   - metadata: Structured values, by key.
    ///   - trace: The trace context current where it was written.
    ///   - file: The file that wrote it.
    ///   - function: The function that wrote it.
    ///   - line: The line that wrote it.
    public init(
        level: LogLevel,
        message: String,
        source: String,
        metadata: [String: String] = [:],
        trace: TraceContext? = nil,
        file: String = #fileID,
        function: String = #function,
        line: UInt = #line
    ) {
        self.level = level
        self.message = message
        self.source = source
        self.metadata = metadata
        self.trace = trace
        self.file = file
        self.function = function
        self.line = line
    }
}
