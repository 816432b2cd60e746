import Keel
import KeelCore
import KeelTesting
import Testing

private typealias Work = HostFixtures.Work
private typealias Worker = HostFixtures.Worker
private typealias Front = HostFixtures.Front
private typealias Loner = HostFixtures.Loner

@Suite("Request channels", .timeLimit(.minutes(2)))
struct RequestChannelTests {
    // MARK: Delivery and typed errors

    @Test("a request returns its handler's typed response")
    func typedResponse() async throws {
        let worker = Worker()
        try await TestHost.with(worker) { test in
            let reply: HostFixtures.WorkReply = try await test.client.send(Work(value: 42))
            #expect(reply == HostFixtures.WorkReply(instance: 0, value: 42))
            #expect(await worker.handled == 1)
        }
    }

    @Test("a request type no service handles fails with noHandler")
    func noHandler() async throws {
        try await TestHost.with(Worker()) { test in
            let error = try #require(await HostFixtures.failure { try await test.client.send(HostFixtures.Unrouted()) })
            #expect(error.code == .noHandler)
            #expect(error.request == "Unrouted")
            #expect(error.service == nil)
        }
    }

    @Test("a service with no serving instance fails with noHealthyInstance")
    func noHealthyInstance() async throws {
        let workers = [Worker(health: .notReady("warming up")), Worker(health: .dead("crashed"))]
        try await TestHost.with(services: workers) { test in
            let error = try #require(await HostFixtures.failure { try await test.client.send(Work(value: 1)) })
            #expect(error.code == .noHealthyInstance)
            #expect(error.service == "worker")
            #expect(test.host.registry.choose("worker") == nil)
            for worker in workers {
                #expect(await worker.handled == 0)
            }
        }
    }

    @Test("a handler's error reaches the caller as handlerFailed with the error as cause")
    func handlerFailed() async throws {
        let worker = Worker { request in
            throw HostFixtures.WorkFailure(reason: "value \(request.value) refused")
        }
        try await TestHost.with(worker) { test in
            let error = try #require(await HostFixtures.failure { try await test.client.send(Work(value: 9)) })
            #expect(error.code == .handlerFailed)
            #expect(error.service == "worker")
            #expect(error.request == "Work")
            #expect(
                error.underlying as? HostFixtures.WorkFailure == HostFixtures.WorkFailure(reason: "value 9 refused")
            )
            #expect(error.description.contains("value 9 refused"))
        }
    }

    // MARK: Dependencies

    @Test("a service reaches the services it declared")
    func declaredDependencyIsReachable() async throws {
        let worker = Worker()
        try await TestHost.with(HostFixtures.Caller<Front>(), worker) { test in
            let reply = try await test.client.send(HostFixtures.Relay<Front>(value: 5))
            #expect(reply.value == 5)
            #expect(await worker.handled == 1)
        }
    }

    @Test("a service calling a service it did not declare is refused with undeclaredDependency")
    func undeclaredDependencyIsRefused() async throws {
        let worker = Worker()
        try await TestHost.with(HostFixtures.Caller<Loner>(), worker) { test in
            let error = try #require(
                await HostFixtures.failure { try await test.client.send(HostFixtures.Relay<Loner>(value: 5)) }
            )
            // The loner's handler threw what its own call threw.
            #expect(error.code == .handlerFailed)
            #expect(error.service == "loner")
            let refusal = try #require(error.underlying as? RequestError)
            #expect(refusal.code == .undeclaredDependency)
            #expect(refusal.service == "worker")
            #expect(refusal.message.contains("loner") && refusal.message.contains("worker"))
            #expect(await worker.handled == 0)
        }
    }

    // MARK: Deadlines

    @Test("a deadline that passes while the handler waits fails the call and cancels the handler")
    func deadlineExpires() async throws {
        let clock = TestClock()
        let entered = HostFixtures.Arrivals()
        let observed = HostFixtures.Values<String>()
        let gate = HostFixtures.Gate()
        let worker = Worker { _ in
            entered.arrive()
            do {
                try await gate.wait()
            } catch {
                observed.append(error is CancellationError ? "cancelled" : "other")
                throw error
            }
        }
        try await TestHost.with(worker, clock: clock) { test in
            let deadline = Deadline.after(.seconds(2), on: clock)
            try await withThrowingTaskGroup(of: RequestError?.self) { group in
                group.addTask {
                    await HostFixtures.failure { try await test.client.send(Work(value: 1), deadline: deadline) }
                }
                await entered.wait(for: 1)
                await clock.waitForSleepers(count: 1)  // the deadline's timer

                clock.advance(by: .milliseconds(1999))
                #expect(clock.sleeperCount == 1, "the deadline fired early")
                #expect(observed.all.isEmpty)

                clock.advance(by: .milliseconds(1))
                let error = try #require(try await group.next() ?? nil)
                #expect(error.code == .deadlineExceeded)
                #expect(error.service == "worker")
            }
            // The call returned only after its handler was done.
            #expect(observed.all == ["cancelled"])
            #expect(await worker.handled == 0)
        }
    }

    @Test("a handler sleeping on the host's clock is woken by cancellation when the deadline passes")
    func deadlineCancelsClockSleep() async throws {
        let clock = TestClock()
        let observed = HostFixtures.Values<String>()
        let worker = Worker { _ in
            do {
                try await clock.sleep(for: .seconds(60))
            } catch {
                observed.append(error is CancellationError ? "cancelled" : "other")
                throw error
            }
        }
        try await TestHost.with(worker, clock: clock) { test in
            try await withThrowingTaskGroup(of: RequestError?.self) { group in
                group.addTask {
                    await HostFixtures.failure { try await test.client.send(Work(value: 1), timeout: .seconds(5)) }
                }
                // The deadline's timer and the handler's own sleep.
                await clock.waitForSleepers(count: 2)
                clock.advance(by: .seconds(5))
                let error = try #require(try await group.next() ?? nil)
                #expect(error.code == .deadlineExceeded)
            }
            #expect(observed.all == ["cancelled"])
            #expect(clock.sleeperCount == 0)
        }
    }

    @Test("a deadline that has already passed fails fast without calling the handler")
    func passedDeadlineFailsFast() async throws {
        let clock = TestClock()
        let worker = Worker()
        try await TestHost.with(worker, clock: clock) { test in
            let deadline = Deadline.after(.seconds(1), on: clock)
            clock.advance(by: .seconds(3))
            let error = try #require(
                await HostFixtures.failure { try await test.client.send(Work(value: 1), deadline: deadline) }
            )
            #expect(error.code == .deadlineExceeded)

            let now = try #require(
                await HostFixtures.failure { try await test.client.send(Work(value: 2), timeout: .zero) }
            )
            #expect(now.code == .deadlineExceeded)
            #expect(await worker.handled == 0)
            #expect(clock.sleeperCount == 0)
        }
    }

    @Test("a call that finishes before its deadline succeeds and leaves no timer behind")
    func callWithinDeadline() async throws {
        let clock = TestClock()
        try await TestHost.with(Worker(), clock: clock) { test in
            let reply = try await test.client.send(Work(value: 3), timeout: .seconds(1))
            #expect(reply.value == 3)
            #expect(clock.sleeperCount == 0)
        }
    }

    @Test("a handler and its nested requests inherit the caller's deadline")
    func deadlineIsInherited() async throws {
        let clock = TestClock()
        let relayDeadlines = HostFixtures.Values<TestClock.Instant?>()
        let workDeadlines = HostFixtures.Values<TestClock.Instant?>()
        let caller = HostFixtures.Caller<Front> {
            relayDeadlines.append(TraceContext.current?.deadline?.instant(on: clock))
        }
        let worker = Worker { _ in
            workDeadlines.append(TraceContext.current?.deadline?.instant(on: clock))
        }
        try await TestHost.with(caller, worker, clock: clock) { test in
            let deadline = Deadline.after(.seconds(10), on: clock)
            let expected = clock.now.advanced(by: .seconds(10))

            // Inherited as is.
            _ = try await test.client.send(HostFixtures.Relay<Front>(value: 1), deadline: deadline)
            // A later deadline of the nested call does not extend the inherited one.
            _ = try await test.client.send(
                HostFixtures.Relay<Front>(value: 2, nestedTimeout: .seconds(60)),
                deadline: deadline
            )
            // An earlier one shortens it.
            _ = try await test.client.send(
                HostFixtures.Relay<Front>(value: 3, nestedTimeout: .seconds(1)),
                deadline: deadline
            )
            // Without a deadline there is nothing to inherit.
            _ = try await test.client.send(HostFixtures.Relay<Front>(value: 4))

            #expect(relayDeadlines.all == [expected, expected, expected, nil])
            #expect(workDeadlines.all == [expected, expected, clock.now.advanced(by: .seconds(1)), nil])
        }
    }

    @Test("a nested call fails with deadlineExceeded when the inherited deadline passes")
    func inheritedDeadlineExpires() async throws {
        let clock = TestClock()
        let entered = HostFixtures.Arrivals()
        let worker = Worker { _ in
            entered.arrive()
            try await HostFixtures.Gate().wait()
        }
        try await TestHost.with(HostFixtures.Caller<Front>(), worker, clock: clock) { test in
            try await withThrowingTaskGroup(of: RequestError?.self) { group in
                group.addTask {
                    await HostFixtures.failure {
                        try await test.client.send(HostFixtures.Relay<Front>(value: 1), timeout: .seconds(3))
                    }
                }
                await entered.wait(for: 1)
                // The relay's timer and the nested call's timer, both at the same deadline.
                await clock.waitForSleepers(count: 2)
                clock.advance(by: .seconds(3))
                let error = try #require(try await group.next() ?? nil)
                #expect(error.code == .deadlineExceeded)
                #expect(error.service == "front")
            }
        }
    }

    // MARK: Cancellation

    @Test("cancelling the caller cancels the handler", arguments: [false, true])
    func callerCancellationReachesHandler(withDeadline: Bool) async throws {
        let clock = TestClock()
        let entered = HostFixtures.Arrivals()
        let observed = HostFixtures.Values<String>()
        let worker = Worker { _ in
            entered.arrive()
            do {
                try await HostFixtures.Gate().wait()
            } catch {
                observed.append(error is CancellationError ? "cancelled" : "other")
                throw error
            }
        }
        try await TestHost.with(worker, clock: clock) { test in
            let deadline = withDeadline ? Deadline.after(.seconds(60), on: clock) : nil
            await withTaskGroup(of: RequestError?.self) { group in
                group.addTask {
                    await HostFixtures.failure { try await test.client.send(Work(value: 1), deadline: deadline) }
                }
                await entered.wait(for: 1)
                group.cancelAll()
                let error = await group.next() ?? nil
                #expect(error?.code == .cancelled)
            }
            #expect(observed.all == ["cancelled"])
            #expect(clock.now == TestClock.Instant(offset: .zero))
        }
    }

    @Test("a caller already cancelled does not reach the handler")
    func alreadyCancelledCaller() async throws {
        let worker = Worker()
        try await TestHost.with(worker) { test in
            await withTaskGroup(of: RequestError?.self) { group in
                group.cancelAll()
                group.addTask {
                    await HostFixtures.failure { try await test.client.send(Work(value: 1)) }
                }
                let error = await group.next() ?? nil
                #expect(error?.code == .cancelled)
            }
            #expect(await worker.handled == 0)
        }
    }

    // MARK: Route policies

    @Test("a route policy runs once per call and sees the route")
    func policyRunsPerCall() async throws {
        let policy = HostFixtures.ProbePolicy()
        try await TestHost.with(HostFixtures.Caller<Front>(), Worker()) { test in
            await test.host.setPolicy(policy, for: Work.self)
            _ = try await test.client.send(Work(value: 1))
            _ = try await test.client.send(HostFixtures.Relay<Front>(value: 2))
            #expect(
                policy.routes == [
                    RouteDescriptor(request: "Work", service: "worker", caller: nil),
                    RouteDescriptor(request: "Work", service: "worker", caller: "front"),
                ]
            )
            #expect(policy.routes.map(\.description) == ["external → worker.Work", "front → worker.Work"])
            #expect(policy.failures.isEmpty)
        }
    }

    struct Archive: ServiceRequest {
        typealias Response = Done
        var id: Int
    }

    struct Forget: ServiceRequest {
        typealias Response = Done
        var id: Int
    }

    struct Refused: Error {}

    actor Archivist: ServiceActor {
        static let name: ServiceName = "archivist"
        private(set) var archived: [Int] = []
        private(set) var forgotten: [String] = []

        nonisolated func registerHandlers(_ handlers: inout RequestHandlers<Archivist>) {
            handlers.on(Archive.self) { service, request in
                service.archived.append(request.id)
            }
            handlers.on(Forget.self) { service, request, environment in
                guard request.id >= 0 else { throw Refused() }
                service.forgotten.append("\(environment.name)/\(request.id)")
            }
        }
    }

    @Test("a request can answer only done: its handler returns nothing, the caller gets Done once it has run")
    func doneResponses() async throws {
        let archivist = Archivist()
        try await TestHost.with(archivist) { test in
            let done: Done = try await test.client.send(Archive(id: 7))
            #expect(done == Done())
            #expect(await archivist.archived == [7])
            _ = try await test.client.send(Forget(id: 3))
            #expect(await archivist.forgotten == ["archivist/3"])
            let error = try #require(await HostFixtures.failure { try await test.client.send(Forget(id: -1)) })
            #expect(error.code == .handlerFailed)
            #expect(error.underlying is Refused)
        }
    }

    @Test(
        "a deadline made on another kind of clock than the host's fails the call as invalidDeadline, without running it"
    )
    func deadlineOnAnotherClock() async throws {
        let worker = Worker()
        try await TestHost.with(worker, clock: TestClock()) { test in
            let foreign = Deadline.after(.seconds(5), on: ContinuousClock())
            let error = try #require(
                await HostFixtures.failure { try await test.client.send(Work(value: 1), deadline: foreign) }
            )
            #expect(error.code == .invalidDeadline)
            #expect(error.service == "worker")
            #expect(await worker.handled == 0)
            // A deadline on the host's own clock runs.
            _ = try await test.client.send(Work(value: 2), deadline: .after(.seconds(5), on: test.clock))
            #expect(await worker.handled == 1)
        }
    }

    @Test("a policy's refusal reaches the caller as rejected, without calling the handler")
    func policyRejects() async throws {
        let rejection = HostFixtures.ProbePolicy.Rejection(reason: "circuit open")
        let policy = HostFixtures.ProbePolicy(rejecting: rejection)
        let worker = Worker()
        try await TestHost.with(worker) { test in
            await test.host.setPolicy(policy, for: Work.self)
            let error = try #require(await HostFixtures.failure { try await test.client.send(Work(value: 1)) })
            #expect(error.code == .rejected)
            #expect(error.service == "worker")
            #expect(error.underlying as? HostFixtures.ProbePolicy.Rejection == rejection)
            #expect(policy.routes.count == 1)
            #expect(await worker.handled == 0)
        }
    }

    @Test("a policy sees a handler's failure as handlerFailed with the cause")
    func policySeesHandlerFailure() async throws {
        let policy = HostFixtures.ProbePolicy()
        let worker = Worker { _ in throw HostFixtures.WorkFailure(reason: "boom") }
        try await TestHost.with(worker) { test in
            await test.host.setPolicy(policy, for: Work.self)
            let error = try #require(await HostFixtures.failure { try await test.client.send(Work(value: 1)) })
            #expect(error.code == .handlerFailed)

            let seen = try #require(policy.failures.first as? RequestError)
            #expect(policy.failures.count == 1)
            #expect(seen.code == .handlerFailed)
            #expect(seen.underlying as? HostFixtures.WorkFailure == HostFixtures.WorkFailure(reason: "boom"))
        }
    }

    @Test("a route's own policy takes precedence over its service's")
    func routePolicyOverridesServicePolicy() async throws {
        let servicePolicy = HostFixtures.ProbePolicy()
        let routePolicy = HostFixtures.ProbePolicy()
        let host = ServiceHost(configuration: TestHost.defaultConfiguration, clock: TestClock())
        // Set before registration, the routes pick the policies up when they are made; set after,
        // the service's policy leaves the route that has its own alone.
        await host.setPolicy(servicePolicy, forService: "worker")
        await host.setPolicy(routePolicy, for: HostFixtures.Relay<Front>.self)
        try await host.register(Worker())
        try await host.register(HostFixtures.Caller<Front>())
        await host.setPolicy(servicePolicy, forService: "front")
        try await host.start()

        _ = try await host.client.send(Work(value: 1))
        _ = try await host.client.send(HostFixtures.Relay<Front>(value: 2))
        await host.shutdown()

        #expect(servicePolicy.routes.map(\.description) == ["external → worker.Work", "front → worker.Work"])
        #expect(routePolicy.routes.map(\.description) == ["external → front.Relay<Front>"])
    }
}
