import Keel
import KeelSwiftServer
import KeelTesting
import MetricsTestKit
import ServiceLifecycle
import XCTest

/// The integration as an application wires it, from an `XCTestCase` async test: a host reporting
/// to swift-metrics through ``SwiftServerTelemetry``, run by a `ServiceGroup` through
/// ``HostService``.
final class HostServiceXCTests: XCTestCase {
    func testHostInAServiceGroupReportsRequestMetricsAndStopsGracefully() async throws {
        let metrics = TestMetrics()
        let clock = TestClock()
        let log = Fixtures.Log()
        let running = Fixtures.Arrivals()
        let host = Fixtures.makeHost(clock: clock, telemetry: SwiftServerTelemetry(metrics: metrics))
        try await host.register(
            Fixtures.Worker(log: log) { request in
                // Each request takes 3 ms on the host's clock; 13 fails.
                clock.advance(by: .milliseconds(3))
                if request.value == 13 { throw Fixtures.Refusal(reason: "unlucky") }
            }
        )
        let (logger, _) = Fixtures.makeLogger()
        let group = ServiceGroup(services: [HostService(host: host, onRunning: { running.arrive() })], logger: logger)

        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            await running.wait(for: 1)

            let reply = try await host.client.send(Fixtures.Work(value: 1))
            XCTAssertEqual(reply, 1)
            let failure = await Fixtures.failure { try await host.client.send(Fixtures.Work(value: 13)) }
            XCTAssertEqual(failure?.code, .handlerFailed)

            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }

        let state = await host.state
        XCTAssertEqual(state, .stopped)
        let entries = await log.entries
        XCTAssertEqual(entries, ["start worker", "handled 1", "stop worker"])

        // Keel's request metrics, under Keel's labels and dimensions, in swift-metrics.
        let dimensions = [("service", "worker"), ("request", "Work")]
        XCTAssertEqual(try metrics.expectCounter("keel.requests", dimensions).totalValue, 2)
        XCTAssertEqual(try metrics.expectCounter("keel.requests.failed", dimensions).totalValue, 1)
        XCTAssertEqual(try metrics.expectTimer("keel.requests.duration", dimensions).values, [3_000_000, 3_000_000])
    }
}
