import KeelCore

/// A service's logger: writes ``/KeelCore/LogRecord``s through the host's telemetry, with the
/// service's name and instance as metadata and the trace context current where each record is
/// written.
///
/// A service takes it from its environment (``ServiceEnvironment/logger``):
///
/// ```swift
/// func handle(_ command: ChangeEmail) async throws {
///     environment.logger.info("e-mail changed", metadata: ["customer": "\(command.customerID)"])
/// }
/// ```
///
/// Every record has the source `service` and the metadata keys `service` (the service's name)
/// and `instance` (the instance id, such as `user#0`), besides the ones given. Its
/// ``/KeelCore/LogRecord/trace`` is ``/KeelCore/TraceContext/current`` where the record is
/// written, so a record written while a request or an event is handled carries that call's trace,
/// span and correlation ids; a bridge to a logging library turns them into metadata.
///
/// A record below the telemetry's ``/KeelCore/Telemetry/logLevel`` costs one comparison: the
/// message and the metadata are not evaluated. The logger is a small `Sendable` value; copy it
/// freely. Logging never suspends.
public struct ServiceLogger: Sendable {
    /// The service whose records these are.
    public let instance: InstanceID
    /// Where the records go.
    public let telemetry: any Telemetry

    /// Creates a logger for one instance of a service.
    /// - Parameters:
    ///   - instance: The instance.
    ///   - telemetry: Where the records go.
    public init(instance: InstanceID, telemetry: any Telemetry) {
        self.instance = instance
        self.telemetry = telemetry
    }

    /// Writes a record at `level` if the telemetry logs that level.
    /// - Parameters:
    ///   - level: How much the record matters.
    ///   - message: The message, evaluated only if the record is written.
    ///   - metadata: Structured values, evaluated only if the record is written; the keys
    ///     `service` and `instance` are the logger's own and win over the same keys here.
    ///   - file: The file that writes it.
    ///   - function: The function that writes it.
    ///   - line: The line that writes it.
    public func log(
        _ level: LogLevel,
        _ message: @autoclosure () -> String,
        metadata: @autoclosure () -> [String: String] = [:],
        file: String = #fileID,
        function: String = #function,
        line: UInt = #line
    ) {
        guard self.telemetry.isLogging(level) else { return }
        var values = metadata()
        values["service"] = self.instance.service.rawValue
        values["instance"] = self.instance.description
        self.telemetry.log(
            LogRecord(
                level: level,
                message: message(),
                source: "service",
                metadata: values,
                trace: TraceContext.current,
                file: file,
                function: function,
                line: line
            )
        )
    }

    /// Writes a record at ``/KeelCore/LogLevel/trace``; see ``log(_:_:metadata:file:function:line:)``.
    /// - Parameters:
    ///   - message: The message.
    ///   - metadata: Structured values.
    ///   - file: The file that writes it.
    ///   - function: The function that writes it.
    ///   - line: The line that writes it.
    public func trace(
        _ message: @autoclosure () -> String,
        metadata: @autoclosure () -> [String: String] = [:],
        file: String = #fileID,
        function: String = #function,
        line: UInt = #line
    ) {
        self.log(.trace, message(), metadata: metadata(), file: file, function: function, line: line)
    }

    /// Writes a record at ``/KeelCore/LogLevel/debug``; see ``log(_:_:metadata:file:function:line:)``.
    /// - Parameters:
    ///   - message: The message.
    ///   - metadata: Structured values.
    ///   - file: The file that writes it.
    ///   - function: The function that writes it.
    ///   - line: The line that writes it.
    public func debug(
        _ message: @autoclosure () -> String,
        metadata: @autoclosure () -> [String: String] = [:],
        file: String = #fileID,
        function: String = #function,
        line: UInt = #line
    ) {
        self.log(.debug, message(), metadata: metadata(), file: file, function: function, line: line)
    }

    /// Writes a record at ``/KeelCore/LogLevel/info``; see ``log(_:_:metadata:file:function:line:)``.
    /// - Parameters:
    ///   - message: The message.
    ///   - metadata: Structured values.
    ///   - file: The file that writes it.
    ///   - function: The function that writes it.
    ///   - line: The line that writes it.
    public func info(
        _ message: @autoclosure () -> String,
        metadata: @autoclosure () -> [String: String] = [:],
        file: String = #fileID,
        function: String = #function,
        line: UInt = #line
    ) {
        self.log(.info, message(), metadata: metadata(), file: file, function: function, line: line)
    }

    /// Writes a record at ``/KeelCore/LogLevel/notice``; see ``log(_:_:metadata:file:function:line:)``.
    /// - Parameters:
    ///   - message: The message.
    ///   - metadata: Structured values.
    ///   - file: The file that writes it.
    ///   - function: The function that writes it.
    ///   - line: The line that writes it.
    public func notice(
        _ message: @autoclosure () -> String,
        metadata: @autoclosure () -> [String: String] = [:],
        file: String = #fileID,
        function: String = #function,
        line: UInt = #line
    ) {
        self.log(.notice, message(), metadata: metadata(), file: file, function: function, line: line)
    }

    /// Writes a record at ``/KeelCore/LogLevel/warning``; see ``log(_:_:metadata:file:function:line:)``.
    /// - Parameters:
    ///   - message: The message.
    ///   - metadata: Structured values.
    ///   - file: The file that writes it.
    ///   - function: The function that writes it.
    ///   - line: The line that writes it.
    public func warning(
        _ message: @autoclosure () -> String,
        metadata: @autoclosure () -> [String: String] = [:],
        file: String = #fileID,
        function: String = #function,
        line: UInt = #line
    ) {
        self.log(.warning, message(), metadata: metadata(), file: file, function: function, line: line)
    }

    /// Writes a record at ``/KeelCore/LogLevel/error``; see ``log(_:_:metadata:file:function:line:)``.
    /// - Parameters:
    ///   - message: The message.
    ///   - metadata: Structured values.
    ///   - file: The file that writes it.
    ///   - function: The function that writes it.
    ///   - line: The line that writes it.
    public func error(
        _ message: @autoclosure () -> String,
        metadata: @autoclosure () -> [String: String] = [:],
        file: String = #fileID,
        function: String = #function,
        line: UInt = #line
    ) {
        self.log(.error, message(), metadata: metadata(), file: file, function: function, line: line)
    }

    /// Writes a record at ``/KeelCore/LogLevel/critical``; see ``log(_:_:metadata:file:function:line:)``.
    /// - Parameters:
    ///   - message: The message.
    ///   - metadata: Structured values.
    ///   - file: The file that writes it.
    ///   - function: The function that writes it.
    ///   - line: The line that writes it.
    public func critical(
        _ message: @autoclosure () -> String,
        metadata: @autoclosure () -> [String: String] = [:],
        file: String = #fileID,
        function: String = #function,
        line: UInt = #line
    ) {
        self.log(.critical, message(), metadata: metadata(), file: file, function: function, line: line)
    }
}
