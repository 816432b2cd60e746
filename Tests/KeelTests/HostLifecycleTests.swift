import Keel
import KeelCore
import KeelTesting
import Testing

private typealias Node = HostFixtures.Node
private typealias Database = HostFixtures.Database
private typealias Cache = HostFixtures.Cache
private typealias Users = HostFixtures.Users
private typealias Orders = HostFixtures.Orders
private typealias Payments = HostFixtures.Payments
private typealias Billing = HostFixtures.Billing

private enum CycleA: HostFixtures.Spec {
    static let name: ServiceName = "cycle-a"
    static let dependencies: [ServiceName] = ["cycle-b"]
}

private enum CycleB: HostFixtures.Spec {
    static let name: ServiceName = "cycle-b"
    static let dependencies: [ServiceName] = ["cycle-c"]
}

private enum CycleC: HostFixtures.Spec {
    static let name: ServiceName = "cycle-c"
    static let dependencies: [ServiceName] = ["cycle-a"]
}

private enum SelfLoop: HostFixtures.Spec {
    static let name: ServiceName = "self-loop"
    static let dependencies: [ServiceName] = ["self-loop"]
}

/// A second type that claims the name `database`.
private enum DatabaseImpostor: HostFixtures.Spec {
    static let name: ServiceName = "database"
    static let dependencies: [ServiceName] = []
}

/// Logs its start and each of its health checks.
private actor Checked<S: HostFixtures.Spec>: ServiceActor {
    static var name: ServiceName { S.name }
    static var dependencies: [ServiceName] { S.dependencies }

    private let log: HostFixtures.Log

    init(log: HostFixtures.Log) {
        self.log = log
    }

    func start(_ environment: ServiceEnvironment) async throws {
        await self.log.append("start \(Self.name)")
    }

    func stop() async throws {}

    func health() async -> HealthReport {
        await self.log.append("health \(Self.name)")
        return .healthy
    }
}

/// A host on a test clock with periodic health checks off.
private func makeHost(clock: TestClock = TestClock(), shutdownTimeout: Duration = .seconds(10)) -> ServiceHost {
    var configuration = TestHost.defaultConfiguration
    configuration.shutdownTimeout = shutdownTimeout
    return ServiceHost(configuration: configuration, clock: clock, random: RandomSource(seed: 7))
}

@Suite("Host lifecycle", .timeLimit(.minutes(2)))
struct HostLifecycleTests {
    // MARK: Order

    @Test("starts services in dependency order and stops them in reverse")
    func startsInDependencyOrderAndStopsInReverse() async throws {
        let log = HostFixtures.Log()
        let host = makeHost()
        // Registered against the dependency order, so that the order must come from the graph.
        try await host.register(Node<Billing>(log: log))
        try await host.register(Node<Orders>(log: log))
        try await host.register(Node<Users>(log: log))
        try await host.register(Node<Cache>(log: log))
        try await host.register(Node<Database>(log: log))

        try await host.start()
        #expect(await host.state == .running)
        await host.shutdown()
        #expect(await host.state == .stopped)

        // Database and cache depend on nothing: they start, and stop, in either order.
        let expected: [Set<String>] = [
            ["start cache#0", "start database#0"], ["start users#0"], ["start orders#0"], ["start billing#0"],
            ["stop billing#0"], ["stop orders#0"], ["stop users#0"], ["stop cache#0", "stop database#0"],
        ]
        #expect(HostFixtures.grouped(await log.entries, like: expected) == expected)
        #expect(await host.stopFailures.isEmpty)
    }

    @Test("independent services start concurrently, and their dependents only after both")
    func independentServicesStartConcurrently() async throws {
        let log = HostFixtures.Log()
        // Each start waits until both have entered: started one after the other, the first would
        // wait forever and the suite's time limit would fail the test.
        let rendezvous = HostFixtures.Arrivals()
        let meet: HostFixtures.Node<Database>.Hook = {
            rendezvous.arrive()
            await rendezvous.wait(for: 2)
        }
        let host = makeHost()
        try await host.register(Node<Database>(log: log, onStart: meet))
        try await host.register(Node<Cache>(log: log, onStart: meet))
        try await host.register(Node<Users>(log: log))

        try await host.start()
        await host.shutdown()

        #expect(rendezvous.count == 2)
        let expected: [Set<String>] = [
            ["start database#0", "start cache#0"], ["start users#0"],
            ["stop users#0"], ["stop cache#0", "stop database#0"],
        ]
        #expect(HostFixtures.grouped(await log.entries, like: expected) == expected)
    }

    @Test("each level's first health check runs before the next level starts")
    func firstHealthCheckBeforeNextLevel() async throws {
        let log = HostFixtures.Log()
        let host = makeHost()
        try await host.register(Checked<Users>(log: log))
        try await host.register(Checked<Cache>(log: log))
        try await host.register(Checked<Database>(log: log))

        try await host.start()
        await host.shutdown()

        let expected: [Set<String>] = [
            ["start database", "start cache"], ["health database", "health cache"],
            ["start users"], ["health users"],
        ]
        #expect(HostFixtures.grouped(await log.entries, like: expected) == expected)
    }

    @Test("every instance of a service starts and stops")
    func everyInstanceStartsAndStops() async throws {
        let log = HostFixtures.Log()
        let host = makeHost()
        try await host.register(Node<Database>(log: log))
        try await host.register(Node<Database>(log: log))
        try await host.register(Node<Cache>(log: log))

        try await host.start()
        #expect(host.registry.instances(of: "database").map(\.id.description) == ["database#0", "database#1"])
        #expect(host.registry.instances(of: "database").allSatisfy { $0.health.isServing })
        await host.shutdown()

        let expected: [Set<String>] = [
            ["start database#0", "start database#1", "start cache#0"],
            ["stop cache#0", "stop database#1", "stop database#0"],
        ]
        #expect(HostFixtures.grouped(await log.entries, like: expected) == expected)
        #expect(host.registry.instances(of: "database").allSatisfy { !$0.health.isLive })
    }

    // MARK: Start failure

    @Test("a start failure stops what started, in reverse, and reports the first cause")
    func startFailureRollsBack() async throws {
        let log = HostFixtures.Log()
        let host = makeHost()
        try await host.register(Node<Database>(log: log))
        try await host.register(Node<Cache>(log: log))
        try await host.register(Node<Users>(log: log))
        // Orders and payments form one level; orders fails, payments starts beside it.
        try await host.register(Node<Orders>(log: log, onStart: { throw HostFixtures.Refusal(reason: "no disk") }))
        try await host.register(Node<Payments>(log: log))
        try await host.register(Node<Billing>(log: log))

        let error = try await #require(throws: HostError.self) { try await host.start() }
        #expect(error.code == .startFailed)
        #expect(error.services == ["orders"])
        #expect(error.underlying as? HostFixtures.Refusal == HostFixtures.Refusal(reason: "no disk"))
        #expect(await host.state == .stopped)

        // Billing, which depends on the failed service, never starts; the failed one is stopped
        // too, with its level, so that what it set up before it threw is torn down.
        let expected: [Set<String>] = [
            ["start database#0", "start cache#0"], ["start users#0"], ["start payments#0"],
            ["stop payments#0", "stop orders#0"], ["stop users#0"], ["stop cache#0", "stop database#0"],
        ]
        #expect(HostFixtures.grouped(await log.entries, like: expected) == expected)

        // A stopped host does not start again.
        let again = try await #require(throws: HostError.self) { try await host.start() }
        #expect(again.code == .invalidState)
    }

    @Test("a start failure stops the instances of the failing service that did start")
    func startFailureStopsStartedSiblingInstances() async throws {
        let log = HostFixtures.Log()
        let host = makeHost()
        try await host.register(Node<Database>(log: log))
        try await host.register(Node<Cache>(log: log))
        try await host.register(Node<Cache>(log: log, onStart: { throw HostFixtures.Refusal(reason: "port taken") }))

        let error = try await #require(throws: HostError.self) { try await host.start() }
        #expect(error.code == .startFailed)
        #expect(error.services == ["cache"])
        #expect(await host.state == .stopped)

        // cache#0 started and cache#1's start threw: both are stopped.
        let expected: [Set<String>] = [
            ["start database#0", "start cache#0"],
            ["stop cache#1", "stop cache#0", "stop database#0"],
        ]
        #expect(HostFixtures.grouped(await log.entries, like: expected) == expected)
    }

    @Test("a stop failure is reported and the other services still stop")
    func stopFailureIsReported() async throws {
        let log = HostFixtures.Log()
        let host = makeHost()
        try await host.register(Node<Database>(log: log))
        try await host.register(Node<Cache>(log: log))
        try await host.register(Node<Users>(log: log, onStop: { throw HostFixtures.Refusal(reason: "stuck") }))

        try await host.start()
        await host.shutdown()

        let failures = await host.stopFailures
        #expect(failures.count == 1)
        #expect(failures.first?.code == .stopFailed)
        #expect(failures.first?.services == ["users"])
        #expect(failures.first?.underlying as? HostFixtures.Refusal == HostFixtures.Refusal(reason: "stuck"))
        let expected: [Set<String>] = [
            ["start database#0", "start cache#0"], ["start users#0"],
            ["stop users#0"], ["stop cache#0", "stop database#0"],
        ]
        #expect(HostFixtures.grouped(await log.entries, like: expected) == expected)
        #expect(await host.state == .stopped)
    }

    // MARK: Dependency graph

    @Test("a dependency cycle is refused with the cycle named")
    func dependencyCycleIsRefused() async throws {
        let log = HostFixtures.Log()
        let host = makeHost()
        try await host.register(Node<Database>(log: log))
        try await host.register(Node<CycleA>(log: log))
        try await host.register(Node<CycleB>(log: log))
        try await host.register(Node<CycleC>(log: log))

        let error = try await #require(throws: HostError.self) { try await host.start() }
        #expect(error.code == .dependencyCycle)
        #expect(error.services.count == 4)
        #expect(error.services.first == error.services.last)
        #expect(Set(error.services) == ["cycle-a", "cycle-b", "cycle-c"])
        // Each service is followed by the one it depends on.
        let dependencies: [ServiceName: ServiceName] = [
            "cycle-a": "cycle-b", "cycle-b": "cycle-c", "cycle-c": "cycle-a",
        ]
        for (service, next) in zip(error.services, error.services.dropFirst()) {
            #expect(dependencies[service] == next)
        }
        for name in ["cycle-a", "cycle-b", "cycle-c"] {
            #expect(error.message.contains(name))
        }
        #expect(await log.entries.isEmpty, "nothing starts when the graph is refused")
        await host.shutdown()
    }

    @Test("a service that depends on itself is a cycle")
    func selfDependencyIsACycle() async throws {
        let host = makeHost()
        try await host.register(Node<SelfLoop>(log: HostFixtures.Log()))
        let error = try await #require(throws: HostError.self) { try await host.start() }
        #expect(error.code == .dependencyCycle)
        #expect(error.services == ["self-loop", "self-loop"])
        await host.shutdown()
    }

    @Test("a missing dependency is refused with both services named")
    func missingDependencyIsRefused() async throws {
        let log = HostFixtures.Log()
        let host = makeHost()
        try await host.register(Node<Database>(log: log))
        try await host.register(Node<Orders>(log: log))

        let error = try await #require(throws: HostError.self) { try await host.start() }
        #expect(error.code == .missingDependency)
        #expect(error.services == ["orders", "users"])
        #expect(error.message.contains("orders") && error.message.contains("users"))
        #expect(await log.entries.isEmpty)
        await host.shutdown()
        #expect(await host.state == .stopped)
    }

    // MARK: Registration

    @Test("two handlers for one request type in one service are refused")
    func duplicateHandlerIsRefused() async throws {
        let host = makeHost()
        let error = try await #require(throws: HostError.self) { try await host.register(HostFixtures.Doubler()) }
        #expect(error.code == .duplicateHandler)
        #expect(error.services == ["doubler"])
        #expect(error.message.contains("Work"))
        await host.shutdown()
    }

    @Test("two service types with one name are refused")
    func conflictingNamesAreRefused() async throws {
        let log = HostFixtures.Log()
        let host = makeHost()
        try await host.register(Node<Database>(log: log))
        let error = try await #require(throws: HostError.self) {
            try await host.register(Node<DatabaseImpostor>(log: log))
        }
        #expect(error.code == .conflictingRegistration)
        #expect(error.services == ["database"])

        let worker = try await #require(throws: HostError.self) {
            try await host.register(HostFixtures.Worker())
            try await host.register(HostFixtures.WorkerImpostor())
        }
        #expect(worker.code == .conflictingRegistration)
        await host.shutdown()
    }

    @Test("two services handling one request type are refused")
    func conflictingRoutesAreRefused() async throws {
        let host = makeHost()
        try await host.register(HostFixtures.Worker())
        let error = try await #require(throws: HostError.self) { try await host.register(HostFixtures.Poacher()) }
        #expect(error.code == .conflictingRegistration)
        #expect(error.services == ["worker", "poacher"])
        #expect(error.message.contains("Work"))
        await host.shutdown()
    }

    @Test("a refused registration leaves none of its routes behind")
    func refusedRegistrationLeavesNoRoute() async throws {
        let host = makeHost()
        try await host.register(HostFixtures.Worker())
        let error = try await #require(throws: HostError.self) {
            try await host.register(HostFixtures.PartialPoacher())
        }
        #expect(error.code == .conflictingRegistration)
        try await host.start()
        let refused = try await #require(throws: RequestError.self) {
            try await host.client.send(HostFixtures.Fresh())
        }
        #expect(refused.code == .noHandler)
        await host.shutdown()
    }

    @Test("registering after start and starting twice are refused")
    func invalidStatesAreRefused() async throws {
        let log = HostFixtures.Log()
        let host = makeHost()
        try await host.register(Node<Database>(log: log))
        try await host.start()

        let late = try await #require(throws: HostError.self) { try await host.register(Node<Cache>(log: log)) }
        #expect(late.code == .invalidState)
        let twice = try await #require(throws: HostError.self) { try await host.start() }
        #expect(twice.code == .invalidState)

        await host.shutdown()
        await host.shutdown()  // a second shutdown returns at once
        #expect(await log.entries == ["start database#0", "stop database#0"])
    }

    // MARK: Shutdown

    @Test("shutdown drains in-flight requests, refuses new ones, then stops services")
    func shutdownDrainsInFlightWork() async throws {
        let clock = TestClock()
        let log = HostFixtures.Log()
        let gate = HostFixtures.Gate()
        let entered = HostFixtures.Arrivals()
        let host = makeHost(clock: clock)
        try await host.register(
            HostFixtures.Worker(log: log) { request in
                if request.value == 1 {
                    entered.arrive()
                    try await gate.wait()
                }
            }
        )
        try await host.start()

        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                let reply = try await host.client.send(HostFixtures.Work(value: 1))
                await log.append("reply \(reply.value)")
            }
            await entered.wait(for: 1)

            group.addTask {
                await host.shutdown()
                await log.append("shutdown returned")
            }
            // The drain's timeout timer is armed only once shutdown has started draining.
            await clock.waitForSleepers(count: 1)
            #expect(await host.state == .stopping)

            let refused = await HostFixtures.failure { try await host.client.send(HostFixtures.Work(value: 2)) }
            #expect(refused?.code == .shuttingDown)
            #expect(refused?.service == "worker")
            #expect(await !log.entries.contains("stop worker#0"), "stopped before in-flight work finished")

            gate.open()
            try await group.waitForAll()
        }

        #expect(await host.state == .stopped)
        let entries = await log.entries
        #expect(entries.contains("reply 1"))
        #expect(!entries.contains("handled 2"))
        let handled = try #require(entries.firstIndex(of: "handled 1"))
        let stopped = try #require(entries.firstIndex(of: "stop worker#0"))
        let returned = try #require(entries.firstIndex(of: "shutdown returned"))
        #expect(handled < stopped)
        #expect(stopped < returned)
        #expect(clock.sleeperCount == 0, "the drain timer outlived shutdown")
    }

    @Test("shutdown stops services when in-flight work outlasts the shutdown timeout")
    func shutdownTimesOut() async throws {
        let clock = TestClock()
        let log = HostFixtures.Log()
        let gate = HostFixtures.Gate()
        let entered = HostFixtures.Arrivals()
        let host = makeHost(clock: clock, shutdownTimeout: .seconds(30))
        try await host.register(
            HostFixtures.Worker(log: log) { _ in
                entered.arrive()
                do {
                    try await gate.wait()
                } catch {
                    await log.append("handler cancelled")
                    throw error
                }
            }
        )
        try await host.start()

        await withTaskGroup(of: RequestError?.self) { requests in
            requests.addTask {
                await HostFixtures.failure { try await host.client.send(HostFixtures.Work(value: 1)) }
            }
            await entered.wait(for: 1)

            await withTaskGroup(of: Void.self) { shutdown in
                shutdown.addTask { await host.shutdown() }
                await clock.waitForSleepers(count: 1)
                clock.advance(by: .seconds(29))
                #expect(clock.sleeperCount == 1, "the drain gave up before its timeout")
                #expect(await !log.entries.contains("stop worker#0"))
                clock.advance(by: .seconds(1))
                await shutdown.waitForAll()
            }
            #expect(await host.state == .stopped)
            #expect(await log.entries == ["stop worker#0"], "the stuck handler should still be running")

            // Clean up: the stuck caller is cancelled and its handler sees it.
            requests.cancelAll()
            let outcome = await requests.next()
            #expect(outcome??.code == .cancelled)
        }
        #expect(await log.entries == ["stop worker#0", "handler cancelled"])
    }

    @Test("in-flight handlers may still send nested requests while the host drains")
    func nestedRequestsAreAcceptedWhileDraining() async throws {
        let clock = TestClock()
        let gate = HostFixtures.Gate()
        let entered = HostFixtures.Arrivals()
        let host = makeHost(clock: clock)
        try await host.register(HostFixtures.Caller<HostFixtures.Front> {})
        try await host.register(
            HostFixtures.Worker { request in
                guard request.value == 1 else { return }
                entered.arrive()
                try await gate.wait()
            }
        )
        try await host.start()

        try await withThrowingTaskGroup(of: Void.self) { group in
            // The relay's nested request reaches the worker, which waits at the gate.
            group.addTask {
                let reply = try await host.client.send(HostFixtures.Relay<HostFixtures.Front>(value: 1))
                #expect(reply.value == 1)
            }
            await entered.wait(for: 1)
            group.addTask { await host.shutdown() }
            await clock.waitForSleepers(count: 1)
            let refused = await HostFixtures.failure { try await host.client.send(HostFixtures.Work(value: 3)) }
            #expect(refused?.code == .shuttingDown)
            gate.open()
            try await group.waitForAll()
        }
        #expect(await host.state == .stopped)
    }

    @Test("concurrent shutdowns all return once shutdown is complete")
    func concurrentShutdownsJoin() async throws {
        let clock = TestClock()
        let log = HostFixtures.Log()
        let gate = HostFixtures.Gate()
        let entered = HostFixtures.Arrivals()
        let host = makeHost(clock: clock)
        try await host.register(
            HostFixtures.Worker(log: log) { _ in
                entered.arrive()
                try await gate.wait()
            }
        )
        try await host.start()

        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { _ = try await host.client.send(HostFixtures.Work(value: 1)) }
            await entered.wait(for: 1)
            for caller in 0..<3 {
                group.addTask {
                    await host.shutdown()
                    await log.append("shutdown \(caller) returned")
                }
            }
            await clock.waitForSleepers(count: 1)
            gate.open()
            try await group.waitForAll()
        }
        let entries = await log.entries
        let expected: [Set<String>] = [
            ["handled 1"], ["stop worker#0"],
            ["shutdown 0 returned", "shutdown 1 returned", "shutdown 2 returned"],
        ]
        #expect(HostFixtures.grouped(entries, like: expected) == expected)
        #expect(clock.sleeperCount == 0, "only one drain timer, and it was cancelled")
    }

    @Test("cancelling run() shuts the host down gracefully")
    func cancellingRunShutsDown() async throws {
        let log = HostFixtures.Log()
        let started = HostFixtures.Arrivals()
        let host = makeHost()
        try await host.register(Node<Database>(log: log, onStart: { started.arrive() }))
        try await host.register(Node<Users>(log: log))
        try await host.register(Node<Cache>(log: log))

        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await host.run() }
            await started.wait(for: 1)
            group.cancelAll()
            try await group.waitForAll()
        }
        #expect(await host.state == .stopped)
        let expected: [Set<String>] = [
            ["start database#0", "start cache#0"], ["start users#0"],
            ["stop users#0"], ["stop cache#0", "stop database#0"],
        ]
        #expect(HostFixtures.grouped(await log.entries, like: expected) == expected)
    }

    @Test("shutdown of a host that never started stops it")
    func shutdownBeforeStart() async throws {
        let log = HostFixtures.Log()
        let host = makeHost()
        try await host.register(Node<Database>(log: log))
        await host.shutdown()
        #expect(await host.state == .stopped)
        #expect(await log.entries.isEmpty)
        let error = try await #require(throws: HostError.self) { try await host.start() }
        #expect(error.code == .invalidState)
    }
}
