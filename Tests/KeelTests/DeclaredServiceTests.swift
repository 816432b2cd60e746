import KeelCore
import KeelEventSourcing
import KeelTesting
import Testing

@testable import Keel

/// Declared subscriptions, made and ended by the host, and services built once by a factory with
/// non-optional dependencies.
@Suite("Declared services", .timeLimit(.minutes(2)))
struct DeclaredServiceTests {
    struct Ping: Event {
        static let topic = "test.ping"
        var number: Int
    }

    struct Refused: Error {}

    // MARK: Declared subscriptions

    struct Noted: DomainEvent {
        static let eventType = "test.noted"
        var text: String
    }

    /// Publishes `Noted` durably.
    actor Notary: ServiceActor {
        static let name: ServiceName = "notary"
        static let publishes: [any DomainEvent.Type] = [Noted.self]
        private(set) var environment: ServiceEnvironment?

        func start(_ environment: ServiceEnvironment) async throws {
            self.environment = environment
        }
    }

    /// Declares its three subscriptions; records what reaches them and what it sees when it stops.
    actor Listener: ServiceActor {
        static let name: ServiceName = "listener"
        static let dependencies: [ServiceName] = [Notary.name]
        let log = HostFixtures.Values<String>()
        private var environment: ServiceEnvironment?

        nonisolated func registerHandlers(_ handlers: inout RequestHandlers<Listener>) {
            handlers.subscribe(to: Ping.self) { service, event, envelope in
                service.record("typed \(event.number) from \(envelope.source?.description ?? "outside")")
            }
            handlers.subscribe(pattern: "test.#") { service, event, _ in
                service.record("pattern \(event.topic)")
            }
            handlers.subscribeDurably(to: Noted.self, name: "notes") { service, event, _ in
                service.record("durable \(event.text)")
            }
        }

        func start(_ environment: ServiceEnvironment) async throws {
            self.environment = environment
            // Made by the host after this returns: none yet.
            self.record("start sees \(environment.bus.subscriptions.count) subscriptions")
        }

        func durable() async -> DurableSubscription? {
            await self.environment?.durableSubscription(named: "notes")
        }

        func stop() async throws {
            guard let environment = self.environment else { throw Refused() }
            let durable = await environment.durableSubscription(named: "notes")
            self.record("stop sees \(environment.bus.subscriptions.count) subscriptions, durable \(durable != nil)")
        }

        private func record(_ entry: String) {
            self.log.append(entry)
        }
    }

    @Test("declared subscriptions are made when the service has started, deliver to it, and end before it stops")
    func declaredSubscriptions() async throws {
        let notary = Notary()
        let listener = Listener()
        let host = ServiceHost(configuration: TestHost.defaultConfiguration, random: RandomSource(seed: 1))
        try await host.register(notary)
        try await host.register(listener)
        try await host.start()
        #expect(host.bus.subscriptions.map(\.owner) == ["listener", "listener"])
        #expect(host.bus.subscriptions.map(\.name) == ["listener:test.ping", "listener:test.#"])

        try await host.bus.publish(Ping(number: 1))
        let notaryEnvironment = try #require(await notary.environment)
        let published = try await notaryEnvironment.publishDurably(Noted(text: "hello"))
        await host.waitUntilIdle()
        let subscription = try #require(await listener.durable())
        try await subscription.waitUntilDelivered(through: published.positions.upperBound - 1)
        await host.shutdown()

        #expect(listener.log.all.first == "start sees 0 subscriptions")
        #expect(
            Set(listener.log.all.dropFirst().dropLast()) == [
                "typed 1 from outside", "pattern test.ping", "durable hello",
            ]
        )
        #expect(listener.log.all.last == "stop sees 0 subscriptions, durable false")
        #expect(await host.stopFailures.isEmpty)
    }

    /// Declares a durable subscription to a type nobody publishes.
    actor Stray: ServiceActor {
        static let name: ServiceName = "stray"
        let started = HostFixtures.Values<String>()

        nonisolated func registerHandlers(_ handlers: inout RequestHandlers<Stray>) {
            handlers.subscribeDurably(to: Noted.self, name: "notes") { _, _, _ in }
        }

        func start(_ environment: ServiceEnvironment) async throws {
            self.started.append("started")
        }
    }

    @Test("a declared durable subscription to a type nobody publishes refuses the start before anything starts")
    func declaredSubscriptionToUndeclaredType() async throws {
        let stray = Stray()
        let host = ServiceHost(configuration: TestHost.defaultConfiguration, random: RandomSource(seed: 1))
        try await host.register(stray)
        let error = await #expect(throws: HostError.self) { try await host.start() }
        #expect(error?.code == .undeclaredPublication)
        #expect(error?.services == ["stray"])
        #expect(stray.started.all.isEmpty)
        await host.shutdown()
    }

    /// Subscribes durably under one name twice, or once per instance in a declared form.
    actor Twice: ServiceActor {
        static let name: ServiceName = "twice"
        static let dependencies: [ServiceName] = [Notary.name]
        let delivered = HostFixtures.Values<String>()
        private(set) var secondAttempt: (any Error)?
        let subscribesAgain: Bool

        init(subscribesAgain: Bool) {
            self.subscribesAgain = subscribesAgain
        }

        nonisolated func registerHandlers(_ handlers: inout RequestHandlers<Twice>) {
            handlers.subscribeDurably(to: Noted.self, name: "notes") { service, event, _ in
                service.delivered.append(event.text)
            }
        }

        private var environment: ServiceEnvironment?

        func durable() async -> DurableSubscription? {
            await self.environment?.durableSubscription(named: "notes")
        }

        func start(_ environment: ServiceEnvironment) async throws {
            self.environment = environment
            guard self.subscribesAgain else { return }
            // The declared one is made after `start`; this one takes the name first.
            _ = try await environment.subscribeDurably(to: Noted.self, name: "mine") { _, _ in }
            do {
                _ = try await environment.subscribeDurably(to: Noted.self, name: "mine") { _, _ in }
            } catch {
                self.secondAttempt = error
            }
        }
    }

    @Test("a second durable subscription under a name the service already uses is refused")
    func duplicateDurableSubscriptionName() async throws {
        let twice = Twice(subscribesAgain: true)
        try await TestHost.with(Notary(), twice) { _ in
            let error = try #require(await twice.secondAttempt as? HostError)
            #expect(error.code == .duplicateSubscription)
            #expect(error.services == [Twice.name])
        }
    }

    @Test(
        "a declared durable subscription of a service with several instances is made once, and delivers each event once"
    )
    func declaredDurableSubscriptionOncePerService() async throws {
        let notary = Notary()
        let first = Twice(subscribesAgain: false)
        let second = Twice(subscribesAgain: false)
        try await TestHost.with(notary, first, second) { _ in
            let environment = try #require(await notary.environment)
            let published = try await environment.publishDurably(Noted(text: "once"))
            let subscription = try #require(await first.durable())
            try await subscription.waitUntilDelivered(through: published.positions.upperBound - 1)
            #expect(first.delivered.all + second.delivered.all == ["once"])
        }
    }

    // MARK: Services built once, by a factory

    struct Deposited: DomainEvent, AggregateEvent {
        static let eventType = "ledger.deposited"
        var cents: Int
    }

    struct Account: Aggregate {
        static let category = "account"
        var balance = 0
        mutating func apply(_ event: Deposited) { self.balance += event.cents }
    }

    struct Deposit: CommandRequest {
        var aggregateID: String
        var cents: Int
    }

    struct Total: QueryRequest {
        typealias Response = Int
        var minimumPosition: UInt64?
    }

    /// The sum of every deposit, as a read model.
    struct Totals: Projection {
        let name = "totals"
        let serializer: EventSerializer

        func apply(_ event: RecordedEvent, to transaction: inout ReadModelTransaction) async throws {
            guard event.type == Deposited.eventType else { return }
            let deposited = try self.serializer.decode(event, as: Deposited.self)
            let total = try await transaction.value(Int.self, forKey: "total") ?? 0
            try transaction.set(total + deposited.cents, forKey: "total")
        }
    }

    /// Asks for the currency, to show that a factory runs after the services it depends on.
    struct GetCurrency: ServiceRequest {
        typealias Response = String
    }

    actor Treasury: ServiceActor {
        static let name: ServiceName = "treasury"

        nonisolated func registerHandlers(_ handlers: inout RequestHandlers<Treasury>) {
            handlers.on(GetCurrency.self) { _, _ in "EUR" }
        }
    }

    /// Built by its factory: every dependency is a non-optional `let`.
    actor Ledger: ServiceActor {
        static let name: ServiceName = "ledger"
        static let dependencies: [ServiceName] = [Treasury.name]
        let accounts: AggregateRepository<Account>
        let totals: ProjectionRunner
        let currency: String
        let log: HostFixtures.Values<String>

        init(environment: ServiceEnvironment, log: HostFixtures.Values<String>) async throws {
            let serializer = EventSerializer(registry: EventTypeRegistry([Deposited.self]))
            let storage = try await environment.storage()
            self.accounts = try await environment.makeRepository(serializer: serializer)
            self.totals = ProjectionRunner(
                projection: Totals(serializer: serializer),
                eventStore: storage.events,
                projectionStore: ProjectionStore(keyValueStore: try await storage.keyValues(named: "totals")),
                clock: environment.clock,
                random: environment.random
            )
            self.currency = try await environment.send(GetCurrency())
            self.log = log
            log.append("made \(environment.instanceID)")
        }

        nonisolated func registerHandlers(_ handlers: inout RequestHandlers<Ledger>) {
            handlers.command(Deposit.self, repository: { $0.accounts }) { _, request in
                [Deposited(cents: request.cents)]
            }
            handlers.query(Total.self, runner: { $0.totals }) { store, _ in
                try await store.value(Int.self, forKey: "total") ?? 0
            }
            handlers.subscribe(to: Ping.self) { service, event, _ in
                service.log.append("ping \(event.number) in \(service.currency)")
            }
        }

        func start(_ environment: ServiceEnvironment) async throws {
            await self.totals.start()
            self.log.append("started")
        }

        func stop() async throws {
            await self.totals.stop()
            self.log.append("stopped")
        }
    }

    @Test("a factory builds the service once at its start, after its dependencies; CQRS handlers use its lets")
    func factoryBuiltService() async throws {
        let log = HostFixtures.Values<String>()
        let host = ServiceHost(configuration: TestHost.defaultConfiguration, random: RandomSource(seed: 1))
        try await host.register { environment in try await Ledger(environment: environment, log: log) }
        try await host.register(Treasury())
        #expect(log.all.isEmpty)
        try await host.start()
        #expect(log.all == ["made ledger#0", "started"])

        let first = try await host.client.send(Deposit(aggregateID: "a", cents: 300))
        let second = try await host.client.send(Deposit(aggregateID: "b", cents: 200))
        #expect(first.version == 0 && second.version == 0)
        #expect(try await host.client.send(Total(minimumPosition: second.position)) == 500)
        try await host.bus.publish(Ping(number: 7))
        await host.waitUntilIdle()
        await host.shutdown()
        #expect(log.all == ["made ledger#0", "started", "ping 7 in EUR", "stopped"])
        #expect(await host.stopFailures.isEmpty)
    }

    /// A factory that fails.
    actor Broken: ServiceActor {
        static let name: ServiceName = "broken"
        static let dependencies: [ServiceName] = [Treasury.name]

        init() async throws {
            throw Refused()
        }
    }

    @Test("a factory that throws fails the start like a start that throws; what started is stopped")
    func factoryFailure() async throws {
        let host = ServiceHost(configuration: TestHost.defaultConfiguration, random: RandomSource(seed: 1))
        try await host.register(Treasury())
        try await host.register { _ in try await Broken() }
        let error = await #expect(throws: HostError.self) { try await host.start() }
        #expect(error?.code == .startFailed)
        #expect(error?.services == ["broken"])
        #expect(error?.underlying is Refused)
        #expect(await host.state == .stopped)
        #expect(host.registry.instances(of: "treasury").map(\.health) == [.dead("stopped")])
    }

    /// A factory-built service whose handlers clash.
    actor Clashing: ServiceActor {
        static let name: ServiceName = "clashing"
        let made: HostFixtures.Values<String>

        init(made: HostFixtures.Values<String>) {
            self.made = made
            made.append("made")
        }

        nonisolated func registerHandlers(_ handlers: inout RequestHandlers<Clashing>) {
            handlers.on(GetCurrency.self) { _, _ in "USD" }
        }

        func start(_ environment: ServiceEnvironment) async throws {
            self.made.append("started")
        }

        func stop() async throws {
            self.made.append("stopped")
        }
    }

    @Test("a factory-built service's clashing handlers refuse the start with conflictingRegistration")
    func factoryHandlersAreChecked() async throws {
        let made = HostFixtures.Values<String>()
        let host = ServiceHost(configuration: TestHost.defaultConfiguration, random: RandomSource(seed: 1))
        try await host.register(Treasury())
        try await host.register { _ in Clashing(made: made) }
        let error = await #expect(throws: HostError.self) { try await host.start() }
        #expect(error?.code == .conflictingRegistration)
        #expect(error?.services == ["treasury", "clashing"])
        // Made, never started, stopped with the rollback.
        #expect(made.all == ["made", "stopped"])
    }
}
