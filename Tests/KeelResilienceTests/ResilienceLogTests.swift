import KeelCore
import KeelTesting
import Testing

@testable import KeelResilience

/// What breakers and bulkheads log for an operator.
@Suite("Resilience logs", .timeLimit(.minutes(2)))
struct ResilienceLogTests {
    typealias Fixtures = CircuitBreakerFixtures

    @Test("a breaker logs its opening as a warning, its half-opening as a notice, its closing as info")
    func breakerTransitions() async throws {
        let clock = TestClock()
        let recorder = InMemoryRecorder(clock: clock)
        let breaker = CircuitBreakerTests.breaker(clock: clock, telemetry: recorder) {
            $0.failureRateThreshold = nil
            $0.consecutiveFailureThreshold = 2
            $0.permittedCallsInHalfOpen = 1
            $0.openDuration = .fixed(.seconds(5))
        }
        try await Fixtures.fail(breaker, times: 2)
        #expect(breaker.state == .open)
        clock.advance(by: .seconds(5))
        try await Fixtures.succeed(breaker)
        #expect(breaker.state == .closed)

        let records = recorder.logs(from: "keel.breaker")
        #expect(records.map(\.level) == [.warning, .notice, .info])
        #expect(records.map { $0.metadata["to"] } == ["open", "halfOpen", "closed"].map { Optional($0) })
        #expect(records.allSatisfy { $0.metadata["breaker"] == "test" })
        #expect(records.first?.message == "breaker test went from closed to open, open for 5.0 seconds")
        #expect(records.first?.metadata["openFor"] == "5.0 seconds")
        #expect(records.first?.metadata["rate"] == nil, "consecutive failures opened it, not a rate")
    }

    @Test("an opening caused by the failure rate names the rate")
    func breakerRate() async throws {
        let clock = TestClock()
        let recorder = InMemoryRecorder(clock: clock, logLevel: .warning)
        let breaker = CircuitBreakerTests.breaker(clock: clock, telemetry: recorder) {
            $0.failureRateThreshold = 0.5
            $0.minimumNumberOfCalls = 4
            $0.window = .lastCalls(4)
        }
        try await Fixtures.succeed(breaker, times: 2)
        try await Fixtures.fail(breaker, times: 2)
        #expect(breaker.state == .open)
        let record = try #require(recorder.logs(from: "keel.breaker").first)
        #expect(record.metadata["rate"] == "failure=0.5")
        #expect(record.message.contains("failure rate 0.5 reached its threshold"))
        #expect(recorder.logs.count == 1, "nothing below warning is kept")
    }

    @Test("a bulkhead logs rejections at most once a second, counting the ones it held back")
    func bulkheadRejections() async throws {
        let clock = TestClock()
        let recorder = InMemoryRecorder(clock: clock)
        let bulkhead = Bulkhead(
            name: "narrow",
            configuration: .init(maxConcurrent: 1, maxQueued: 0, maxWait: nil),
            clock: clock,
            telemetry: recorder
        )
        let gate = TestGate()
        let entered = BulkheadTestArrivals()
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask {
                try await bulkhead.run {
                    entered.arrive()
                    await gate.wait()
                }
            }
            await entered.wait(for: 1)
            for _ in 0..<5 {
                await #expect(throws: BulkheadError.self) { try await bulkhead.run {} }
            }
            #expect(recorder.logs(from: "keel.bulkhead").count == 1, "the first rejection alone is logged at once")
            clock.advance(by: .milliseconds(999))
            await #expect(throws: BulkheadError.self) { try await bulkhead.run {} }
            #expect(recorder.logs(from: "keel.bulkhead").count == 1)
            clock.advance(by: .milliseconds(1))
            await #expect(throws: BulkheadError.self) { try await bulkhead.run {} }
            gate.open()
        }
        let records = recorder.logs(from: "keel.bulkhead")
        #expect(records.map(\.level) == [.warning, .warning])
        #expect(records.map { $0.metadata["suppressed"] } == ["0", "5"])
        #expect(records.allSatisfy { $0.metadata["bulkhead"] == "narrow" && $0.metadata["reason"] == "queue_full" })
        #expect(records.last?.message.hasSuffix("(5 more rejected since the last record)") == true)
        #expect(bulkhead.metrics.rejected == 7, "every rejection still counts in the metrics")
    }

    @Test("a bulkhead whose telemetry does not log warnings makes no rejection log")
    func bulkheadQuiet() {
        let bulkhead = BulkheadInstruments.make(InMemoryRecorder(logLevel: .error), name: "quiet")
        #expect(bulkhead.rejections == nil)
        #expect(BulkheadInstruments.make(InMemoryRecorder(logLevel: .warning), name: "loud").rejections != nil)
        #expect(BulkheadInstruments.make(NoOpTelemetry(), name: "none").rejections == nil)
    }

    @Test("a telemetry that logs but records no metrics gets the rejection log and no metric handlers")
    func bulkheadLogsWithoutMetrics() {
        struct LogsOnly: Telemetry {
            var recordsMetrics: Bool { false }
            var logLevel: LogLevel? { .warning }
            func makeCounter(label: String, dimensions: [(String, String)]) -> any TelemetryCounter {
                NoOpTelemetry().makeCounter(label: label, dimensions: dimensions)
            }
            func makeGauge(label: String, dimensions: [(String, String)]) -> any TelemetryGauge {
                NoOpTelemetry().makeGauge(label: label, dimensions: dimensions)
            }
            func makeTimer(label: String, dimensions: [(String, String)]) -> any TelemetryTimer {
                NoOpTelemetry().makeTimer(label: label, dimensions: dimensions)
            }
            func makeHistogram(label: String, dimensions: [(String, String)]) -> any TelemetryHistogram {
                NoOpTelemetry().makeHistogram(label: label, dimensions: dimensions)
            }
            func startSpan(_ operationName: String, context: TraceContext, kind: TelemetrySpanKind) -> any TelemetrySpan
            {
                NoOpTelemetry().startSpan(operationName, context: context, kind: kind)
            }
        }
        let instruments = BulkheadInstruments.make(LogsOnly(), name: "quiet-metrics")
        #expect(instruments.gauges == nil && instruments.events == nil)
        #expect(instruments.rejections != nil)
        #expect(!NoOpTelemetry().recordsMetrics && InMemoryRecorder().recordsMetrics)
    }
}
