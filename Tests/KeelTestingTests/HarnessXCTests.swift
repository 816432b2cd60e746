import Keel
import KeelCore
import KeelTestSupport
import KeelTesting
import XCTest

/// `TestHost` and `EventRecorder` from `XCTestCase` async tests, as XCTest users write them.
final class HarnessXCTests: TimeLimitedTestCase {
    typealias Greeted = HarnessFixtures.Greeted
    typealias Ping = HarnessFixtures.Ping

    func testTestHostStartsServicesAndShutsDownAfterTheBody() async throws {
        let log = HarnessFixtures.Log()
        let host = try await TestHost.with(HarnessFixtures.Greeter(log: log)) { test in
            let state = await test.host.state
            XCTAssertEqual(state, .running)
            let greeted = try await test.events.waitFor(
                count: 1,
                of: Greeted.self,
                timeout: .seconds(1),
                clock: test.clock
            )
            XCTAssertEqual(greeted, [Greeted(name: "world")])
            return test.host
        }
        let state = await host.state
        XCTAssertEqual(state, .stopped)
        XCTAssertEqual(log.values, ["greeter.start", "greeter.stop"])
    }

    func testTestHostShutsDownWhenTheBodyThrows() async throws {
        let log = HarnessFixtures.Log()
        let captured = HarnessFixtures.Box<ServiceHost>()
        do {
            try await TestHost.with(HarnessFixtures.Greeter(log: log)) { test in
                captured.set(test.host)
                throw HarnessFixtures.BodyFailure()
            }
            XCTFail("the body's error was not rethrown")
        } catch {
            XCTAssertTrue(error is HarnessFixtures.BodyFailure, "unexpected error \(error)")
        }
        let host = try XCTUnwrap(captured.value)
        let state = await host.state
        XCTAssertEqual(state, .stopped)
        XCTAssertEqual(log.values, ["greeter.start", "greeter.stop"])
    }

    func testRecorderWaitsForPublishedEvents() async throws {
        try await TestHost.with { test in
            for number in 1...3 {
                try await test.bus.publish(Ping(number: number))
            }
            let pings = try await test.events.waitFor(count: 3, of: Ping.self, timeout: .seconds(1), clock: test.clock)
            XCTAssertEqual(pings.map(\.number), [1, 2, 3])
        }
    }

    func testRecorderTimesOutWhenTheTestClockPassesTheTimeout() async throws {
        try await TestHost.with { test in
            try await test.bus.publish(Ping(number: 1))
            _ = try await test.events.waitFor(count: 1, of: Ping.self, timeout: .seconds(1), clock: test.clock)

            try await withThrowingTaskGroup(of: [Ping].self) { group in
                group.addTask {
                    try await test.events.waitFor(count: 2, of: Ping.self, timeout: .seconds(2), clock: test.clock)
                }
                await test.clock.waitForSleepers(count: 1)
                test.clock.advance(by: .seconds(2))
                do {
                    _ = try await group.next()
                    XCTFail("the wait did not time out")
                } catch let error as EventRecorder.TimeoutError {
                    XCTAssertEqual(error.expected, 2)
                    XCTAssertEqual(error.matched, 1)
                }
            }
        }
    }

    func testInjectedFaultsFailAndDelayARouteAndDropADelivery() async throws {
        typealias Charge = FaultFixtures.Charge
        try await TestHost.with(FaultFixtures.Payments()) { test in
            let outage = test.faults.inject(.failure(FaultFixtures.GatewayDown()), into: Charge.self, when: .next(1))
            do {
                _ = try await test.client.send(Charge(order: 1))
                XCTFail("the injected failure did not reach the caller")
            } catch let error as RequestError {
                XCTAssertEqual(error.code, .handlerFailed)
                XCTAssertTrue(error.underlying is FaultFixtures.GatewayDown)
            }
            let receipt = try await test.client.send(Charge(order: 2))
            XCTAssertEqual(receipt, "receipt-2")
            XCTAssertEqual(test.faults.injections(by: outage), 1)

            test.faults.inject(.delay(.seconds(1)), into: Charge.self)
            async let delayed = test.client.send(Charge(order: 3))
            await test.clock.waitForSleepers(count: 1)
            test.clock.advance(by: .seconds(1))
            let answer = try await delayed
            XCTAssertEqual(answer, "receipt-3")

            let pings = try test.bus.subscribe(to: Ping.self, name: "pings") { _, _ in }
            test.faults.inject(.drop, intoTopics: "ping.#")
            let published = try await test.bus.publish(Ping(number: 1))
            await test.host.waitUntilIdle()
            XCTAssertEqual(published.dropped, 1)
            XCTAssertEqual(pings.statistics.dropped, 1)
            XCTAssertEqual(pings.statistics.delivered, 0)
            XCTAssertTrue(test.bus.deadLetters.isEmpty)
        }
    }
}
