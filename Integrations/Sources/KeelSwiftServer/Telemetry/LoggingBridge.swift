import KeelCore
import Logging

/// The logging half of ``SwiftServerTelemetry``: writes each Keel log record to a swift-log
/// `Logger`, at the same level, with Keel's source as swift-log's `source`, Keel's metadata as
/// string values, and the record's trace context as `trace_id`, `span_id`, `correlation_id` and
/// `causation_id`.
struct LoggingBridge: Sendable {
    let logger: Logger

    /// The logger's level, which Keel reads before it builds a record.
    var logLevel: LogLevel { LogLevel(self.logger.logLevel) }

    func log(_ record: LogRecord) {
        var metadata = Logger.Metadata()
        for (key, value) in record.metadata { metadata[key] = .string(value) }
        if let trace = record.trace { metadata.merge(trace.logMetadata) { keel, _ in keel } }
        self.logger.log(
            level: Logger.Level(record.level),
            "\(record.message)",
            metadata: metadata,
            source: record.source,
            file: record.file,
            function: record.function,
            line: record.line
        )
    }
}

extension TraceContext {
    /// The context as swift-log metadata: `trace_id`, `span_id`, `correlation_id`, and
    /// `causation_id` when there is one.
    var logMetadata: Logger.Metadata {
        var metadata: Logger.Metadata = [
            "trace_id": .string(self.traceID.description),
            "span_id": .string(self.spanID.description),
            "correlation_id": .string(self.correlationID),
        ]
        if let causation = self.causationID { metadata["causation_id"] = .string(causation) }
        return metadata
    }
}

extension LogLevel {
    /// The Keel level of a swift-log level: the seven are the same.
    /// - Parameter level: The swift-log level.
    init(_ level: Logger.Level) {
        switch level {
        case .trace: self = .trace
        case .debug: self = .debug
        case .info: self = .info
        case .notice: self = .notice
        case .warning: self = .warning
        case .error: self = .error
        case .critical: self = .critical
        }
    }
}

extension Logger.Level {
    /// The swift-log level of a Keel level: the seven are the same.
    /// - Parameter level: The Keel level.
    init(_ level: LogLevel) {
        switch level {
        case .trace: self = .trace
        case .debug: self = .debug
        case .info: self = .info
        case .notice: self = .notice
        case .warning: self = .warning
        case .error: self = .error
        case .critical: self = .critical
        }
    }
}

extension Logger.MetadataProvider {
    /// Adds the Keel trace context bound to the current task (``/KeelCore/TraceContext/current``)
    /// to every record of a logger that uses it: `trace_id`, `span_id`, `correlation_id`, and
    /// `causation_id` when there is one. Nothing outside any context.
    ///
    /// Give it to the loggers your own code uses inside handlers, so that their lines carry the
    /// same ids as Keel's:
    ///
    /// ```swift
    /// let logger = Logger(label: "shop", metadataProvider: .keelTraceContext)
    /// ```
    public static var keelTraceContext: Logger.MetadataProvider {
        Logger.MetadataProvider { TraceContext.current?.logMetadata ?? [:] }
    }
}
