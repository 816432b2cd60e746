import Keel
import KeelCore
import KeelTesting
import Synchronization
import Testing

private typealias Work = HostFixtures.Work
private typealias Worker = HostFixtures.Worker
private typealias Front = HostFixtures.Front
private typealias Relay = HostFixtures.Relay<HostFixtures.Front>

/// Sends `count` requests one after another; returns the instance that handled each.
private func instances(handling count: Int, through client: RequestClient) async throws -> [Int] {
    var result: [Int] = []
    for value in 0..<count {
        result.append(try await client.send(Work(value: value)).instance)
    }
    return result
}

/// Sends `count` relays through the front service (its own client); returns the worker instance
/// that handled each.
private func instances(relaying count: Int, through client: RequestClient) async throws -> [Int] {
    var result: [Int] = []
    for value in 0..<count {
        result.append(try await client.send(Relay(value: value)).instance)
    }
    return result
}

/// A host with the default telemetry (`NoOpTelemetry`: no spans), as in production.
private func makeHost(clock: TestClock = TestClock()) -> ServiceHost {
    ServiceHost(configuration: TestHost.defaultConfiguration, clock: clock, random: RandomSource(seed: 11))
}

/// A request that a ``Holder`` handles by waiting at its gate, then sending ``HostFixtures/Work``
/// on and publishing ``HostFixtures/Announced``.
private struct Hold: ServiceRequest {
    typealias Response = HostFixtures.WorkReply
}

/// Depends on the worker; its handler waits at a gate before it does any nested work.
private actor Holder: ServiceActor {
    static let name: ServiceName = "holder"
    static let dependencies: [ServiceName] = ["worker"]

    private let gate: HostFixtures.Gate
    private let entered: HostFixtures.Arrivals
    private let seen: HostFixtures.Values<TraceContext?>
    private var environment: ServiceEnvironment?

    init(gate: HostFixtures.Gate, entered: HostFixtures.Arrivals, seen: HostFixtures.Values<TraceContext?>) {
        self.gate = gate
        self.entered = entered
        self.seen = seen
    }

    func start(_ environment: ServiceEnvironment) async throws {
        self.environment = environment
    }

    nonisolated func registerHandlers(_ handlers: inout RequestHandlers<Holder>) {
        handlers.on(Hold.self) { holder, _ in
            holder.seen.append(TraceContext.current)
            holder.entered.arrive()
            try await holder.gate.wait()
            guard let environment = holder.environment else { throw HostFixtures.Refusal(reason: "not started") }
            _ = try await environment.publish(HostFixtures.Announced(note: "held"))
            return try await environment.send(Work(value: 5))
        }
    }
}

/// Depends on the worker and calls it from its `start`, before the host runs.
private actor EarlyCaller: ServiceActor {
    static let name: ServiceName = "early"
    static let dependencies: [ServiceName] = ["worker"]

    private(set) var reply: HostFixtures.WorkReply?

    func start(_ environment: ServiceEnvironment) async throws {
        self.reply = try await environment.send(Work(value: 9))
    }
}

@Suite("Request fast path: routes resolved once per client, trace context, spans", .timeLimit(.minutes(2)))
struct RequestFastPathTests {
    // MARK: Routes cached per client

    @Test("a route a client has resolved stops reaching an instance that leaves the rotation, and reaches it again")
    func cachedRouteFollowsHealth() async throws {
        let workers = [Worker(), Worker()]
        try await TestHost.with(
            HostFixtures.Caller<Front>(),
            register: { host in
                for worker in workers { try await host.register(worker) }
            }
        ) { test in
            // Both clients resolve the route: the host's, and the front service's own.
            let warm = try await instances(handling: 4, through: test.client)
            let warmRelayed = try await instances(relaying: 2, through: test.client)
            #expect(warm == [0, 1, 0, 1])
            #expect(warmRelayed == [0, 1])

            let first = InstanceID(service: "worker", index: 0)
            test.host.registry.setHealth(.dead("crashed"), for: first)
            let without = try await instances(handling: 3, through: test.client)
            let withoutRelayed = try await instances(relaying: 3, through: test.client)
            #expect(without == [1, 1, 1])
            #expect(withoutRelayed == [1, 1, 1])

            test.host.registry.setHealth(.healthy, for: first)
            let back = try await instances(handling: 4, through: test.client)
            let backRelayed = try await instances(relaying: 4, through: test.client)
            #expect(Set(back) == [0, 1])
            #expect(Set(backRelayed) == [0, 1])

            for index in workers.indices {
                test.host.registry.setHealth(.notReady("busy"), for: InstanceID(service: "worker", index: index))
            }
            let error = await HostFixtures.failure { try await test.client.send(Work(value: 1)) }
            #expect(error?.code == .noHealthyInstance)
        }
        #expect(await workers[0].handled + workers[1].handled == 20)
    }

    @Test("once the host has stopped, a resolved route reaches no stopped instance, even for nested work")
    func cachedRouteNeverReachesAStoppedInstance() async throws {
        let host = makeHost()
        let log = HostFixtures.Log()
        let worker = Worker(log: log)
        try await host.register(worker)
        try await host.start()
        _ = try await host.client.send(Work(value: 1))
        await host.shutdown()

        let refused = await HostFixtures.failure { try await host.client.send(Work(value: 2)) }
        #expect(refused?.code == .shuttingDown)
        // Work started inside a handler passes the drain; the route must still find no instance.
        var inside = TraceContext.makeRoot(using: RandomSource(seed: 3))
        inside.isInHandler = true
        let nested = await HostFixtures.failure {
            try await TraceContext.$current.withValue(inside) { try await host.client.send(Work(value: 3)) }
        }
        #expect(nested?.code == .noHealthyInstance)
        #expect(await worker.handled == 1)
        #expect(await log.entries == ["handled 1", "stop worker#0"])
    }

    @Test("a policy set while the host runs applies to the next call of a resolved route")
    func policySetAtRuntimeReachesResolvedRoutes() async throws {
        try await TestHost.with(HostFixtures.Caller<Front>(), Worker()) { test in
            _ = try await test.client.send(Work(value: 1))
            _ = try await test.client.send(Relay(value: 1))

            let servicePolicy = HostFixtures.ProbePolicy()
            await test.host.setPolicy(servicePolicy, forService: "worker")
            _ = try await test.client.send(Work(value: 2))
            _ = try await test.client.send(Relay(value: 2))
            #expect(servicePolicy.routes.map(\.caller) == [nil, "front"])

            let routePolicy = HostFixtures.ProbePolicy()
            await test.host.setPolicy(routePolicy, for: Work.self)
            _ = try await test.client.send(Work(value: 3))
            _ = try await test.client.send(Relay(value: 3))
            #expect(routePolicy.routes.map(\.caller) == [nil, "front"])
            #expect(servicePolicy.routes.count == 2, "the route's own policy takes over")

            // A service's policy set later leaves a route with its own policy alone.
            let laterPolicy = HostFixtures.ProbePolicy()
            await test.host.setPolicy(laterPolicy, forService: "worker")
            _ = try await test.client.send(Work(value: 4))
            #expect(routePolicy.routes.count == 3)
            #expect(laterPolicy.routes.isEmpty)

            let rejecting = HostFixtures.ProbePolicy(rejecting: .init(reason: "closed"))
            await test.host.setPolicy(rejecting, for: Work.self)
            let error = await HostFixtures.failure { try await test.client.send(Relay(value: 5)) }
            #expect(error?.code == .handlerFailed, "the relay's handler failed on its nested call")
            #expect((error?.underlying as? RequestError)?.code == .rejected)
        }
    }

    @Test("a policy set while many calls are under way: every call completes; every call begun after runs inside it")
    func policySetUnderContention() async throws {
        try await TestHost.with(services: [Worker(), Worker(), Worker()]) { test in
            let policy = HostFixtures.ProbePolicy()
            let replies = try await withThrowingTaskGroup(of: Int.self) { group in
                for value in 0..<400 {
                    group.addTask { try await test.client.send(Work(value: value)).value }
                    if value == 200 {
                        group.addTask {
                            await test.host.setPolicy(policy, for: Work.self)
                            return -1
                        }
                    }
                }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            #expect(replies.filter { $0 >= 0 }.sorted() == Array(0..<400))
            let during = policy.routes.count
            for value in 0..<10 { _ = try await test.client.send(Work(value: value)) }
            #expect(policy.routes.count == during + 10)
            #expect(test.host.registry.instances(of: "worker").map(\.outstanding) == [0, 0, 0])
        }
    }

    @Test("before the host runs, calls find their routes too: a service's start calls a service it depends on")
    func callsBeforeTheHostRuns() async throws {
        let host = makeHost()
        let early = EarlyCaller()
        // Registered by a factory: its handlers join the routes while the host starts.
        try await host.register(Worker.self) { _ in Worker() }
        try await host.register(early)
        let before = await HostFixtures.failure { try await host.client.send(Work(value: 1)) }
        #expect(before?.code == .noHandler, "a factory's handlers join the routes when it has made its instance")
        try await host.start()
        #expect(await early.reply == HostFixtures.WorkReply(instance: 0, value: 9))
        let reply = try await host.client.send(Work(value: 2))
        #expect(reply == HostFixtures.WorkReply(instance: 0, value: 2))
        await host.shutdown()
    }

    @Test("a service with more than 64 instances is still served round-robin, under its pool's lock")
    func moreThan64Instances() async throws {
        let workers = (0..<65).map { _ in Worker() }
        try await TestHost.with(services: workers) { test in
            let chosen = try await instances(handling: 67, through: test.client)
            #expect(chosen == Array(0..<65) + [0, 1])
            test.host.registry.setHealth(.dead("crashed"), for: InstanceID(service: "worker", index: 64))
            test.host.registry.setHealth(.dead("crashed"), for: InstanceID(service: "worker", index: 2))
            let after = try await instances(handling: 64, through: test.client)
            #expect(!after.contains(64) && !after.contains(2))
            #expect(Set(after).count == 63)
        }
    }

    // MARK: Trace context without span recording

    @Test("with the no-op telemetry, a handler still runs in a context of its own, a child of its caller's")
    func handlersSeeTheirContextWithoutSpans() async throws {
        let seen = HostFixtures.Values<TraceContext?>()
        let relayed = HostFixtures.Values<TraceContext?>()
        let host = makeHost()
        try await host.register(HostFixtures.Caller<Front> { relayed.append(TraceContext.current) })
        try await host.register(Worker { _ in seen.append(TraceContext.current) })
        try await host.start()

        // A caller with no context: the handler starts a trace.
        _ = try await host.client.send(Work(value: 1))
        let fresh = try #require(seen.all.last ?? nil)
        #expect(fresh.parentSpanID == nil)
        #expect(fresh.isInHandler)

        // A traced caller: the handler joins its trace, with its correlation id.
        let root = TraceContext.makeRoot(using: RandomSource(seed: 99), correlationID: "order-7")
        _ = try await TraceContext.$current.withValue(root) { try await host.client.send(Work(value: 2)) }
        let joined = try #require(seen.all.last ?? nil)
        #expect(joined.traceID == root.traceID)
        #expect(joined.parentSpanID == root.spanID)
        #expect(joined.correlationID == "order-7")
        #expect(joined.spanID != root.spanID)

        // A nested request: the worker's context is a child of the relay's.
        _ = try await host.client.send(Relay(value: 3))
        let outer = try #require(relayed.all.last ?? nil)
        let inner = try #require(seen.all.last ?? nil)
        #expect(inner.traceID == outer.traceID)
        #expect(inner.parentSpanID == outer.spanID)
        #expect(inner.correlationID == outer.correlationID)
        await host.shutdown()
    }

    @Test("with the no-op telemetry, a handler of a call from outside may still send and publish once the host drains")
    func inFlightHandlersKeepTheirContextWhileDraining() async throws {
        let clock = TestClock()
        let gate = HostFixtures.Gate()
        let entered = HostFixtures.Arrivals()
        let seen = HostFixtures.Values<TraceContext?>()
        let host = makeHost(clock: clock)
        try await host.register(Worker())
        try await host.register(Holder(gate: gate, entered: entered, seen: seen))
        try await host.start()

        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                // No context bound here: the call comes from outside any trace.
                let reply = try await host.client.send(Hold())
                #expect(reply.value == 5)
            }
            await entered.wait(for: 1)
            group.addTask { await host.shutdown() }
            // The drain waits on the clock: it has begun and refuses work from outside.
            await clock.waitForSleepers(count: 1)
            let refused = await HostFixtures.failure { try await host.client.send(Work(value: 6)) }
            #expect(refused?.code == .shuttingDown)
            // The held handler now publishes and sends on: both are its work, still accepted.
            gate.open()
            try await group.waitForAll()
        }
        #expect(seen.all.first??.isInHandler == true)
        #expect(await host.state == .stopped)
    }

    // MARK: Spans

    @Test("a telemetry that records no spans is asked for none; request metrics are still recorded")
    func noSpansWhenNoneAreRecorded() async throws {
        let telemetry = SpanCountingTelemetry(recordsSpans: false)
        let host = ServiceHost(
            configuration: TestHost.defaultConfiguration,
            clock: TestClock(),
            telemetry: telemetry,
            random: RandomSource(seed: 5)
        )
        try await host.register(HostFixtures.Caller<Front>())
        try await host.register(Worker())
        try await host.start()
        _ = try await host.client.send(Work(value: 1))
        _ = try await host.client.send(Relay(value: 2))
        let failed = await HostFixtures.failure { try await host.client.send(HostFixtures.Unrouted()) }
        #expect(failed?.code == .noHandler)
        await host.shutdown()

        #expect(telemetry.spansStarted == 0)
        #expect(telemetry.recorder.spans.isEmpty)
        let work = [("service", "worker"), ("request", "Work")]
        #expect(telemetry.recorder.counter("keel.requests", dimensions: work) == 2)
        #expect(telemetry.recorder.timer("keel.requests.duration", dimensions: work).count == 2)
    }

    @Test("a telemetry that records spans gets one per request, nested ones included")
    func spansWhenRecorded() async throws {
        let telemetry = SpanCountingTelemetry(recordsSpans: true)
        let host = ServiceHost(
            configuration: TestHost.defaultConfiguration,
            clock: TestClock(),
            telemetry: telemetry,
            random: RandomSource(seed: 5)
        )
        try await host.register(HostFixtures.Caller<Front>())
        try await host.register(Worker())
        try await host.start()
        _ = try await host.client.send(Work(value: 1))
        _ = try await host.client.send(Relay(value: 2))
        await host.shutdown()

        #expect(telemetry.spansStarted == 3)
        let spans = telemetry.recorder.spans
        #expect(spans.map(\.name).sorted() == ["front.Relay<Front>", "worker.Work", "worker.Work"])
        #expect(spans.allSatisfy { $0.end != nil && $0.kind == .server })
        let relay = try #require(spans.first { $0.name == "front.Relay<Front>" })
        #expect(spans.contains { $0.name == "worker.Work" && $0.context.parentSpanID == relay.context.spanID })
    }
}
