import KeelCore
import KeelEventSourcing

/// Runs a set of services: verifies their dependencies, starts them in order, routes their
/// requests and events, checks their health, and shuts them down gracefully.
///
/// ```swift
/// let host = ServiceHost()
/// try await host.register(UserService())
/// try await host.register(OrderService())
/// try await host.run()  // until SIGINT, SIGTERM or cancellation
/// ```
///
/// **Start.** ``start()`` refuses a missing dependency or a cycle with a ``HostError`` that names
/// them, then starts services level by level in dependency order; services of one level (which
/// do not depend on each other) start concurrently in a task group, and their first health check
/// runs before the next level starts. If a start throws, every service that already started and
/// every instance whose start threw are stopped in reverse order, the host is torn down as by a
/// shutdown, and the first failure is reported.
///
/// **Shutdown.** ``shutdown(drainTimeout:)`` stops taking new requests and events from outside (work that
/// in-flight handlers start is still accepted), waits for in-flight requests and event handlers
/// up to ``Configuration/shutdownTimeout``, then stops services in reverse start order, ending
/// each one's subscriptions first, and then what the host owns or was given: the policies of
/// ``setPolicy(_:for:)`` (``RoutePolicy/shutdown()``, which stops a circuit breaker's timer), the
/// bus, the storage (its file handles, writer threads and directory lock) and the health checks
/// still in flight.
///
/// **Health.** Every ``Configuration/healthCheckInterval`` on the host's clock, each instance's
/// ``ServiceActor/health()`` is asked and the ``ServiceRegistry`` updated: an instance that is not
/// live and ready gets no requests until a later check says it is. Every check, the first one
/// included, is bounded by ``Configuration/healthCheckTimeout``.
public actor ServiceHost {
    /// A host's settings.
    public struct Configuration: Sendable {
        /// How long shutdown waits for in-flight work before stopping services anyway.
        public var shutdownTimeout: Duration = .seconds(10)
        /// How often instances' health is checked; `nil` checks only once, after start.
        public var healthCheckInterval: Duration? = .seconds(5)
        /// How long an instance may take to report its health before it is taken out of the
        /// rotation as dead; `nil` waits as long as it takes. A report that arrives later still
        /// counts. Also how long shutdown waits for checks still in flight (with `nil`, up to
        /// ``shutdownTimeout``).
        public var healthCheckTimeout: Duration? = .seconds(2)
        /// How requests choose among a service's instances, unless the service's registration
        /// says otherwise.
        public var loadBalancing: LoadBalancing = .roundRobin
        /// The event bus's settings.
        public var bus = EventBus.Configuration()
        /// The task executor preference of every task the host starts.
        public var executor: (any TaskExecutor)?
        /// The host's one wall clock: the time of day stamped on everything its services write
        /// (bus envelopes, durable publications, and the events and snapshots of aggregate
        /// repositories made with ``ServiceEnvironment/wallClock``). The system's by default; a
        /// fixed one (``/KeelCore/WallClock/fixed(nanosecondsSinceEpoch:)``) in tests that check
        /// those times.
        public var wallClock: WallClock = .system
        /// Where services' storage lives (``ServiceEnvironment/storage()``): an embedded directory
        /// by default (``StorageLocation/embedded``), opened only when a service first asks.
        public var storage: StorageLocation = .embedded
        /// The fault injector the host's routes and bus consult (KeelTesting's `FaultInjector`,
        /// set through its `faults` property); `nil`, the default, injects nothing.
        package var faultInjector: (any FaultInjecting)?

        /// Creates the default configuration.
        public init() {}
    }

    /// Where a host is in its life.
    public enum State: String, Sendable, Hashable {
        /// Accepting registrations.
        case idle
        /// Starting services.
        case starting
        /// Running.
        case running
        /// Shutting down.
        case stopping
        /// Stopped; it cannot start again.
        case stopped
    }

    struct Instance: Sendable {
        var id: InstanceID
        /// The instance, once it exists: from registration, or from its factory at start.
        var slot: ServiceSlot
        /// The factory of an instance registered with ``register(_:loadBalancing:_:)``: makes
        /// the instance and its handler table at start.
        var make: (@Sendable (ServiceEnvironment) async throws -> (any ServiceActor, HandlerTable))?
        /// The subscriptions the instance declared (for a factory's, known at start).
        var declared: [DeclaredSubscription]
        var dependencies: [ServiceName]
        var publishes: [any DomainEvent.Type]
        var typeID: ObjectIdentifier
        var environment: EnvironmentBox
    }

    /// A refusal by the host itself while an instance starts (its factory's handler table is
    /// inconsistent, or declares a durable subscription nobody publishes): reported as is, not as
    /// ``HostError/Code-swift.struct/startFailed``.
    private struct Refusal: Error {
        var error: HostError
    }

    /// The host's settings.
    public nonisolated let configuration: Configuration
    /// The host's clock.
    public nonisolated let clock: any Clock<Duration>
    /// Where metrics and spans go.
    public nonisolated let telemetry: any Telemetry
    /// The host's random source.
    public nonisolated let random: RandomSource
    /// The host's event bus, whole: for operators and tests (shutdown, every subscription, every
    /// dead letter, publishing as any source). Services get a narrower view of it,
    /// ``ServiceEnvironment/bus``.
    public nonisolated let bus: EventBus
    /// The host's registry of instances and their health, whole: for operators and tests.
    /// Services get a read-only view of it, ``ServiceEnvironment/registry``.
    public nonisolated let registry: ServiceRegistry
    /// A request client for calls from outside the services; it may reach every service.
    public nonisolated let client: RequestClient

    let router: RequestRouter
    let tracker: WorkTracker
    /// Services' storage, opened on first use and closed at the end of shutdown.
    let storage: HostStorage
    private var instances: [Instance] = []
    private var startOrder: [ServiceName] = []
    private var startedInstances: Set<InstanceID> = []
    private var routePolicies: [ObjectIdentifier: any RoutePolicy] = [:]
    private var servicePolicies: [ServiceName: any RoutePolicy] = [:]
    private var loadBalancing: [ServiceName: LoadBalancing] = [:]
    private var healthTask: Task<Void, Never>?
    /// The health checks in flight, one per instance at most: each runs in a task of its own, so
    /// that a round can stop waiting for an instance that does not answer.
    private var probes: [InstanceID: Task<Void, Never>] = [:]
    /// The waits for health reports under way (rounds, and the end of shutdown).
    private var rounds: [HealthRound] = []
    private var stateWaiters: [CheckedContinuation<Void, Never>] = []
    private var stopErrors: [HostError] = []
    /// Every registered service's declared durable publications, made at start.
    private var publications = PublicationCatalog()

    /// Where the host is in its life.
    public private(set) var state: State = .idle

    /// Errors reported by services' `stop` during the last shutdown or rollback.
    public var stopFailures: [HostError] { self.stopErrors }

    /// Creates a host.
    /// - Parameters:
    ///   - configuration: The host's settings.
    ///   - clock: The clock for deadlines, health checks, backoff and shutdown.
    ///   - telemetry: Where metrics and spans go.
    ///   - random: The source of every id and random choice of the host, its bus, registry,
    ///     router and services' storage. By default a new source seeded from the system's
    ///     generator; pass a seeded one to repeat a run.
    public init(
        configuration: Configuration = Configuration(),
        clock: some Clock<Duration> = ContinuousClock(),
        telemetry: any Telemetry = NoOpTelemetry(),
        random: RandomSource = RandomSource()
    ) {
        self.configuration = configuration
        self.clock = clock
        self.telemetry = telemetry
        self.random = random
        self.storage = HostStorage(
            location: configuration.storage,
            executor: configuration.executor,
            telemetry: telemetry
        )
        configuration.faultInjector?.attach(to: random)
        let tracker = WorkTracker()
        self.tracker = tracker
        let registry = ServiceRegistry(random: random)
        self.registry = registry
        self.bus = EventBus(
            configuration: configuration.bus,
            clock: clock,
            telemetry: telemetry,
            random: random,
            wallClock: configuration.wallClock,
            executor: configuration.executor,
            tracker: tracker,
            faults: configuration.faultInjector
        )
        let router = RequestRouter(
            registry: registry,
            tracker: tracker,
            clock: clock,
            telemetry: telemetry,
            random: random,
            faults: configuration.faultInjector
        )
        self.router = router
        self.client = RequestClient(router: router, caller: nil, allowed: nil)
    }

    // MARK: Registration

    /// Registers one instance of a service. Register a service several times for several
    /// instances; requests are balanced among those that are live and ready.
    /// - Parameters:
    ///   - service: The instance.
    ///   - loadBalancing: How requests choose among the service's instances; defaults to the
    ///     configuration's.
    /// - Throws: ``HostError/Code-swift.struct/invalidState`` after start;
    ///   ``HostError/Code-swift.struct/duplicateHandler`` or
    ///   ``HostError/Code-swift.struct/conflictingRegistration`` for inconsistent handlers or names.
    public func register<S: ServiceActor>(_ service: S, loadBalancing: LoadBalancing? = nil) throws(HostError) {
        try self.checkRegistration(of: S.self)
        let environment = EnvironmentBox()
        var handlers = RequestHandlers(service: service, environment: environment)
        service.registerHandlers(&handlers)
        let index = self.instances.filter { $0.id.service == S.name }.count
        try self.install(handlers.table, of: S.name, index: index)
        self.add(
            Instance(
                id: InstanceID(service: S.name, index: index),
                slot: ServiceSlot(service),
                make: nil,
                declared: handlers.subscriptions,
                dependencies: S.dependencies,
                publishes: S.publishes,
                typeID: ObjectIdentifier(S.self),
                environment: environment
            ),
            loadBalancing: loadBalancing
        )
    }

    /// Registers one instance of a service that `make` builds when the service starts, from its
    /// environment: the way to give a service dependencies that exist only once it runs (its
    /// repositories, projection runners, durable subscriptions), as non-optional `let`s of the
    /// instance, built once.
    ///
    /// ```swift
    /// actor UserService: ServiceActor {
    ///     static let name: ServiceName = "user"
    ///     let customers: AggregateRepository<Customer>
    ///
    ///     init(environment: ServiceEnvironment) async throws {
    ///         self.customers = try await environment.makeRepository(serializer: serializer)
    ///     }
    ///
    ///     nonisolated func registerHandlers(_ handlers: inout RequestHandlers<UserService>) {
    ///         handlers.command(RegisterCustomer.self, repository: { $0.customers }) { customer, request in
    ///             [.registered(CustomerRegistered(name: request.name))]
    ///         }
    ///     }
    /// }
    ///
    /// try await host.register { environment in try await UserService(environment: environment) }
    /// ```
    ///
    /// `make` is called once per start of the instance, at its turn in dependency order, with the
    /// environment its ``ServiceActor/start(_:)`` then receives; it may use everything the
    /// environment offers (storage, requests to the services it depends on, which have started).
    /// Then the host takes the instance's ``ServiceActor/registerHandlers(_:)`` (its request
    /// handlers join the routes; its declared subscriptions are made once its `start` returns),
    /// and calls `start`. Until then the instance takes no requests. A `make` that throws fails the
    /// start like a `start` that throws: what already started is stopped in reverse order.
    /// - Parameters:
    ///   - type: The service type; inferred from `make`.
    ///   - loadBalancing: How requests choose among the service's instances; defaults to the
    ///     configuration's.
    ///   - make: Builds the instance, on a task of the host's, once, when the service starts.
    /// - Throws: ``HostError/Code-swift.struct/invalidState`` after start;
    ///   ``HostError/Code-swift.struct/conflictingRegistration`` when another service type has the
    ///   same name. Inconsistent handlers (``HostError/Code-swift.struct/duplicateHandler``,
    ///   ``HostError/Code-swift.struct/conflictingRegistration``) or a declared durable
    ///   subscription no service publishes (``HostError/Code-swift.struct/undeclaredPublication``)
    ///   are found when the instance is made, and fail ``start()`` with that code.
    public func register<S: ServiceActor>(
        _ type: S.Type = S.self,
        loadBalancing: LoadBalancing? = nil,
        _ make: @escaping @Sendable (ServiceEnvironment) async throws -> S
    ) throws(HostError) {
        try self.checkRegistration(of: S.self)
        let environment = EnvironmentBox()
        let index = self.instances.filter { $0.id.service == S.name }.count
        self.add(
            Instance(
                id: InstanceID(service: S.name, index: index),
                slot: ServiceSlot(nil),
                make: { startEnvironment in
                    let service = try await make(startEnvironment)
                    var handlers = RequestHandlers(service: service, environment: environment)
                    service.registerHandlers(&handlers)
                    return (service, handlers.table)
                },
                declared: [],
                dependencies: S.dependencies,
                publishes: S.publishes,
                typeID: ObjectIdentifier(S.self),
                environment: environment
            ),
            loadBalancing: loadBalancing
        )
    }

    private func checkRegistration<S: ServiceActor>(of type: S.Type) throws(HostError) {
        guard self.state == .idle else {
            throw HostError(
                code: .invalidState,
                services: [S.name],
                message: "cannot register \(S.name) while the host is \(self.state)"
            )
        }
        if let other = self.instances.first(where: { $0.id.service == S.name }),
            other.typeID != ObjectIdentifier(S.self)
        {
            throw HostError(
                code: .conflictingRegistration,
                services: [S.name],
                message: "two different service types are named \(S.name)"
            )
        }
    }

    private func add(_ instance: Instance, loadBalancing: LoadBalancing?) {
        let name = instance.id.service
        self.instances.append(instance)
        self.registry.add(
            instance.id,
            strategy: loadBalancing ?? self.loadBalancing[name] ?? self.configuration.loadBalancing
        )
        if let loadBalancing { self.loadBalancing[name] = loadBalancing }
    }

    /// Adds the request handlers of instance `index` of `service` to the routes, or refuses them
    /// all when one is inconsistent.
    private func install(_ handlers: HandlerTable, of service: ServiceName, index: Int) throws(HostError) {
        if !handlers.duplicates.isEmpty {
            throw HostError(
                code: .duplicateHandler,
                services: [service],
                message: "\(service) declares more than one handler for \(handlers.duplicates.joined(separator: ", "))"
            )
        }
        let telemetry = self.telemetry
        let pool = self.registry.pool(for: service)
        try self.router.updateRoutes { (routes) throws(HostError) in
            // Check every route before changing any, so a refused registration leaves no trace.
            for key in handlers.order {
                if let existing = routes[key], existing.service != service, let handler = handlers.entries[key] {
                    throw HostError(
                        code: .conflictingRegistration,
                        services: [existing.service, service],
                        message: "both \(existing.service) and \(service) handle \(handler.requestName)"
                    )
                }
            }
            for key in handlers.order {
                guard let handler = handlers.entries[key] else { continue }
                var list = routes[key]?.handlers ?? []
                while list.count <= index { list.append(nil) }
                list[index] = handler
                routes[key] =
                    routes[key]?.with(handlers: list)
                    ?? Route(
                        requestName: handler.requestName,
                        service: service,
                        pool: pool,
                        handlers: list,
                        policy: self.routePolicies[key] ?? self.servicePolicies[service],
                        telemetry: telemetry
                    )
            }
        }
    }

    /// Checks that some registered service publishes the type of each declared durable
    /// subscription of `service`.
    private func checkPublications(of declared: [DeclaredSubscription], by service: ServiceName) throws(HostError) {
        for subscription in declared {
            guard let type = subscription.durableType, self.publications.publishers(of: type).isEmpty else { continue }
            throw HostError(
                code: .undeclaredPublication,
                services: [service],
                message:
                    "\(service) declares a durable subscription to \(type.eventType) (\(type)), which no service declares in `publishes`"
            )
        }
    }

    /// Takes the handler table of an instance its factory just made: installs its routes and
    /// checks its declared durable subscriptions.
    private func adopt(_ handlers: HandlerTable, of id: InstanceID) throws(HostError) {
        try self.checkPublications(of: handlers.subscriptions, by: id.service)
        try self.install(handlers, of: id.service, index: id.index)
    }

    /// Wraps every call of requests of type `request` in `policy` (for example a resilience
    /// pipeline). Replaces an earlier policy for the route; takes precedence over a service-wide
    /// policy. It may be set at any time: calls that begin after it returns run inside it.
    /// - Parameters:
    ///   - policy: The policy.
    ///   - request: The request type.
    public func setPolicy<R: ServiceRequest>(_ policy: any RoutePolicy, for request: R.Type) {
        let key = ObjectIdentifier(request)
        self.routePolicies[key] = policy
        for route in self.router.policyCells() where route.key == key {
            route.cell.set(policy)
        }
    }

    /// Wraps every call to `service` in `policy`, except routes with a policy of their own. It may
    /// be set at any time: calls that begin after it returns run inside it.
    /// - Parameters:
    ///   - policy: The policy.
    ///   - service: The service.
    public func setPolicy(_ policy: any RoutePolicy, forService service: ServiceName) {
        self.servicePolicies[service] = policy
        for route in self.router.policyCells() where route.service == service && self.routePolicies[route.key] == nil {
            route.cell.set(policy)
        }
    }

    // MARK: Start

    /// Verifies the dependency graph and starts every service in dependency order.
    ///
    /// Services that do not depend on each other start concurrently; each level's first health
    /// check (bounded by ``Configuration/healthCheckTimeout``) runs before the next level starts.
    /// When a start throws, the services that started and the instances whose start threw are
    /// stopped in reverse order (a service's ``ServiceActor/stop()`` must therefore cope with a
    /// partial start), the host's policies, bus and storage are shut down as by
    /// ``shutdown(drainTimeout:)``, and the host ends ``State/stopped``: nothing it started is
    /// left running, and a new host may open the same storage.
    /// - Throws: ``HostError`` with code ``HostError/Code-swift.struct/missingDependency``,
    ///   ``HostError/Code-swift.struct/dependencyCycle``, ``HostError/Code-swift.struct/startFailed``
    ///   or ``HostError/Code-swift.struct/invalidState``.
    public func start() async throws(HostError) {
        guard self.state == .idle else {
            throw HostError(code: .invalidState, services: [], message: "cannot start a host that is \(self.state)")
        }
        var seen: Set<ServiceName> = []
        let graph = DependencyGraph(
            services: self.instances.compactMap { instance in
                seen.insert(instance.id.service).inserted ? (instance.id.service, instance.dependencies) : nil
            }
        )
        try graph.verify()
        var publications = PublicationCatalog()
        for instance in self.instances { publications.add(instance.publishes, of: instance.id.service) }
        self.publications = publications
        for instance in self.instances {
            try self.checkPublications(of: instance.declared, by: instance.id.service)
        }
        self.state = .starting

        var started: [ServiceName] = []
        for level in graph.levels() {
            let members = self.instances.filter { level.contains($0.id.service) }
            let failures = await self.startConcurrently(members)
            if failures.isEmpty {
                // The level's first health check, bounded like every other, before the services
                // that depend on it start and call it.
                await self.checkHealth(of: members)
            } else {
                // An instance whose start threw is stopped too: what it set up before it threw
                // (subscriptions, storage, tasks of its own) is torn down with the rest.
                for failure in failures { self.startedInstances.insert(failure.id) }
            }
            // A service counts as started when any of its instances did; only those instances
            // are stopped.
            for name in level where self.startedInstances.contains(where: { $0.service == name }) {
                started.append(name)
            }
            if let failure = failures.first {
                // Services of this level are stopped too, in reverse.
                self.startOrder = started
                self.telemetry.log(
                    .error,
                    source: "keel.host",
                    "start rolled back: \(failure.id) failed to start (\(failure.error)); stopping \(started.count) started service(s) in reverse order",
                    metadata: [
                        "service": failure.service.rawValue,
                        "instance": failure.id.description,
                        "error": "\(failure.error)",
                    ]
                )
                await self.tearDown(reason: "start rolled back")
                if let refusal = failure.error as? Refusal { throw refusal.error }
                throw HostError(
                    code: .startFailed,
                    services: [failure.service],
                    message: "\(failure.service) failed to start; started services were stopped in reverse order",
                    underlying: failure.error
                )
            }
        }
        self.startOrder = started
        // Every instance has registered its handlers: the routes are fixed from now on.
        self.router.startRunning()
        if let interval = self.configuration.healthCheckInterval {
            self.healthTask = TaskSpawner.spawn(executor: self.configuration.executor) { [self] in
                await self.checkHealthPeriodically(every: interval)
            }
        }
        self.finish(.running)
    }

    private func startConcurrently(
        _ members: [Instance]
    ) async -> [(id: InstanceID, service: ServiceName, error: any Error)] {
        let results = await withTaskGroup(of: (Int, (any Error)?).self) { group in
            for (offset, instance) in members.enumerated() {
                let environment = self.makeEnvironment(for: instance)
                instance.environment.set(environment)
                group.addTask {
                    do {
                        try await self.start(instance, in: environment)
                        return (offset, nil)
                    } catch {
                        return (offset, error)
                    }
                }
            }
            var results: [(Int, (any Error)?)] = []
            for await result in group { results.append(result) }
            return results.sorted { $0.0 < $1.0 }
        }
        var failures: [(id: InstanceID, service: ServiceName, error: any Error)] = []
        for (offset, error) in results {
            let instance = members[offset]
            let metadata = ["service": instance.id.service.rawValue, "instance": instance.id.description]
            if let error {
                failures.append((instance.id, instance.id.service, error))
                self.telemetry.log(
                    .error,
                    source: "keel.host",
                    "\(instance.id) failed to start: \(error)",
                    metadata: metadata.merging(["error": "\(error)"]) { $1 }
                )
            } else {
                self.startedInstances.insert(instance.id)
                self.telemetry.log(.info, source: "keel.host", "started \(instance.id)", metadata: metadata)
            }
        }
        return failures
    }

    /// Starts one instance: makes it first if it has a factory, calls its `start`, then makes the
    /// subscriptions it declared.
    private nonisolated func start(_ instance: Instance, in environment: ServiceEnvironment) async throws {
        let service: any ServiceActor
        let declared: [DeclaredSubscription]
        if let make = instance.make {
            let (made, handlers) = try await make(environment)
            // Kept at once, so that a rollback stops what the factory made.
            instance.slot.set(made)
            do {
                try await self.adopt(handlers, of: instance.id)
            } catch {
                throw Refusal(error: error)
            }
            (service, declared) = (made, handlers.subscriptions)
        } else {
            guard let registered = instance.slot.value else { preconditionFailure("\(instance.id) has no instance") }
            (service, declared) = (registered, instance.declared)
        }
        try await service.start(environment)
        // A durable subscription is the service's (one checkpoint): its first instance makes it.
        for subscription in declared where subscription.durableType == nil || instance.id.index == 0 {
            try await subscription.make(environment)
        }
    }

    private func makeEnvironment(for instance: Instance) -> ServiceEnvironment {
        ServiceEnvironment(
            name: instance.id.service,
            instanceID: instance.id,
            clock: self.clock,
            telemetry: self.telemetry,
            random: self.random,
            wallClock: self.configuration.wallClock,
            bus: ServiceBus(service: instance.id.service, bus: self.bus),
            requests: RequestClient(router: self.router, caller: instance.id.service, allowed: instance.dependencies),
            registry: ReadOnlyRegistry(self.registry),
            hostStorage: self.storage,
            publications: self.publications
        )
    }

    // MARK: Health

    private func checkHealthPeriodically(every interval: Duration) async {
        while !Task.isCancelled {
            do {
                try await self.clock.sleep(for: interval)
            } catch {
                return
            }
            await self.checkHealth()
        }
    }

    /// Asks every running instance for its health now, all at once, and updates the registry as
    /// each one answers.
    ///
    /// Each check runs in a task of its own. An instance that does not answer within
    /// ``Configuration/healthCheckTimeout`` leaves the rotation as dead when the timeout fires; its
    /// report, if it comes later, still counts. The call returns when every instance has answered
    /// or the timeout fired, whichever is first (with no timeout, when every instance has
    /// answered), or when the calling task is cancelled. An instance whose earlier check has not
    /// answered yet is not asked again: the round waits for that check.
    ///
    /// Tests call it to run a health round and see its outcome at once, without advancing a test
    /// clock: when every `health()` answers, it returns without sleeping.
    public func checkHealth() async {
        guard self.state == .running else { return }
        await self.checkHealth(of: self.instances.filter { self.startedInstances.contains($0.id) })
    }

    /// One health round over `instances`, bounded by the configured timeout.
    private func checkHealth(of instances: [Instance]) async {
        // An instance whose factory has not made it yet has no health to ask.
        let instances = instances.filter { $0.slot.value != nil }
        let round = HealthRound(pending: Set(instances.map(\.id)))
        self.rounds.append(round)
        defer { self.rounds.removeAll { $0 === round } }
        for instance in instances where self.probes[instance.id] == nil {
            guard let service = instance.slot.value else { continue }
            let id = instance.id
            self.probes[id] = TaskSpawner.spawn(executor: self.configuration.executor) { [self] in
                let report = await service.health()
                await self.healthAnswered(id, report)
            }
        }
        let timeout = self.configuration.healthCheckTimeout
        await Self.wait(for: round, timeout: timeout, on: self.clock)
        guard let timeout, !Task.isCancelled, self.state == .running || self.state == .starting else { return }
        for id in round.unanswered {
            self.registry.setHealth(.dead("no health report within \(timeout)"), for: id)
        }
    }

    private func healthAnswered(_ id: InstanceID, _ report: HealthReport) {
        self.probes[id] = nil
        // The host may have begun stopping while it waited for the report.
        if self.state == .running || self.state == .starting {
            self.registry.setHealth(report, for: id)
        }
        for round in self.rounds { round.answered(id) }
    }

    /// Waits until `round` has every answer, `timeout` has passed on `clock`, or the calling task
    /// is cancelled. The round must be in ``rounds`` before any answer can arrive, that is,
    /// before the caller first suspends.
    private static func wait(for round: HealthRound, timeout: Duration?, on clock: any Clock<Duration>) async {
        guard let timeout else { return await round.wait() }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await round.wait() }
            group.addTask { try? await clock.sleep(for: timeout) }
            await group.next()
            group.cancelAll()
        }
    }

    /// Cancels the health checks still in flight and waits for them, up to the health-check
    /// timeout (the shutdown timeout when there is none), whether or not the calling task is
    /// cancelled; a check still running after that is reported in ``stopFailures``.
    private func endHealthChecks() async {
        guard !self.probes.isEmpty else { return }
        for probe in self.probes.values { probe.cancel() }
        let round = HealthRound(pending: Set(self.probes.keys))
        self.rounds.append(round)
        defer { self.rounds.removeAll { $0 === round } }
        let timeout = self.configuration.healthCheckTimeout ?? self.configuration.shutdownTimeout
        let clock = self.clock
        // Owned and awaited here, so that a cancelled shutdown still waits.
        await TaskSpawner.spawn(executor: self.configuration.executor) {
            await Self.wait(for: round, timeout: timeout, on: clock)
        }.value
        for id in round.unanswered.sorted(by: { $0.description < $1.description }) {
            self.stopErrors.append(
                HostError(
                    code: .stopFailed,
                    services: [id.service],
                    message: "\(id) did not answer its health check within \(timeout) of being stopped"
                )
            )
        }
        self.probes = [:]
    }

    /// Suspends until no request, buffered event or event handler is in flight in the host.
    ///
    /// Useful in samples and tests to wait for the consequences of an action (the events it
    /// published, the handlers they triggered) without sleeping. Work that keeps producing work
    /// (a handler that publishes forever) never becomes idle. Returns early when the calling task
    /// is cancelled.
    public nonisolated func waitUntilIdle() async {
        await self.tracker.waitUntilIdle()
    }

    // MARK: Shutdown

    /// Shuts the host down gracefully.
    ///
    /// Stops taking new work from outside, waits for in-flight requests and event handlers up to
    /// ``Configuration/shutdownTimeout`` on the host's clock, ends the periodic health checks,
    /// then stops the services in reverse start order, ending each service's subscriptions
    /// (durable ones included) before calling its `stop`. Then it shuts down the policies it was
    /// given (``RoutePolicy/shutdown()``), the bus and the storage, and waits up to
    /// ``Configuration/healthCheckTimeout`` for health checks still in flight (a `health()` that
    /// is still running then is left behind and reported). Errors from `stop`, and such health
    /// checks, are collected in ``stopFailures``. Concurrent calls all return when shutdown is
    /// complete; calling it on a stopped host returns at once. Runs to completion even when the
    /// calling task is cancelled.
    ///
    /// - Parameter drainTimeout: How long to wait for in-flight work; `nil` (the default) uses
    ///   ``Configuration/shutdownTimeout``, `.zero` stops at once: event handlers still running
    ///   are cancelled when their subscriptions end.
    public func shutdown(drainTimeout: Duration? = nil) async {
        switch self.state {
        case .idle:
            await self.tearDown(reason: "shutdown")
            return
        case .stopped:
            return
        case .starting, .stopping:
            await withCheckedContinuation { self.stateWaiters.append($0) }
            await self.shutdown(drainTimeout: drainTimeout)
            return
        case .running:
            break
        }
        self.state = .stopping
        self.tracker.startDraining()
        self.telemetry.log(
            .notice,
            source: "keel.host",
            "shutting down: draining in-flight work for up to \(drainTimeout ?? self.configuration.shutdownTimeout)"
        )
        let tracker = self.tracker
        let clock = self.clock
        let timeout = drainTimeout ?? self.configuration.shutdownTimeout
        if timeout > .zero {
            // An unstructured task, owned and awaited here: the drain must not inherit the
            // caller's cancellation, or a cancelled `run()` could not shut down gracefully.
            await TaskSpawner.spawn(executor: self.configuration.executor) {
                await withTaskGroup(of: Void.self) { group in
                    group.addTask { await tracker.waitUntilIdle() }
                    group.addTask { try? await clock.sleep(for: timeout) }
                    await group.next()
                    group.cancelAll()
                }
            }.value
        }
        let unfinished = tracker.inFlight
        if unfinished > 0 {
            self.telemetry.log(
                .warning,
                source: "keel.host",
                "drain ended with \(unfinished) call(s) and handler(s) still in flight; stopping the services",
                metadata: ["inFlight": "\(unfinished)"]
            )
        }
        self.healthTask?.cancel()
        await self.healthTask?.value
        self.healthTask = nil
        await self.tearDown(reason: "shutdown")
    }

    /// Stops the services, then everything the host owns or was given: its policies, the bus,
    /// the storage and the health checks still in flight.
    /// - Parameter reason: Why the services stop, for the log.
    private func tearDown(reason: String) async {
        self.state = .stopping
        await self.stopServices(reason: reason)
        for policy in self.routePolicies.values { await policy.shutdown() }
        for policy in self.servicePolicies.values { await policy.shutdown() }
        await self.bus.shutdown()
        await self.storage.close()
        await self.endHealthChecks()
        self.finish(.stopped)
    }

    private func stopServices(reason: String) async {
        for name in self.startOrder.reversed() {
            await self.bus.cancelSubscriptions(ownedBy: name)
            await self.storage.stopSubscriptions(of: name)
            for instance in self.instances.reversed()
            where instance.id.service == name && self.startedInstances.contains(instance.id) {
                self.registry.setHealth(.dead("stopped"), for: instance.id)
                // An instance whose factory failed was never made: there is nothing to stop.
                guard let service = instance.slot.value else { continue }
                do {
                    try await service.stop()
                    self.telemetry.log(
                        .notice,
                        source: "keel.host",
                        "stopped \(instance.id) (\(reason))",
                        metadata: ["service": name.rawValue, "instance": instance.id.description, "reason": reason]
                    )
                } catch {
                    self.telemetry.log(
                        .error,
                        source: "keel.host",
                        "\(instance.id) failed to stop (\(reason)): \(error)",
                        metadata: [
                            "service": name.rawValue, "instance": instance.id.description, "reason": reason,
                            "error": "\(error)",
                        ]
                    )
                    self.stopErrors.append(
                        HostError(
                            code: .stopFailed,
                            services: [name],
                            message: "\(instance.id) failed to stop",
                            underlying: error
                        )
                    )
                }
            }
        }
        self.startOrder = []
        self.startedInstances = []
    }

    private func finish(_ state: State) {
        self.state = state
        let waiters = self.stateWaiters
        self.stateWaiters = []
        for waiter in waiters { waiter.resume() }
    }

    // MARK: Run

    /// Starts the host, runs until the process receives SIGINT or SIGTERM or the calling task is
    /// cancelled, then shuts down gracefully.
    /// - Throws: What ``start()`` throws.
    public func run() async throws(HostError) {
        try await self.start()
        _ = await SignalWaiter.wait()
        // Shut down from an unstructured task that this call owns and awaits: a cancelled `run()`
        // must still drain and stop its services without seeing the cancellation itself.
        await TaskSpawner.spawn(executor: self.configuration.executor) { [self] in
            await self.shutdown()
        }.value
    }
}
