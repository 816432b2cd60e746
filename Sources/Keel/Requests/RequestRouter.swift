import KeelCore
import KeelResilience
import Synchronization

/// The routes of a host: for each request type, the service that handles it, each instance's
/// handler, the route's policy and metrics.
///
/// A route is replaced by a new one when an instance's handlers join it (only before the host
/// runs); its policy lives in a ``PolicyCell`` that every version shares, so that
/// ``ServiceHost/setPolicy(_:for:)`` reaches the route while it is in use.
final class Route: Sendable {
    let requestName: String
    let service: ServiceName
    let pool: ServiceRegistry.Pool
    let handlers: [AnyBoundHandler?]
    let policy: PolicyCell
    let spanName: String
    let requests: any TelemetryCounter
    let failures: any TelemetryCounter
    let latency: any TelemetryTimer

    init(
        requestName: String,
        service: ServiceName,
        pool: ServiceRegistry.Pool,
        handlers: [AnyBoundHandler?],
        policy: (any RoutePolicy)?,
        telemetry: any Telemetry
    ) {
        self.requestName = requestName
        self.service = service
        self.pool = pool
        self.handlers = handlers
        self.policy = PolicyCell(policy)
        self.spanName = "\(service).\(requestName)"
        let dimensions = [("service", service.rawValue), ("request", requestName)]
        self.requests = telemetry.makeCounter(label: "keel.requests", dimensions: dimensions)
        self.failures = telemetry.makeCounter(label: "keel.requests.failed", dimensions: dimensions)
        self.latency = telemetry.makeTimer(label: "keel.requests.duration", dimensions: dimensions)
    }

    private init(_ route: Route, handlers: [AnyBoundHandler?]) {
        self.requestName = route.requestName
        self.service = route.service
        self.pool = route.pool
        self.handlers = handlers
        self.policy = route.policy
        self.spanName = route.spanName
        self.requests = route.requests
        self.failures = route.failures
        self.latency = route.latency
    }

    /// The same route with other handlers: the same policy cell and metrics.
    func with(handlers: [AnyBoundHandler?]) -> Route {
        Route(self, handlers: handlers)
    }
}

/// A route's policy, shared by every version of the route.
///
/// A call reads one atomic flag to know whether there is a policy; only a call on a route with a
/// policy takes the lock to read it (and then runs the policy, which costs far more).
final class PolicyCell: Sendable {
    private let storage: Lock<(any RoutePolicy)?>
    private let isSet: Atomic<Bool>

    init(_ policy: (any RoutePolicy)?) {
        self.storage = Lock(policy)
        self.isSet = Atomic(policy != nil)
    }

    /// Whether the route has a policy.
    var isEmpty: Bool { !self.isSet.load(ordering: .acquiring) }

    /// The policy, if any.
    var value: (any RoutePolicy)? { self.storage.withLock { $0 } }

    /// Replaces the policy.
    func set(_ policy: any RoutePolicy) {
        self.storage.withLock { $0 = policy }
        self.isSet.store(true, ordering: .releasing)
    }
}

/// A route as the host runs it: its instances and their handlers side by side, fixed once the
/// host has started (no instance registers later), so that a call picks an instance and finds its
/// handler without a lock.
///
/// A route whose service has more than 64 instances, or a route used before the host runs, has
/// no instances here (``isLocked``): its calls take the slow path, which picks an instance under
/// the pool's lock.
@usableFromInline
final class RunningRoute: Sendable {
    let route: Route
    /// The service's instances in registration order; at most 64 (see
    /// ``ServiceRegistry/pickIndex(from:slots:strategy:)``).
    let slots: [ServiceRegistry.Slot]
    /// Each instance's handler, by the same index; `nil` where the instance has none.
    @usableFromInline let handlers: [AnyBoundHandler?]
    let strategy: LoadBalancing
    /// Whether calls pick an instance under the pool's lock, on the slow path.
    let isLocked: Bool
    /// The route's service's pool: which instances serve, and the rotation.
    let pool: ServiceRegistry.Pool
    /// The route's policy.
    let policy: PolicyCell
    /// The route's request counter.
    let requests: any TelemetryCounter

    init(route: Route, slots: [ServiceRegistry.Slot], strategy: LoadBalancing) {
        self.route = route
        self.pool = route.pool
        self.policy = route.policy
        self.requests = route.requests
        self.slots = slots
        self.handlers = slots.indices.map { index in
            route.handlers.indices.contains(index) ? route.handlers[index] : nil
        }
        self.strategy = strategy
        self.isLocked = false
    }

    /// Picks a serving instance without a lock (see
    /// ``ServiceRegistry/pickIndex(from:slots:strategy:)``) and counts a request outstanding on
    /// it.
    /// - Returns: The instance's index, or `nil` when none serves.
    @inline(__always)
    func acquire(_ registry: ServiceRegistry) -> Int? {
        guard let index = registry.pickIndex(from: self.pool, slots: self.slots, strategy: self.strategy) else {
            return nil
        }
        self.slots[index].outstanding.wrappingAdd(1, ordering: .relaxed)
        return index
    }

    /// Counts the request on instance `index` out.
    @inline(__always)
    func release(_ index: Int) {
        self.slots[index].outstanding.wrappingSubtract(1, ordering: .relaxed)
    }

    /// A route whose calls all take the slow path.
    init(locked route: Route) {
        self.route = route
        self.pool = route.pool
        self.policy = route.policy
        self.requests = route.requests
        self.slots = []
        self.handlers = []
        self.strategy = .roundRobin
        self.isLocked = true
    }
}

/// The routes of one ``RequestClient``, each resolved once: the route and whether the client may
/// use it (the caller declared the route's service as a dependency).
///
/// Before the host runs, routes can still change, and every call looks its route up in the
/// router's table under its lock. Once the host has started, the routes are fixed: the first call
/// of a client builds the client's own table of every route, once, and every later call finds its
/// route there with one atomic load and a probe of an array keyed by the request type, with no
/// lock. What can change while the host runs is read on each call: the route's policy (one atomic
/// flag) and which instances serve (one atomic word per service).
@usableFromInline
final class ClientRoutes: Sendable {
    @usableFromInline let router: RequestRouter
    /// The calling service, or `nil` for the host's own client.
    @usableFromInline let caller: ServiceName?
    /// The services the caller may reach; `nil` for every service.
    let allowed: [ServiceName]?
    /// The client's table, owned here from when it is built for as long as the client lives:
    /// it is built once and never replaced.
    private let owner = Lock<ClientRouteTable?>(nil)
    /// The same table, published (releasing) once ``owner`` holds it, for calls to read
    /// (acquiring) without taking the lock. Unmanaged, and safe to take unretained: ``owner``
    /// keeps the table alive as long as this object, which every caller holds, and never lets
    /// it go. (`AtomicLazyReference.load()` would do the same, but it is not inlinable: each call
    /// instantiates its generic metadata, which costs more than the rest of the lookup.)
    private let published = Atomic<Unmanaged<ClientRouteTable>?>(nil)

    init(router: RequestRouter, caller: ServiceName?, allowed: [ServiceName]?) {
        self.router = router
        self.caller = caller
        self.allowed = allowed
    }

    /// Looks `key` up in the client's table, built on the first call once the host runs.
    /// - Returns: `nil` before the host runs; otherwise the lookup's result (`nil` inside when
    ///   no service handles the type).
    @inline(__always)
    func lookUp(_ key: ObjectIdentifier) -> (route: RunningRoute, isAllowed: Bool)?? {
        if let table = self.published.load(ordering: .acquiring) {
            return .some(table.takeUnretainedValue().route(for: key))
        }
        guard let table = self.build() else { return nil }
        return .some(table.route(for: key))
    }

    /// The prelude of a call by this client: ``RequestRouter/begin(_:deadline:client:)``.
    @usableFromInline
    func begin(_ type: any ServiceRequest.Type, deadline: Deadline?) throws(RequestError) -> RequestRouter.Call {
        try self.router.begin(type, deadline: deadline, client: self)
    }

    /// The epilogue of a call that began: ``RequestRouter/end(_:)``.
    @usableFromInline
    func end(_ call: RequestRouter.Call) {
        self.router.end(call)
    }

    /// ``RequestRouter/failure(_:handlerError:)``.
    @usableFromInline
    func failure(_ call: RequestRouter.Call, handlerError error: any Error) -> RequestError {
        self.router.failure(call, handlerError: error)
    }

    /// The slow path of a call by this client: ``RequestRouter/dispatch(_:call:caller:)``.
    @usableFromInline
    func dispatch<R: ServiceRequest>(_ request: R, call: RequestRouter.Call) async throws(RequestError) -> R.Response {
        try await self.router.dispatch(request, call: call, caller: self.caller)
    }

    private func build() -> ClientRouteTable? {
        self.owner.withLock { owner -> ClientRouteTable? in
            if let table = owner { return table }
            guard let routes = self.router.runningRoutes() else { return nil }
            let table = ClientRouteTable(routes: routes, allowed: self.allowed)
            owner = table
            self.published.store(Unmanaged.passUnretained(table), ordering: .releasing)
            return table
        }
    }
}

/// A client's resolved routes: an open-addressed array keyed by the request type's identity.
final class ClientRouteTable: Sendable {
    /// The request types' identities, 0 for an empty place.
    private let keys: [UInt]
    /// The route of the type at the same place.
    private let routes: [RunningRoute?]
    /// Whether the client declared the route's service, at the same place.
    private let allowed: [Bool]
    private let mask: Int

    init(routes: [ObjectIdentifier: RunningRoute], allowed: [ServiceName]?) {
        var capacity = 4
        while capacity < routes.count * 2 { capacity *= 2 }
        var keys = [UInt](repeating: 0, count: capacity)
        var places = [RunningRoute?](repeating: nil, count: capacity)
        var permitted = [Bool](repeating: false, count: capacity)
        for (key, route) in routes {
            let bits = UInt(bitPattern: key)
            var index = Self.hash(bits) & (capacity - 1)
            while keys[index] != 0 { index = (index + 1) & (capacity - 1) }
            keys[index] = bits
            places[index] = route
            permitted[index] = allowed.map { $0.contains(route.route.service) } ?? true
        }
        self.keys = keys
        self.routes = places
        self.allowed = permitted
        self.mask = capacity - 1
    }

    /// The route of a request type, if any service handles it, and whether the client may use it.
    @inline(__always)
    func route(for key: ObjectIdentifier) -> (route: RunningRoute, isAllowed: Bool)? {
        let bits = UInt(bitPattern: key)
        var index = Self.hash(bits) & self.mask
        while true {
            let found = self.keys[index]
            if found == bits, let route = self.routes[index] { return (route, self.allowed[index]) }
            if found == 0 { return nil }
            index = (index + 1) & self.mask
        }
    }

    /// Type metadata is at least 16-byte aligned: drop the low bits, fold in higher ones.
    @inline(__always)
    private static func hash(_ bits: UInt) -> Int {
        Int(bitPattern: (bits &>> 4) ^ (bits &>> 16))
    }
}

/// The routes of a running host, by request type.
final class RunningRoutes: Sendable {
    let routes: [ObjectIdentifier: RunningRoute]

    init(routes: [ObjectIdentifier: RunningRoute]) {
        self.routes = routes
    }
}

/// Delivers requests: finds the route, checks the caller, picks an instance, applies the route's
/// policy and deadline, and calls the handler directly on the instance's actor.
@usableFromInline
final class RequestRouter: Sendable {
    private let routes = Lock<[ObjectIdentifier: Route]>([:])
    /// The routes as the host runs them, set once when it has started.
    private let running = AtomicLazyReference<RunningRoutes>()
    let registry: ServiceRegistry
    let tracker: WorkTracker
    let clock: any Clock<Duration>
    let reader: ClockReader
    let telemetry: any Telemetry
    /// Whether spans are started: ``/KeelCore/Telemetry/recordsSpans``.
    let recordsSpans: Bool
    /// Whether request counts and latencies are recorded: any telemetry but ``/KeelCore/NoOpTelemetry``.
    let recordsMetrics: Bool
    let random: RandomSource
    /// The fault injector of a test, consulted once per attempt, in `invoke`.
    let faults: (any FaultInjecting)?

    init(
        registry: ServiceRegistry,
        tracker: WorkTracker,
        clock: any Clock<Duration>,
        telemetry: any Telemetry,
        random: RandomSource,
        faults: (any FaultInjecting)? = nil
    ) {
        self.registry = registry
        self.tracker = tracker
        self.clock = clock
        self.reader = ClockReader(clock)
        self.telemetry = telemetry
        self.recordsSpans = telemetry.recordsSpans
        self.recordsMetrics = telemetry.recordsMetrics
        self.random = random
        self.faults = faults
    }

    func route(for key: ObjectIdentifier) -> Route? {
        self.routes.withLock { $0[key] }
    }

    /// Changes the routes; only before ``startRunning()``.
    func updateRoutes<T, Failure: Error>(
        _ body: (inout [ObjectIdentifier: Route]) throws(Failure) -> T
    ) throws(Failure) -> T {
        try self.routes.withLock { (routes) throws(Failure) -> T in
            precondition(self.running.load() == nil, "the routes of a running host do not change")
            return try body(&routes)
        }
    }

    /// Every route's policy cell, for ``ServiceHost/setPolicy(_:for:)``: a policy may change at
    /// any time.
    func policyCells() -> [(key: ObjectIdentifier, service: ServiceName, cell: PolicyCell)] {
        self.routes.withLock { routes in routes.map { ($0.key, $0.value.service, $0.value.policy) } }
    }

    /// Fixes the routes as they are, once every instance has registered its handlers: from now on
    /// calls resolve their routes once per client and pick instances without a lock.
    func startRunning() {
        let routes = self.routes.withLock { $0 }
        var running: [ObjectIdentifier: RunningRoute] = [:]
        for (key, route) in routes {
            let (slots, strategy) = self.registry.slots(of: route.pool)
            // More than 64 instances: the serving mask cannot say which serve, so calls keep
            // taking the pool's lock (`pick(from:)`).
            running[key] =
                slots.count <= 64
                ? RunningRoute(route: route, slots: slots, strategy: strategy) : RunningRoute(locked: route)
        }
        _ = self.running.storeIfNil(RunningRoutes(routes: running))
    }

    /// The routes as the host runs them; `nil` before it has started.
    func runningRoutes() -> [ObjectIdentifier: RunningRoute]? {
        self.running.load()?.routes
    }

    /// One call in progress: what the non-generic prelude found and set up, for the generic
    /// core to use and the epilogue to release.
    @usableFromInline
    struct Call: Sendable {
        /// The route, as the host runs it.
        @usableFromInline let running: RunningRoute
        /// On the fast path (no policy, no deadline), the index of the chosen instance in
        /// `running`; -1 when the call goes through ``RequestRouter/dispatch(_:call:caller:)``.
        @usableFromInline let index: Int
        @usableFromInline let context: TraceContext
        /// The call's span, when the telemetry records spans.
        @usableFromInline let span: (any TelemetrySpan)?
        let started: Duration

        var route: Route { self.running.route }
    }

    /// The non-generic prelude of a call: finds the route, checks the caller, counts the call in,
    /// makes its trace context and span, and on the fast path picks the instance.
    @usableFromInline
    func begin(
        _ type: any ServiceRequest.Type,
        deadline: Deadline?,
        client: ClientRoutes
    ) throws(RequestError) -> Call {
        let running = try self.route(for: type, client: client)
        let current = TraceContext.current
        guard self.tracker.enter(nested: current?.isInHandler ?? false) else {
            throw RequestError(
                code: .shuttingDown,
                request: running.route.requestName,
                service: running.route.service,
                message: "the host is shutting down and takes no new requests"
            )
        }
        if Task.isCancelled {
            self.tracker.leave()
            throw self.cancelled(running.route)
        }
        var context: TraceContext
        if let current {
            context = current.makeChild(using: self.random)
        } else {
            context = .makeRoot(using: self.random)
        }
        context.isInHandler = true
        if let deadline {
            context.deadline = deadline.earliest(context.deadline)
        }
        if self.recordsMetrics { running.requests.increment(by: 1) }
        let span =
            self.recordsSpans
            ? self.telemetry.startSpan(running.route.spanName, context: context, kind: .server) : nil
        // A tracer may give its span ids of its own: the handler runs under those.
        if let span { context.adoptIDs(of: span.context) }
        let started = self.recordsMetrics ? self.reader.now() : .zero
        // While a test injects request faults, every attempt goes through `invoke`, which asks.
        // A span goes through `dispatch` too, which binds the telemetry's own current span (the fast
        // path does not: the branch alone costs it two task allocations per call).
        guard
            span == nil && !running.isLocked && context.deadline == nil && running.policy.isEmpty
                && self.faults?.isInjectingRequestFaults != true
        else {
            return Call(running: running, index: -1, context: context, span: span, started: started)
        }
        guard let index = running.acquire(self.registry) else {
            self.end(Call(running: running, index: -1, context: context, span: span, started: started))
            throw self.fail(route: running.route, span: span, self.noHealthyInstance(running.route))
        }
        guard running.handlers[index] != nil else {
            self.end(Call(running: running, index: index, context: context, span: span, started: started))
            throw self.fail(
                route: running.route,
                span: span,
                RequestError(
                    code: .noHandler,
                    request: running.route.requestName,
                    service: running.route.service,
                    message:
                        "instance \(running.slots[index].id) registered no handler for \(running.route.requestName)"
                )
            )
        }
        return Call(running: running, index: index, context: context, span: span, started: started)
    }

    private func noHealthyInstance(_ route: Route) -> RequestError {
        RequestError(
            code: .noHealthyInstance,
            request: route.requestName,
            service: route.service,
            message: "no instance of \(route.service) is live and ready"
        )
    }

    /// The route of requests of `type` for `client`: from the client's own table once the host
    /// runs, from the router's table under its lock before.
    private func route(for type: any ServiceRequest.Type, client: ClientRoutes) throws(RequestError) -> RunningRoute {
        let key = ObjectIdentifier(type)
        if let found = client.lookUp(key) {
            // Resolved once for this client: no lock, no dictionary.
            guard let (route, isAllowed) = found else { throw self.noHandler(type) }
            guard isAllowed else { throw self.undeclared(route.route, caller: client.caller) }
            return route
        }
        guard let route = self.route(for: key) else { throw self.noHandler(type) }
        if let allowed = client.allowed, !allowed.contains(route.service) {
            throw self.undeclared(route, caller: client.caller)
        }
        return RunningRoute(locked: route)
    }

    private func noHandler(_ type: any ServiceRequest.Type) -> RequestError {
        RequestError(code: .noHandler, request: type.name, message: "no registered service handles \(type.name)")
    }

    private func undeclared(_ route: Route, caller: ServiceName?) -> RequestError {
        RequestError(
            code: .undeclaredDependency,
            request: route.requestName,
            service: route.service,
            message: "\(caller?.description ?? "caller") does not declare \(route.service) as a dependency"
        )
    }

    /// The epilogue of every call that began: counts it out and ends its span.
    @usableFromInline
    func end(_ call: Call) {
        if call.index >= 0 {
            call.running.release(call.index)
        }
        if self.recordsMetrics {
            call.route.latency.record(self.reader.now() - call.started)
        }
        call.span?.end()
        self.tracker.leave()
    }

    /// What a fast-path handler's error becomes for the caller, counted as a failure.
    @usableFromInline
    func failure(_ call: Call, handlerError error: any Error) -> RequestError {
        // The fast path always has an instance.
        let slot = call.running.slots[call.index]
        let forwards = call.running.handlers[call.index]?.forwardsRequestErrors ?? false
        return self.fail(
            route: call.route,
            span: call.span,
            self.handlerError(error, route: call.route, slot: slot, forwards: forwards)
        )
    }

    private func fail(route: Route, span: (any TelemetrySpan)?, _ error: RequestError) -> RequestError {
        route.failures.increment(by: 1)
        span?.recordError(error)
        return error
    }

    /// The slow path: a route policy or a deadline.
    @usableFromInline
    func dispatch<R: ServiceRequest>(
        _ request: R,
        call: Call,
        caller: ServiceName?
    ) async throws(RequestError) -> R.Response {
        do throws(RequestError) {
            return try await TraceContext.bind(call.context) { () async throws(RequestError) -> R.Response in
                guard let span = call.span else {
                    return try await self.dispatch(
                        request,
                        route: call.route,
                        caller: caller,
                        deadline: call.context.deadline
                    )
                }
                return try await span.withCurrent { () async throws(RequestError) -> R.Response in
                    try await self.dispatch(request, route: call.route, caller: caller, deadline: call.context.deadline)
                }
            }
        } catch {
            throw self.fail(route: call.route, span: call.span, error)
        }
    }

    private func dispatch<R: ServiceRequest>(
        _ request: R,
        route: Route,
        caller: ServiceName?,
        deadline: Deadline?
    ) async throws(RequestError) -> R.Response {
        guard let deadline else {
            if route.policy.isEmpty {
                return try await self.invoke(request, route: route)
            }
            return try await self.applyPolicy(request, route: route, caller: caller)
        }
        guard let remaining = deadline.remaining(onAny: self.clock) else {
            // Running the call unbounded would drop the caller's deadline without a word.
            throw RequestError(
                code: .invalidDeadline,
                request: R.name,
                service: route.service,
                message:
                    "the deadline \(deadline) was made on another kind of clock than the host's (\(type(of: self.clock)))"
            )
        }
        guard remaining > .zero else {
            throw RequestError(
                code: .deadlineExceeded,
                request: R.name,
                service: route.service,
                message: "the deadline had passed before the call"
            )
        }
        // Racing the call against the deadline needs the call in a child task; without a
        // deadline the call runs in the caller's task with no task created.
        let clock = self.clock
        let exceeded = RequestError(
            code: .deadlineExceeded,
            request: R.name,
            service: route.service,
            message: "the deadline passed after \(remaining)"
        )
        let result: Result<R.Response, RequestError> = await withTaskGroup(
            of: Result<R.Response, RequestError>?.self
        ) { group in
            group.addTask {
                do throws(RequestError) {
                    return .success(try await self.applyPolicy(request, route: route, caller: caller))
                } catch {
                    return .failure(error)
                }
            }
            group.addTask {
                do {
                    try await clock.sleep(for: remaining)
                    return .failure(exceeded)
                } catch {
                    // Cancelled: the call finished first, or the caller was cancelled. Either
                    // way the call's own result decides.
                    return nil
                }
            }
            var outcome: Result<R.Response, RequestError>?
            while outcome == nil, let next = await group.next() {
                outcome = next
            }
            group.cancelAll()
            // The call child never yields `nil`, so the loop ends with an outcome.
            return outcome!
        }
        if case .failure(let error) = result, !Task.isCancelled, deadline.hasPassed(onAny: self.clock),
            error.code == .cancelled || (error.underlying as? RequestError)?.code == .deadlineExceeded
        {
            // The call failed because the deadline passed (a nested call inherited it and fired
            // first): report it as what it is.
            throw exceeded
        }
        return try result.get()
    }

    private func applyPolicy<R: ServiceRequest>(
        _ request: R,
        route: Route,
        caller: ServiceName?
    ) async throws(RequestError) -> R.Response {
        guard let policy = route.policy.value else {
            return try await self.invoke(request, route: route)
        }
        let descriptor = RouteDescriptor(request: R.name, service: route.service, caller: caller)
        do {
            return try await policy.execute(descriptor) { () async throws(RequestError) -> R.Response in
                try await self.invoke(request, route: route)
            }
        } catch let error as RequestError {
            throw error
        } catch {
            if error is CancellationError && Task.isCancelled {
                throw self.cancelled(route)
            }
            if error is TimeoutError {
                throw RequestError(
                    code: .deadlineExceeded,
                    request: R.name,
                    service: route.service,
                    message: "the route's timeout ran out",
                    underlying: error
                )
            }
            let (code, message): (RequestError.Code, String) =
                switch error {
                case is CircuitBreakerError: (.circuitOpen, "a circuit breaker on the route refused the call")
                case is BulkheadError: (.bulkheadFull, "a bulkhead on the route is full")
                case is RateLimiterError: (.rateLimited, "a rate limiter on the route refused the call")
                default: (.rejected, "the route's policy refused the call")
                }
            throw RequestError(code: code, request: R.name, service: route.service, message: message, underlying: error)
        }
    }

    /// One attempt: pick a serving instance and call its handler on its actor.
    private func invoke<R: ServiceRequest>(_ request: R, route: Route) async throws(RequestError) -> R.Response {
        let (slot, erased) = try self.resolve(route: route)
        // The route is keyed by `ObjectIdentifier(R.self)`, so its handlers are `BoundHandler<R>`.
        let handler = unsafeDowncast(erased, to: BoundHandler<R>.self)
        // `dispatch` has bound the call's context around the whole attempt.
        slot.outstanding.wrappingAdd(1, ordering: .relaxed)
        defer { slot.outstanding.wrappingSubtract(1, ordering: .relaxed) }
        if let faults = self.faults {
            try await self.inject(faults, into: R.self, route: route, slot: slot)
        }
        do {
            return try await handler.call(request)
        } catch {
            throw self.handlerError(error, route: route, slot: slot, forwards: erased.forwardsRequestErrors)
        }
    }

    /// Picks a serving instance of the route's service and its handler.
    private func resolve(route: Route) throws(RequestError) -> (ServiceRegistry.Slot, AnyBoundHandler) {
        guard let slot = self.registry.pick(from: route.pool) else { throw self.noHealthyInstance(route) }
        guard route.handlers.indices.contains(slot.id.index), let handler = route.handlers[slot.id.index] else {
            throw RequestError(
                code: .noHandler,
                request: route.requestName,
                service: route.service,
                message: "instance \(slot.id) registered no handler for \(route.requestName)"
            )
        }
        return (slot, handler)
    }

    /// What a handler's error becomes for the caller: a forwarding handler's ``RequestError`` as
    /// it is.
    private func handlerError(
        _ error: any Error,
        route: Route,
        slot: ServiceRegistry.Slot,
        forwards: Bool
    ) -> RequestError {
        if forwards, let error = error as? RequestError {
            return error
        }
        if error is CancellationError && Task.isCancelled {
            return self.cancelled(route)
        }
        return RequestError(
            code: .handlerFailed,
            request: route.requestName,
            service: route.service,
            message: "the handler on \(slot.id) threw",
            underlying: error
        )
    }

    /// The caller's task was cancelled.
    private func cancelled(_ route: Route) -> RequestError {
        RequestError(code: .cancelled, request: route.requestName, service: route.service, message: "caller cancelled")
    }
}
