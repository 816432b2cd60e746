import InMemoryLogging
import Keel
import KeelCore
import KeelSwiftServer
import KeelTesting
import Logging
import Testing

/// Keel's log records through swift-log.
@Suite("SwiftServerTelemetry: logs", .timeLimit(.minutes(1)))
struct LoggingBridgeTests {
    @Test("a host's records reach the logger with their level, source, metadata and trace ids")
    func hostRecords() async throws {
        let (logger, logs) = Fixtures.makeLogger()
        let host = Fixtures.makeHost(clock: TestClock(), telemetry: SwiftServerTelemetry(metrics: nil, logger: logger))
        try await host.register(Fixtures.Worker(log: Fixtures.Log()))
        try await host.register(Fixtures.Broken(log: Fixtures.Log()))
        await #expect(throws: HostError.self) { try await host.start() }

        let entries = logs.entries
        let started = try #require(entries.first { $0.message.description == "started worker#0" })
        #expect(started.level == .info)
        #expect(started.metadata["service"] == .string("worker"))
        #expect(started.metadata["instance"] == .string("worker#0"))
        let rolledBack = try #require(entries.first { $0.message.description.hasPrefix("start rolled back") })
        #expect(rolledBack.level == .error)
        #expect(rolledBack.metadata["service"] == .string("broken"))
        #expect(entries.contains { $0.message.description == "stopped worker#0 (start rolled back)" })
    }

    @Test("records below the logger's level are not even built; the level is the logger's")
    func levels() {
        var (logger, logs) = Fixtures.makeLogger()
        logger.logLevel = .warning
        let telemetry = SwiftServerTelemetry(metrics: nil, logger: logger)
        #expect(telemetry.logLevel == .warning)
        #expect(SwiftServerTelemetry(metrics: nil).logLevel == nil)
        for level in LogLevel.allCases {
            telemetry.log(level, source: "test", "\(level)")
        }
        #expect(logs.entries.map(\.level) == [.warning, .error, .critical])
        #expect(logs.entries.map(\.message.description) == ["warning", "error", "critical"])
    }

    @Test("a record's trace context becomes trace_id, span_id, correlation_id and causation_id")
    func traceMetadata() throws {
        let (logger, logs) = Fixtures.makeLogger()
        let telemetry = SwiftServerTelemetry(metrics: nil, logger: logger)
        var context = TraceContext.makeRoot(using: RandomSource(seed: 4), correlationID: "order-9")
        context.causationID = "evt-1"
        TraceContext.$current.withValue(context) {
            telemetry.log(.notice, source: "test", "inside", metadata: ["key": "value"])
        }
        telemetry.log(.notice, source: "test", "outside")
        let inside = try #require(logs.entries.first)
        #expect(
            inside.metadata == [
                "key": .string("value"),
                "trace_id": .string(context.traceID.description),
                "span_id": .string(context.spanID.description),
                "correlation_id": .string("order-9"),
                "causation_id": .string("evt-1"),
            ]
        )
        #expect(logs.entries.last?.metadata == [:])
    }

    @Test("the metadata provider adds Keel's current trace context to a logger's lines")
    func metadataProvider() throws {
        var handler = InMemoryLogHandler()
        handler.metadataProvider = .keelTraceContext
        let logger = Logger(label: "app") { [handler] _ in handler }
        let context = TraceContext.makeRoot(using: RandomSource(seed: 8))
        TraceContext.$current.withValue(context) { logger.info("inside") }
        logger.info("outside")
        #expect(handler.entries.first?.metadata["trace_id"] == .string(context.traceID.description))
        #expect(handler.entries.first?.metadata["correlation_id"] == .string(context.correlationID))
        #expect(handler.entries.last?.metadata["trace_id"] == nil)
    }
}
