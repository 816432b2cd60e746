import InMemoryLogging
import Keel
import KeelSwiftServer
import KeelTesting
import Logging
import ServiceLifecycle
import Synchronization
import Testing
import UnixSignals

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

private typealias Work = Fixtures.Work
private typealias Worker = Fixtures.Worker

/// A service that runs until the group shuts down or cancels it, and logs how it ended.
private struct Bystander: Service {
    let log: Fixtures.Log

    func run() async throws {
        do {
            try await gracefulShutdown()
            await self.log.append("bystander shut down")
        } catch {
            await self.log.append("bystander cancelled")
            throw error
        }
    }
}

@Suite("HostService in a ServiceGroup", .timeLimit(.minutes(1)))
struct HostServiceTests {
    @Test("graceful shutdown lets an in-flight request finish, refuses new ones, then stops the host")
    func gracefulShutdownDrainsInFlightWork() async throws {
        let clock = TestClock()
        let log = Fixtures.Log()
        let gate = Fixtures.Gate()
        let entered = Fixtures.Arrivals()
        let running = Fixtures.Arrivals()
        let host = Fixtures.makeHost(clock: clock)
        try await host.register(
            Worker(log: log) { request in
                guard request.value == 1 else { return }
                entered.arrive()
                try await gate.wait()
            }
        )
        let (logger, _) = Fixtures.makeLogger()
        let group = ServiceGroup(services: [HostService(host: host, onRunning: { running.arrive() })], logger: logger)

        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask {
                try await group.run()
                await log.append("group returned")
            }
            await running.wait(for: 1)
            tasks.addTask {
                let reply = try await host.client.send(Work(value: 1))
                await log.append("reply \(reply)")
            }
            await entered.wait(for: 1)

            await group.triggerGracefulShutdown()
            // The drain's timer is armed once the host has begun to drain.
            await clock.waitForSleepers(count: 1)
            #expect(await host.state == .stopping)
            let refused = await Fixtures.failure { try await host.client.send(Work(value: 2)) }
            #expect(refused?.code == .shuttingDown)
            #expect(await !log.entries.contains("stop worker"), "stopped before the in-flight request finished")

            gate.open()
            try await tasks.waitForAll()
        }

        #expect(await host.state == .stopped)
        let entries = await log.entries
        #expect(entries.contains("reply 1"))
        #expect(!entries.contains("handled 2"))
        let handled = try #require(entries.firstIndex(of: "handled 1"))
        let stopped = try #require(entries.firstIndex(of: "stop worker"))
        let returned = try #require(entries.firstIndex(of: "group returned"))
        #expect(handled < stopped)
        #expect(stopped < returned)
        #expect(host.registry.instances(of: "worker").map(\.health) == [.dead("stopped")])
        #expect(clock.sleeperCount == 0, "the drain timer outlived the shutdown")
    }

    @Test("a start failure ends the group with that error, and cancels the group's other services")
    func startFailureEndsTheGroup() async throws {
        let clock = TestClock()
        let log = Fixtures.Log()
        let running = Fixtures.Arrivals()
        let host = Fixtures.makeHost(clock: clock)
        try await host.register(Worker(log: log))
        try await host.register(Fixtures.Broken(log: log))
        let (logger, logs) = Fixtures.makeLogger()
        let group = ServiceGroup(
            services: [Bystander(log: log), HostService(host: host, onRunning: { running.arrive() })],
            logger: logger
        )

        let error = try await #require(throws: HostError.self) { try await group.run() }
        #expect(error.code == .startFailed)
        #expect(error.services == ["broken"])
        #expect(error.underlying as? Fixtures.Refusal == Fixtures.Refusal(reason: "no disk"))
        #expect(running.count == 0, "onRunning ran although the start failed")
        #expect(await host.state == .stopped)
        // The host rolled back what it started (the broken one too, with its level), and the
        // group cancelled the bystander.
        let entries = await log.entries
        #expect(Set(entries) == ["start worker", "stop broken", "stop worker", "bystander cancelled"])
        #expect(try #require(entries.firstIndex(of: "stop broken")) < #require(entries.firstIndex(of: "stop worker")))
        #expect(logs.entries.contains { $0.message == "Service threw error. Cancelling group." })
    }

    @Test("a drain that outlasts its timeout still ends: the host stops at the deadline on its clock")
    func drainPastTheDeadlineStillEnds() async throws {
        let clock = TestClock()
        let log = Fixtures.Log()
        let gate = Fixtures.Gate()
        let entered = Fixtures.Arrivals()
        let running = Fixtures.Arrivals()
        let ended = Fixtures.Arrivals()
        // The host would wait 30 s; the service's own drain timeout, 5 s, is the one that counts.
        let host = Fixtures.makeHost(clock: clock, shutdownTimeout: .seconds(30))
        try await host.register(
            Worker(log: log) { _ in
                entered.arrive()
                do {
                    try await gate.wait()
                } catch {
                    await log.append("handler cancelled")
                    throw error
                }
            }
        )
        let (logger, _) = Fixtures.makeLogger()
        let service = HostService(host: host, drainTimeout: .seconds(5), onRunning: { running.arrive() })
        #expect(service.drainTimeout == .seconds(5))
        let group = ServiceGroup(services: [service], logger: logger)

        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask {
                try await group.run()
                ended.arrive()
            }
            await running.wait(for: 1)
            tasks.addTask {
                let failure = await Fixtures.failure { try await host.client.send(Work(value: 1)) }
                await log.append("request \(failure.map { "\($0.code)" } ?? "succeeded")")
            }
            await entered.wait(for: 1)

            await group.triggerGracefulShutdown()
            await clock.waitForSleepers(count: 1)
            clock.advance(by: .seconds(5) - .nanoseconds(1))
            #expect(clock.sleeperCount == 1, "the drain gave up before its timeout")
            #expect(await !log.entries.contains("stop worker"))
            clock.advance(by: .nanoseconds(1))
            await ended.wait(for: 1)

            #expect(await host.state == .stopped)
            #expect(await log.entries == ["start worker", "stop worker"], "the stuck handler should still be running")
            // Clean up: the stuck caller is cancelled, and its handler sees it.
            tasks.cancelAll()
            try await tasks.waitForAll()
        }
        #expect(await log.entries == ["start worker", "stop worker", "handler cancelled", "request cancelled"])
    }

    @Test("cancelling the group shuts the host down gracefully")
    func cancellationShutsTheHostDown() async throws {
        let clock = TestClock()
        let log = Fixtures.Log()
        let running = Fixtures.Arrivals()
        let host = Fixtures.makeHost(clock: clock)
        try await host.register(Worker(log: log))
        let (logger, _) = Fixtures.makeLogger()
        let group = ServiceGroup(services: [HostService(host: host, onRunning: { running.arrive() })], logger: logger)

        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            await running.wait(for: 1)
            let reply = try await host.client.send(Work(value: 7))
            #expect(reply == 7)
            tasks.cancelAll()
            // The host service returns once the host has stopped, and the group with it.
            try await tasks.waitForAll()
        }
        #expect(await host.state == .stopped)
        #expect(await log.entries == ["start worker", "handled 7", "stop worker"])
    }

    /// A real signal, raised in this process. Safe beside other tests running in parallel: the
    /// signal is SIGUSR2, which nothing else in the test process traps or raises; the group traps
    /// it before it starts its services, so it is trapped before `onRunning` lets the test raise
    /// it; and it stays ignored after the group ends (swift-service-lifecycle leaves it at
    /// `SIG_IGN`), so a stray second delivery could not end the process either.
    @Test("a graceful-shutdown signal to the group stops the host")
    func signalStopsTheHost() async throws {
        let clock = TestClock()
        let log = Fixtures.Log()
        let running = Fixtures.Arrivals()
        let host = Fixtures.makeHost(clock: clock)
        try await host.register(Worker(log: log))
        let (logger, logs) = Fixtures.makeLogger()
        let group = ServiceGroup(
            services: [HostService(host: host, onRunning: { running.arrive() })],
            gracefulShutdownSignals: [.sigusr2],
            logger: logger
        )

        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            await running.wait(for: 1)
            #expect(kill(getpid(), SIGUSR2) == 0)
            try await tasks.waitForAll()
        }
        #expect(await host.state == .stopped)
        #expect(await log.entries == ["start worker", "stop worker"])
        #expect(logs.entries.contains { $0.message == "Signal caught. Shutting down the group." })
    }

    @Test("outside a group, cancellation ends the service, and Keel touches neither SIGINT nor SIGTERM")
    func installsNoSignalHandlers() async throws {
        let before = [signalHandler(SIGINT), signalHandler(SIGTERM)]
        let during = Mutex<[Int]>([])
        let log = Fixtures.Log()
        let running = Fixtures.Arrivals()
        let host = Fixtures.makeHost(clock: TestClock())
        try await host.register(Worker(log: log))
        let service = HostService(host: host) {
            // Keel's own `ServiceHost.run()` sets both to SIG_IGN while it waits for them.
            during.withLock { $0 = [signalHandler(SIGINT), signalHandler(SIGTERM)] }
            running.arrive()
        }

        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await service.run() }
            await running.wait(for: 1)
            let reply = try await host.client.send(Work(value: 3))
            #expect(reply == 3)
            tasks.cancelAll()
            try await tasks.waitForAll()
        }
        #expect(during.withLock { $0 } == before)
        #expect(await host.state == .stopped)
        #expect(await log.entries == ["start worker", "handled 3", "stop worker"])
    }

    @Test("a host that already ran cannot run again: the service fails with invalidState")
    func stoppedHostIsRefused() async throws {
        let host = Fixtures.makeHost(clock: TestClock())
        try await host.start()
        await host.shutdown()
        let (logger, _) = Fixtures.makeLogger()
        let group = ServiceGroup(services: [HostService(host: host)], logger: logger)
        let error = try await #require(throws: HostError.self) { try await group.run() }
        #expect(error.code == .invalidState)
    }
}

/// The address of the process's handler for `signal` (`SIG_DFL` is 0, `SIG_IGN` 1), read without
/// changing it.
private func signalHandler(_ signal: Int32) -> Int {
    var action = sigaction()
    guard sigaction(signal, nil, &action) == 0 else { return -1 }
    #if canImport(Darwin)
    let handler = action.__sigaction_u.__sa_handler
    #else
    let handler = action.__sigaction_handler.sa_handler
    #endif
    return handler.map { unsafeBitCast($0, to: Int.self) } ?? 0
}
