import Keel
import KeelCore
import KeelTestSupport
import KeelTesting
import XCTest

/// The host, its request channels and its registry driven from XCTest, as users of XCTest write it.
final class HostXCTests: TimeLimitedTestCase {
    private typealias Node = HostFixtures.Node
    private typealias Work = HostFixtures.Work
    private typealias Worker = HostFixtures.Worker

    func testStartsInDependencyOrderAndStopsInReverse() async throws {
        let log = HostFixtures.Log()
        let host = ServiceHost(configuration: TestHost.defaultConfiguration, clock: TestClock())
        try await host.register(Node<HostFixtures.Orders>(log: log))
        try await host.register(Node<HostFixtures.Users>(log: log))
        try await host.register(Node<HostFixtures.Database>(log: log))
        try await host.register(Node<HostFixtures.Cache>(log: log))

        try await host.start()
        await host.shutdown()

        // Database and cache depend on nothing: they start, and stop, in either order.
        let expected: [Set<String>] = [
            ["start database#0", "start cache#0"], ["start users#0"], ["start orders#0"],
            ["stop orders#0"], ["stop users#0"], ["stop cache#0", "stop database#0"],
        ]
        let entries = await log.entries
        XCTAssertEqual(HostFixtures.grouped(entries, like: expected), expected)
        let state = await host.state
        XCTAssertEqual(state, .stopped)
    }

    func testStartFailureRollsBack() async throws {
        let log = HostFixtures.Log()
        let host = ServiceHost(configuration: TestHost.defaultConfiguration, clock: TestClock())
        try await host.register(Node<HostFixtures.Database>(log: log))
        try await host.register(Node<HostFixtures.Cache>(log: log))
        try await host.register(
            Node<HostFixtures.Users>(log: log, onStart: { throw HostFixtures.Refusal(reason: "no users table") })
        )
        do throws(HostError) {
            try await host.start()
            XCTFail("the host started although users refused")
        } catch {
            XCTAssertEqual(error.code, .startFailed)
            XCTAssertEqual(error.services, ["users"])
            XCTAssertEqual(error.underlying as? HostFixtures.Refusal, HostFixtures.Refusal(reason: "no users table"))
        }
        // Users, whose start threw, is stopped first, then what started before it.
        let expected: [Set<String>] = [
            ["start database#0", "start cache#0"], ["stop users#0"], ["stop cache#0", "stop database#0"],
        ]
        let entries = await log.entries
        XCTAssertEqual(HostFixtures.grouped(entries, like: expected), expected)
        let state = await host.state
        XCTAssertEqual(state, .stopped)
    }

    func testShutdownDrainsInFlightRequest() async throws {
        let clock = TestClock()
        let log = HostFixtures.Log()
        let gate = HostFixtures.Gate()
        let entered = HostFixtures.Arrivals()
        let host = ServiceHost(configuration: TestHost.defaultConfiguration, clock: clock)
        try await host.register(
            Worker(log: log) { _ in
                entered.arrive()
                try await gate.wait()
            }
        )
        try await host.start()

        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { _ = try await host.client.send(Work(value: 1)) }
            await entered.wait(for: 1)
            group.addTask { await host.shutdown() }
            await clock.waitForSleepers(count: 1)  // shutdown is draining

            let refused = await HostFixtures.failure { try await host.client.send(Work(value: 2)) }
            XCTAssertEqual(refused?.code, .shuttingDown)

            gate.open()
            try await group.waitForAll()
        }
        let entries = await log.entries
        XCTAssertEqual(entries, ["handled 1", "stop worker#0"])
    }

    func testDeadlineExceededCancelsHandler() async throws {
        let clock = TestClock()
        let observed = HostFixtures.Values<Bool>()
        let worker = Worker { _ in
            do {
                try await clock.sleep(for: .seconds(60))
            } catch {
                observed.append(error is CancellationError)
                throw error
            }
        }
        try await TestHost.with(worker, clock: clock) { test in
            try await withThrowingTaskGroup(of: RequestError?.self) { group in
                group.addTask {
                    await HostFixtures.failure { try await test.client.send(Work(value: 1), timeout: .seconds(2)) }
                }
                await clock.waitForSleepers(count: 2)
                clock.advance(by: .seconds(2))
                let error = try await group.next() ?? nil
                XCTAssertEqual(error?.code, .deadlineExceeded)
            }
            XCTAssertEqual(observed.all, [true])
        }
    }

    func testUnhealthyInstanceGetsNoTrafficUntilHealthy() async throws {
        let workers = [Worker(), Worker()]
        try await TestHost.with(services: workers) { test in
            var chosen: [Int] = []
            for value in 0..<4 { chosen.append(try await test.client.send(Work(value: value)).instance) }
            XCTAssertEqual(chosen, [0, 1, 0, 1])

            await workers[0].setHealth(.notReady("maintenance"))
            await test.host.checkHealth()
            chosen = []
            for value in 0..<3 { chosen.append(try await test.client.send(Work(value: value)).instance) }
            XCTAssertEqual(chosen, [1, 1, 1])

            await workers[0].setHealth(.healthy)
            await test.host.checkHealth()
            chosen = []
            for value in 0..<2 { chosen.append(try await test.client.send(Work(value: value)).instance) }
            XCTAssertEqual(Set(chosen), [0, 1])
        }
    }

    func testUndeclaredDependencyIsRefused() async throws {
        try await TestHost.with(HostFixtures.Caller<HostFixtures.Loner>(), Worker()) { test in
            let error = await HostFixtures.failure {
                try await test.client.send(HostFixtures.Relay<HostFixtures.Loner>(value: 1))
            }
            XCTAssertEqual(error?.code, .handlerFailed)
            XCTAssertEqual((error?.underlying as? RequestError)?.code, .undeclaredDependency)
        }
    }
}
