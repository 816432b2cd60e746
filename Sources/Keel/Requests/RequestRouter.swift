import KeelCore
import KeelResilience
import Synchronization

/// The routes of a host: for each request type, the service that handles it, each instance's
/// handler, the route's policy and metrics.
final class Route: Sendable {
    let requestName: String
    let service: ServiceName
    let pool: ServiceRegistry.Pool
    let handlers: [(any AnyBoundHandler)?]
    let policy: (any RoutePolicy)?
    let spanName: String
    let requests: any TelemetryCounter
    let failures: any TelemetryCounter
    let latency: any TelemetryTimer

    init(
        requestName: String,
        service: ServiceName,
        pool: ServiceRegistry.Pool,
        handlers: [(any AnyBoundHandler)?],
        policy: (any RoutePolicy)?,
        telemetry: any Telemetry
    ) {
        self.requestName = requestName
        self.service = service
        self.pool = pool
        self.handlers = handlers
        self.policy = policy
        self.spanName = "\(service).\(requestName)"
        let dimensions = [("service", service.rawValue), ("request", requestName)]
        self.requests = telemetry.makeCounter(label: "keel.requests", dimensions: dimensions)
        self.failures = telemetry.makeCounter(label: "keel.requests.failed", dimensions: dimensions)
        self.latency = telemetry.makeTimer(label: "keel.requests.duration", dimensions: dimensions)
    }

    func with(
        handlers: [(any AnyBoundHandler)?]? = nil,
        policy: (any RoutePolicy)??,
        telemetry: any Telemetry
    )
        -> Route
    {
        Route(
            requestName: self.requestName,
            service: self.service,
            pool: self.pool,
            handlers: handlers ?? self.handlers,
            policy: policy ?? self.policy,
            telemetry: telemetry
        )
    }
}

/// Delivers requests: finds the route, checks the caller, picks an instance, applies the route's
/// policy and deadline, and calls the handler directly on the instance's actor.
@usableFromInline
final class RequestRouter: Sendable {
    private let routes = Lock<[ObjectIdentifier: Route]>([:])
    let registry: ServiceRegistry
    let tracker: WorkTracker
    let clock: any Clock<Duration>
    let reader: ClockReader
    let telemetry: any Telemetry
    let isRecording: Bool
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
        self.isRecording = !(telemetry is NoOpTelemetry)
        self.random = random
        self.faults = faults
    }

    func route(for key: ObjectIdentifier) -> Route? {
        self.routes.withLock { $0[key] }
    }

    func updateRoutes<T, Failure: Error>(
        _ body: (inout [ObjectIdentifier: Route]) throws(Failure) -> T
    ) throws(Failure) -> T {
        try self.routes.withLock { (routes) throws(Failure) -> T in try body(&routes) }
    }

    /// One call in progress: what the non-generic prelude found and set up, for the generic
    /// core to use and the epilogue to release.
    @usableFromInline
    struct Call: Sendable {
        let route: Route
        @usableFromInline let context: TraceContext
        let span: (any TelemetrySpan)?
        let started: Duration
        /// The chosen instance and its handler on the fast path (no policy, no deadline); `nil`
        /// when the call goes through ``RequestRouter/dispatch``.
        let slot: ServiceRegistry.Slot?
        @usableFromInline let handler: (any AnyBoundHandler)?
    }

    /// The non-generic prelude of a call: finds the route, checks the caller, counts the call in,
    /// makes its trace context and span, and on the fast path picks the instance.
    @usableFromInline
    func begin(
        _ type: any ServiceRequest.Type,
        deadline: Deadline?,
        caller: ServiceName?,
        allowed: [ServiceName]?
    ) throws(RequestError) -> Call {
        guard let route = self.route(for: ObjectIdentifier(type)) else {
            throw RequestError(
                code: .noHandler,
                request: type.name,
                message: "no registered service handles \(type.name)"
            )
        }
        if let allowed, !allowed.contains(route.service) {
            throw RequestError(
                code: .undeclaredDependency,
                request: route.requestName,
                service: route.service,
                message: "\(caller?.description ?? "caller") does not declare \(route.service) as a dependency"
            )
        }
        let current = TraceContext.current
        guard self.tracker.enter(nested: current?.isInHandler ?? false) else {
            throw RequestError(
                code: .shuttingDown,
                request: route.requestName,
                service: route.service,
                message: "the host is shutting down and takes no new requests"
            )
        }
        if Task.isCancelled {
            self.tracker.leave()
            throw self.cancelled(route)
        }
        var context = current?.makeChild(using: self.random) ?? .makeRoot(using: self.random)
        context.isInHandler = true
        if let deadline {
            context.deadline = deadline.earliest(context.deadline)
        }
        route.requests.increment(by: 1)
        let span =
            self.isRecording ? self.telemetry.startSpan(route.spanName, context: context, kind: .server) : nil
        let started = self.isRecording ? self.reader.now() : .zero
        var slot: ServiceRegistry.Slot?
        var handler: (any AnyBoundHandler)?
        // While a test injects request faults, every attempt goes through `invoke`, which asks.
        if route.policy == nil && context.deadline == nil && self.faults?.isInjectingRequestFaults != true {
            do throws(RequestError) {
                (slot, handler) = try self.resolve(route: route)
            } catch {
                self.end(Call(route: route, context: context, span: span, started: started, slot: nil, handler: nil))
                throw self.fail(route: route, span: span, error)
            }
            slot?.outstanding.wrappingAdd(1, ordering: .relaxed)
        }
        return Call(route: route, context: context, span: span, started: started, slot: slot, handler: handler)
    }

    /// The epilogue of every call that began: counts it out and ends its span.
    @usableFromInline
    func end(_ call: Call) {
        call.slot?.outstanding.wrappingSubtract(1, ordering: .relaxed)
        if let span = call.span {
            call.route.latency.record(self.reader.now() - call.started)
            span.end()
        }
        self.tracker.leave()
    }

    /// What a fast-path handler's error becomes for the caller, counted as a failure.
    @usableFromInline
    func failure(_ call: Call, handlerError error: any Error) -> RequestError {
        // The fast path always has a slot.
        self.fail(route: call.route, span: call.span, self.handlerError(error, route: call.route, slot: call.slot!))
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
                try await self.dispatch(request, route: call.route, caller: caller, deadline: call.context.deadline)
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
            if route.policy == nil {
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
        guard let policy = route.policy else {
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
        slot.outstanding.wrappingAdd(1, ordering: .relaxed)
        defer { slot.outstanding.wrappingSubtract(1, ordering: .relaxed) }
        if let faults = self.faults {
            try await self.inject(faults, into: R.self, route: route, slot: slot)
        }
        do {
            return try await handler.call(request)
        } catch {
            throw self.handlerError(error, route: route, slot: slot)
        }
    }

    /// Picks a serving instance of the route's service and its handler.
    private func resolve(route: Route) throws(RequestError) -> (ServiceRegistry.Slot, any AnyBoundHandler) {
        guard let slot = self.registry.pick(from: route.pool) else {
            throw RequestError(
                code: .noHealthyInstance,
                request: route.requestName,
                service: route.service,
                message: "no instance of \(route.service) is live and ready"
            )
        }
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

    /// What a handler's error becomes for the caller.
    private func handlerError(_ error: any Error, route: Route, slot: ServiceRegistry.Slot) -> RequestError {
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
