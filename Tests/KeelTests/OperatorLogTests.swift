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

/// A service that logs through its environment's logger while it handles a request.
private actor Greeter: ServiceActor {
    static let name: ServiceName = "greeter"

    struct Greet: ServiceRequest {
        typealias Response = String
        var who: String
    }

    private var environment: ServiceEnvironment?

    func start(_ environment: ServiceEnvironment) async throws {
        self.environment = environment
    }

    nonisolated func registerHandlers(_ handlers: inout RequestHandlers<Greeter>) {
        handlers.on(Greet.self) { greeter, request in
            // `service` is the logger's own key: the value given here loses.
            greeter.environment?.logger.info(
                "greeting \(request.who)",
                metadata: ["who": request.who, "service": "spoofed"]
            )
            greeter.environment?.logger.debug("details")
            return "hello \(request.who)"
        }
    }
}

/// What Keel logs for an operator: starts, stops and why, rollbacks, drains, dead letters, and
/// what a service logs through its own logger.
@Suite("Operator logs", .timeLimit(.minutes(2)))
struct OperatorLogTests {
    private func makeHost(_ recorder: InMemoryRecorder, clock: TestClock = TestClock()) -> ServiceHost {
        ServiceHost(
            configuration: TestHost.defaultConfiguration,
            clock: clock,
            telemetry: recorder,
            random: RandomSource(seed: 11)
        )
    }

    @Test("a host logs each instance it starts and stops, and why it stops")
    func startsAndStops() async throws {
        let recorder = InMemoryRecorder()
        let log = HostFixtures.Log()
        let host = self.makeHost(recorder)
        try await host.register(Node<Database>(log: log))
        try await host.register(Node<Cache>(log: log))
        try await host.start()
        await host.shutdown()

        let records = recorder.logs(from: "keel.host")
        let started = records.filter { $0.message.hasPrefix("started") }
        #expect(Set(started.map(\.message)) == ["started database#0", "started cache#0"])
        #expect(started.allSatisfy { $0.level == .info })
        #expect(Set(started.compactMap { $0.metadata["instance"] }) == ["database#0", "cache#0"])

        let draining = try #require(records.first { $0.message.hasPrefix("shutting down") })
        #expect(draining.level == .notice)
        // Stopped in reverse start order: the cache depends on the database.
        let stopped = records.filter { $0.message.hasPrefix("stopped") }
        #expect(stopped.map(\.message) == ["stopped cache#0 (shutdown)", "stopped database#0 (shutdown)"])
        #expect(stopped.allSatisfy { $0.level == .notice && $0.metadata["reason"] == "shutdown" })
        #expect(stopped.map { $0.metadata["service"] } == ["cache", "database"])
    }

    @Test("a start failure logs the cause, the rollback, and each stop with the rollback as reason")
    func rollback() async throws {
        let recorder = InMemoryRecorder()
        let log = HostFixtures.Log()
        let host = self.makeHost(recorder)
        try await host.register(Node<Database>(log: log))
        try await host.register(Node<Cache>(log: log))
        try await host.register(Node<Users>(log: log))
        try await host.register(Node<Orders>(log: log, onStart: { throw HostFixtures.Refusal(reason: "no disk") }))
        try await host.register(Node<Payments>(log: log))
        await #expect(throws: HostError.self) { try await host.start() }

        let records = recorder.logs(from: "keel.host")
        let failed = try #require(records.first { $0.message.hasPrefix("orders#0 failed to start") })
        #expect(failed.level == .error)
        #expect(failed.metadata["error"]?.contains("no disk") == true)
        let rolledBack = try #require(records.first { $0.message.hasPrefix("start rolled back") })
        #expect(rolledBack.level == .error && rolledBack.metadata["service"] == "orders")
        let stops = records.filter { $0.message.hasPrefix("stopped") }
        #expect(
            Set(stops.map(\.message)) == [
                "stopped payments#0 (start rolled back)", "stopped orders#0 (start rolled back)",
                "stopped users#0 (start rolled back)", "stopped cache#0 (start rolled back)",
                "stopped database#0 (start rolled back)",
            ]
        )
        // Nothing said "started" about the one that failed.
        #expect(!records.contains { $0.message == "started orders#0" })
        // The rollback is logged before the first stop.
        let rollbackIndex = try #require(records.firstIndex { $0.message.hasPrefix("start rolled back") })
        let firstStop = try #require(records.firstIndex { $0.message.hasPrefix("stopped") })
        #expect(rollbackIndex < firstStop)
    }

    @Test("a service that fails to stop is logged as an error, with the error")
    func stopFailure() async throws {
        let recorder = InMemoryRecorder()
        let log = HostFixtures.Log()
        let host = self.makeHost(recorder)
        try await host.register(Node<Database>(log: log, onStop: { throw HostFixtures.Refusal(reason: "stuck") }))
        try await host.start()
        await host.shutdown()
        let failure = try #require(recorder.logs(from: "keel.host").first { $0.message.contains("failed to stop") })
        #expect(failure.level == .error)
        #expect(failure.metadata["instance"] == "database#0" && failure.metadata["reason"] == "shutdown")
        #expect(failure.metadata["error"]?.contains("stuck") == true)
        #expect(await host.stopFailures.count == 1)
    }

    @Test("a drain that ends with work in flight is logged as a warning")
    func drainTimeout() async throws {
        let recorder = InMemoryRecorder()
        let clock = TestClock()
        let host = self.makeHost(recorder, clock: clock)
        let gate = HostFixtures.Gate()
        let entered = HostFixtures.Arrivals()
        try await host.register(
            HostFixtures.Worker { _ in
                entered.arrive()
                try await gate.wait()
            }
        )
        try await host.start()
        let call = Task { try await host.client.send(HostFixtures.Work(value: 1)) }
        await entered.wait(for: 1)
        let shutdown = Task { await host.shutdown(drainTimeout: .seconds(5)) }
        await clock.waitForSleepers(count: 1)
        clock.advance(by: .seconds(5))
        await shutdown.value
        gate.open()
        _ = try? await call.value
        let warning = try #require(recorder.logs(from: "keel.host").first { $0.level == .warning })
        #expect(warning.message.hasPrefix("drain ended with 1 call(s)"))
        #expect(warning.metadata["inFlight"] == "1")
    }

    @Test("a service's logger adds its name and instance, and the handler's trace context")
    func serviceLogger() async throws {
        let recorder = InMemoryRecorder(logLevel: .info)
        let host = self.makeHost(recorder)
        try await host.register(Greeter())
        try await host.start()
        let root = TraceContext.makeRoot(using: RandomSource(seed: 5), correlationID: "checkout-1")
        let reply = try await TraceContext.$current.withValue(root) {
            try await host.client.send(Greeter.Greet(who: "ada"))
        }
        await host.shutdown()
        #expect(reply == "hello ada")

        let records = recorder.logs(from: "service")
        #expect(records.map(\.message) == ["greeting ada"], "the debug record passed an info-level telemetry")
        let record = try #require(records.first)
        #expect(record.level == .info)
        #expect(record.metadata == ["who": "ada", "service": "greeter", "instance": "greeter#0"])
        let trace = try #require(record.trace)
        #expect(trace.traceID == root.traceID)
        #expect(trace.parentSpanID == root.spanID, "the handler's own span, a child of the caller's")
        #expect(trace.correlationID == "checkout-1")
    }

    @Test("a dead-lettered event is logged as an error with the handler's trace context")
    func deadLetter() async throws {
        let recorder = InMemoryRecorder()
        try await BusFixtures.withBus(telemetry: recorder) { bus in
            let handled = BusFixtures.Collector<BusFixtures.Numbered>()
            try bus.subscribe(
                to: BusFixtures.Numbered.self,
                name: "fragile",
                options: SubscriptionOptions(redelivery: .none)
            ) { event, _ in
                if event.publisher == 0 { throw BusFixtures.HandlerFailure(sequence: event.sequence) }
                handled.append(event)
            }
            try await bus.publish(BusFixtures.Numbered(sequence: 1))
            try await bus.publish(BusFixtures.Numbered(publisher: 1, sequence: 2))
            _ = await handled.waitFor(count: 1)

            let letter = try #require(bus.deadLetters.first)
            let record = try #require(recorder.logs(from: "keel.bus").first)
            #expect(record.level == .error)
            #expect(record.metadata["subscription"] == "fragile")
            #expect(record.metadata["event"] == "\(letter.envelope.id)")
            #expect(record.metadata["attempts"] == "1")
            #expect(record.metadata["topic"] == BusFixtures.Numbered.topic)
            #expect(record.trace?.traceID == letter.envelope.traceID)
            #expect(recorder.logs(from: "keel.bus").count == 1, "only the dead letter is logged")
        }
    }
}
