import Keel
import KeelCore
import KeelTesting
import Synchronization
import Testing

private typealias Work = HostFixtures.Work
private typealias Worker = HostFixtures.Worker

/// A host configuration with the given balancing and, optionally, periodic health checks.
private func configuration(
    _ loadBalancing: LoadBalancing = .roundRobin,
    healthCheckInterval: Duration? = nil
) -> ServiceHost.Configuration {
    var configuration = TestHost.defaultConfiguration
    configuration.loadBalancing = loadBalancing
    configuration.healthCheckInterval = healthCheckInterval
    return configuration
}

/// Sends `count` requests one after another; returns the instance that handled each.
private func instances(handling count: Int, through client: RequestClient) async throws -> [Int] {
    var result: [Int] = []
    for value in 0..<count {
        result.append(try await client.send(Work(value: value)).instance)
    }
    return result
}

@Suite("Registry and load balancing", .timeLimit(.minutes(2)))
struct RegistryTests {
    // MARK: Strategies

    @Test("round-robin takes each instance in turn")
    func roundRobinAlternates() async throws {
        let workers = [Worker(), Worker(), Worker()]
        try await TestHost.with(services: workers, configuration: configuration(.roundRobin)) { test in
            let chosen = try await instances(handling: 7, through: test.client)
            #expect(chosen == [0, 1, 2, 0, 1, 2, 0])
        }
    }

    @Test("random is repeatable from the seed and reaches every instance")
    func randomIsSeeded() async throws {
        func run(seed: UInt64) async throws -> [Int] {
            let workers = [Worker(), Worker(), Worker()]
            return try await TestHost.with(services: workers, configuration: configuration(.random), seed: seed) {
                test in
                try await instances(handling: 60, through: test.client)
            }
        }
        let first = try await run(seed: 42)
        let second = try await run(seed: 42)
        #expect(first == second)
        #expect(Set(first) == [0, 1, 2])
        #expect(first != (0..<60).map { $0 % 3 }, "looks like round-robin")
    }

    @Test("least-outstanding sends new requests away from a busy instance")
    func leastOutstandingAvoidsBusyInstance() async throws {
        let gate = HostFixtures.Gate()
        let entered = HostFixtures.Arrivals()
        let hold: Worker.Behaviour = { request in
            guard request.value < 0 else { return }
            entered.arrive()
            try await gate.wait()
        }
        let workers = [Worker(behaviour: hold), Worker(behaviour: hold)]
        try await TestHost.with(services: workers, configuration: configuration(.leastOutstanding)) { test in
            try await withThrowingTaskGroup(of: Int.self) { group in
                group.addTask { try await test.client.send(Work(value: -1)).instance }
                await entered.wait(for: 1)

                let statuses = test.host.registry.instances(of: "worker")
                #expect(statuses.map(\.outstanding).sorted() == [0, 1])
                let busy = try #require(statuses.first { $0.outstanding == 1 }).id.index

                // Round-robin would alternate; least-outstanding keeps choosing the idle instance.
                let chosen = try await instances(handling: 4, through: test.client)
                #expect(chosen == [Int](repeating: 1 - busy, count: 4))

                gate.open()
                let held = try await group.next()
                #expect(held == busy)
            }
            #expect(test.host.registry.instances(of: "worker").map(\.outstanding) == [0, 0])
        }
    }

    @Test("least-outstanding spreads idle traffic over every instance")
    func leastOutstandingBreaksTiesRoundRobin() async throws {
        let workers = [Worker(), Worker(), Worker()]
        try await TestHost.with(services: workers, configuration: configuration(.leastOutstanding)) { test in
            let chosen = try await instances(handling: 6, through: test.client)
            #expect(Set(chosen) == [0, 1, 2])
        }
    }

    @Test("a service's registration may choose its own strategy")
    func perServiceStrategy() async throws {
        let host = ServiceHost(
            configuration: configuration(.roundRobin),
            clock: TestClock(),
            random: RandomSource(seed: 3)
        )
        let gate = HostFixtures.Gate()
        let entered = HostFixtures.Arrivals()
        let hold: Worker.Behaviour = { request in
            guard request.value < 0 else { return }
            entered.arrive()
            try await gate.wait()
        }
        try await host.register(Worker(behaviour: hold), loadBalancing: .leastOutstanding)
        try await host.register(Worker(behaviour: hold))
        try await host.start()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { _ = try await host.client.send(Work(value: -1)) }
            await entered.wait(for: 1)
            let idle = try #require(host.registry.instances(of: "worker").first { $0.outstanding == 0 }).id.index
            let chosen = try await instances(handling: 3, through: host.client)
            #expect(chosen == [idle, idle, idle])
            gate.open()
            try await group.waitForAll()
        }
        await host.shutdown()
    }

    // MARK: Health

    @Test("an instance that is not ready gets no traffic until it is healthy again")
    func unhealthyInstanceLeavesRotation() async throws {
        let workers = [Worker(), Worker(), Worker()]
        try await TestHost.with(services: workers) { test in
            let registry = test.host.registry
            #expect(registry.instances(of: "worker").allSatisfy { $0.health.isServing })

            await workers[1].setHealth(.notReady("overloaded"))
            await test.host.checkHealth()
            let status = registry.instances(of: "worker")[1]
            #expect(!status.health.isServing)
            #expect(status.health == .notReady("overloaded"))
            #expect(status.description == "worker#1: not ready: overloaded, 0 in flight")
            let whileNotReady = try await instances(handling: 6, through: test.client)
            #expect(Set(whileNotReady) == [0, 2])
            #expect(await workers[1].handled == 0)

            await workers[1].setHealth(.healthy)
            await test.host.checkHealth()
            #expect(registry.instances(of: "worker")[1].health.isServing)
            let afterRecovery = try await instances(handling: 3, through: test.client)
            #expect(Set(afterRecovery) == [0, 1, 2])
            #expect(await workers[1].handled == 1)
        }
    }

    @Test("a dead instance leaves the rotation as a not-ready one does")
    func deadInstanceLeavesRotation() async throws {
        let workers = [Worker(), Worker()]
        try await TestHost.with(services: workers) { test in
            await workers[0].setHealth(.dead("disk gone"))
            await test.host.checkHealth()
            #expect(test.host.registry.instances(of: "worker")[0].health.description == "dead: disk gone")
            let chosen = try await instances(handling: 4, through: test.client)
            #expect(chosen == [1, 1, 1, 1])
        }
    }

    @Test("an instance unhealthy at start takes no traffic until a check finds it ready")
    func unhealthyAtStart() async throws {
        let workers = [Worker(health: .notReady("warming up")), Worker()]
        try await TestHost.with(services: workers) { test in
            let whileWarmingUp = try await instances(handling: 3, through: test.client)
            #expect(whileWarmingUp == [1, 1, 1])
            await workers[0].setHealth(.healthy)
            await test.host.checkHealth()
            let afterWarmUp = try await instances(handling: 2, through: test.client)
            #expect(Set(afterWarmUp) == [0, 1])
        }
    }

    @Test("scheduled health checks on the host's clock update the registry")
    func scheduledHealthChecks() async throws {
        let clock = TestClock()
        let workers = [Worker(), Worker()]
        var settings = configuration(healthCheckInterval: .seconds(5))
        // Only the loop sleeps on the clock here; timeouts have their own test.
        settings.healthCheckTimeout = nil
        try await TestHost.with(services: workers, configuration: settings, clock: clock) { test in
            let registry = test.host.registry
            // The health loop is asleep until its first check.
            await clock.waitForSleepers(count: 1)
            await workers[0].setHealth(.notReady("draining"))

            clock.advance(by: .seconds(4))
            #expect(clock.sleeperCount == 1)
            #expect(registry.instances(of: "worker")[0].health.isServing, "checked before the interval")

            clock.advance(by: .seconds(1))
            // The loop sleeps again only after the check has updated the registry.
            await clock.waitForSleepers(count: 1)
            #expect(registry.instances(of: "worker")[0].health == .notReady("draining"))
            let whileDraining = try await instances(handling: 3, through: test.client)
            #expect(whileDraining == [1, 1, 1])

            await workers[0].setHealth(.healthy)
            clock.advance(by: .seconds(5))
            await clock.waitForSleepers(count: 1)
            #expect(registry.instances(of: "worker")[0].health.isServing)
            let afterRecovery = try await instances(handling: 2, through: test.client)
            #expect(Set(afterRecovery) == [0, 1])
        }
        #expect(clock.sleeperCount == 0, "the health loop outlived the host")
    }

    @Test("an instance that misses its health check's deadline leaves the rotation; its late answer still counts")
    func healthCheckTimeout() async throws {
        let gate = HostFixtures.Gate()
        let slow = HostFixtures.SlowHealth(gate: gate)
        var settings = configuration()
        settings.healthCheckTimeout = .seconds(2)
        let clock = TestClock()
        try await TestHost.with(services: [slow], configuration: settings, clock: clock) { test in
            let registry = test.host.registry
            let id = InstanceID(service: "slow", index: 0)
            #expect(registry.instances(of: "slow")[0].health.isServing)
            await slow.hangHealthChecks()
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await test.host.checkHealth() }
                await clock.waitForSleepers(count: 1)  // the check's timeout
                clock.advance(by: .seconds(2))
                await registry.waitForHealth(of: id) { !$0.isLive }
                let health = registry.instances(of: "slow")[0].health
                #expect(health.detail?.contains("no health report within") == true)
                #expect(registry.choose("slow") == nil)
                gate.open()
                await registry.waitForHealth(of: id) { $0.isServing }
                await group.waitForAll()
            }
            #expect(registry.choose("slow") == id)
        }
    }

    @Test("waiting for an instance's health returns at once when it already holds")
    func waitForHealthNow() async throws {
        try await TestHost.with(services: [Worker()], configuration: configuration()) { test in
            await test.host.registry.waitForHealth(of: InstanceID(service: "worker", index: 0)) { $0.isServing }
        }
    }

    @Test("stopped instances are reported dead")
    func stoppedInstancesAreDead() async throws {
        let host = ServiceHost(configuration: configuration(), clock: TestClock())
        try await host.register(Worker())
        try await host.start()
        #expect(host.registry.services == ["worker"])
        #expect(host.registry.choose("worker") == InstanceID(service: "worker", index: 0))
        await host.shutdown()
        #expect(host.registry.choose("worker") == nil)
        #expect(host.registry.instances(of: "worker").map(\.health.isLive) == [false])
        #expect(host.registry.instances(of: "nobody").isEmpty)
        #expect(host.registry.choose("nobody") == nil)
    }

    // MARK: The registry on its own

    @Test("the registry's rotation follows health reports exactly")
    func registryRotation() {
        let registry = ServiceRegistry(random: RandomSource(seed: 1))
        let ids = (0..<3).map { InstanceID(service: "svc", index: $0) }
        for id in ids { registry.add(id, strategy: .roundRobin) }
        #expect(registry.choose("svc") == nil, "instances start not ready")

        for id in ids { #expect(registry.setHealth(.healthy, for: id)) }
        #expect(!registry.setHealth(.healthy, for: ids[0]), "no change")
        #expect(!registry.setHealth(.healthy, for: InstanceID(service: "svc", index: 9)), "unknown instance")
        #expect((0..<6).compactMap { _ in registry.choose("svc")?.index } == [0, 1, 2, 0, 1, 2])

        #expect(registry.setHealth(.notReady("busy"), for: ids[0]))
        #expect(Set((0..<4).compactMap { _ in registry.choose("svc")?.index }) == [1, 2])
        #expect(registry.setHealth(.dead("gone"), for: ids[1]))
        #expect((0..<3).compactMap { _ in registry.choose("svc")?.index } == [2, 2, 2])
        #expect(registry.setHealth(.dead("gone"), for: ids[2]))
        #expect(registry.choose("svc") == nil)
    }

    @Test(
        "the choice without a lock is the choice under the lock, for every strategy and any health",
        arguments: [LoadBalancing.roundRobin, .random, .leastOutstanding]
    )
    func lockFreeChoiceMatchesLockedChoice(strategy: LoadBalancing) {
        // Two registries alike, from the same seed: one chooses under the pool's lock, the other
        // from the serving mask.
        func make() -> (ServiceRegistry, ServiceRegistry.Pool, [ServiceRegistry.Slot]) {
            let registry = ServiceRegistry(random: RandomSource(seed: 9))
            for index in 0..<5 { registry.add(InstanceID(service: "svc", index: index), strategy: strategy) }
            let pool = registry.pool(for: "svc")
            return (registry, pool, registry.slots(of: pool).0)
        }
        let (locked, lockedPool, lockedSlots) = make()
        let (free, freePool, freeSlots) = make()
        let healths: [[Bool]] = [
            [true, true, true, true, true], [false, true, true, false, true], [false, false, true, false, false],
            [false, false, false, false, false], [true, false, true, true, false],
        ]
        for (round, serving) in healths.enumerated() {
            for (index, isServing) in serving.enumerated() {
                let id = InstanceID(service: "svc", index: index)
                let report: HealthReport = isServing ? .healthy : .notReady("round \(round)")
                locked.setHealth(report, for: id)
                free.setHealth(report, for: id)
            }
            for call in 0..<12 {
                // Some load, the same on both sides, for least-outstanding to weigh.
                for slots in [lockedSlots, freeSlots] {
                    slots[(call * 3 + round) % 5].outstanding.wrappingAdd(call % 2, ordering: .relaxed)
                }
                let expected = locked.pick(from: lockedPool)?.id.index
                let chosen = free.pickIndex(from: freePool, slots: freeSlots, strategy: strategy)
                #expect(chosen == expected, "round \(round), call \(call)")
            }
        }
    }

    // MARK: Contention

    @Test("a thousand concurrent requests over three instances: all succeed, exact round-robin")
    func concurrentRequestsRoundRobin() async throws {
        let workers = [Worker(), Worker(), Worker()]
        try await TestHost.with(services: workers, configuration: configuration(.roundRobin)) { test in
            let replies = try await withThrowingTaskGroup(of: HostFixtures.WorkReply.self) { group in
                for value in 0..<1000 {
                    group.addTask { try await test.client.send(Work(value: value)) }
                }
                return try await group.reduce(into: [HostFixtures.WorkReply]()) { $0.append($1) }
            }
            #expect(replies.count == 1000)
            #expect(Set(replies.map(\.value)) == Set(0..<1000))
            let perInstance = Dictionary(grouping: replies, by: \.instance).mapValues(\.count)
            #expect(perInstance == [0: 334, 1: 333, 2: 333])
            var handled: [Int] = []
            for worker in workers { handled.append(await worker.handled) }
            #expect(handled == [334, 333, 333])
            #expect(test.host.registry.instances(of: "worker").map(\.outstanding) == [0, 0, 0])
            let dimensions = [("service", "worker"), ("request", "Work")]
            #expect(test.telemetry.counter("keel.requests", dimensions: dimensions) == 1000)
        }
    }

    @Test(
        "concurrent requests under least-outstanding and random all succeed and settle",
        arguments: [LoadBalancing.leastOutstanding, .random]
    )
    func concurrentRequestsSettle(strategy: LoadBalancing) async throws {
        let workers = [Worker(), Worker(), Worker()]
        try await TestHost.with(services: workers, configuration: configuration(strategy)) { test in
            let count = try await withThrowingTaskGroup(of: Int.self) { group in
                for value in 0..<600 {
                    group.addTask { try await test.client.send(Work(value: value)).value }
                }
                return try await group.reduce(0) { count, _ in count + 1 }
            }
            #expect(count == 600)
            var handled = 0
            for worker in workers { handled += await worker.handled }
            #expect(handled == 600)
            #expect(test.host.registry.instances(of: "worker").map(\.outstanding) == [0, 0, 0])
        }
    }
}
