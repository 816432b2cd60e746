import Keel
import KeelCore
import Synchronization

/// Test doubles for the host, registry, request-channel and tracing suites: services that record
/// what happens to them, requests, an event, a route policy, and the synchronisation primitives
/// the tests use instead of sleeping (a gate, an arrival counter).
///
/// Everything is nested here so that it cannot clash with the bus suites' fixtures.
enum HostFixtures {}

// MARK: - Synchronisation

extension HostFixtures {
    /// An ordered log of what happened, shared by services and the test.
    actor Log {
        private(set) var entries: [String] = []

        func append(_ entry: String) {
            self.entries.append(entry)
        }
    }

    /// A thread-safe list of values recorded from synchronous code (handlers, policies).
    final class Values<Value: Sendable>: Sendable {
        private let storage = Lock<[Value]>([])

        func append(_ value: Value) {
            self.storage.withLock { $0.append(value) }
        }

        var all: [Value] {
            self.storage.withLock { $0 }
        }
    }

    /// A gate that suspends its waiters until it is opened. Waiting is cancellation-aware: a
    /// cancelled waiter leaves with `CancellationError`, also when cancelled before it parked.
    final class Gate: Sendable {
        private struct State {
            var isOpen = false
            var nextID: UInt64 = 0
            var waiters: [UInt64: CheckedContinuation<Void, any Error>] = [:]
        }
        private let state = Lock(State())

        /// Suspends until the gate opens.
        /// - Throws: `CancellationError` when the waiting task is cancelled first.
        func wait() async throws {
            let id = self.state.withLock { state in
                defer { state.nextID += 1 }
                return state.nextID
            }
            try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                    // Checked under the lock that `onCancel` takes, so an early cancellation is seen.
                    let outcome = self.state.withLock { state -> Result<Void, any Error>? in
                        if state.isOpen { return .success(()) }
                        if Task.isCancelled { return .failure(CancellationError()) }
                        state.waiters[id] = continuation
                        return nil
                    }
                    if let outcome { continuation.resume(with: outcome) }
                }
            } onCancel: {
                let waiter = self.state.withLock { $0.waiters.removeValue(forKey: id) }
                waiter?.resume(throwing: CancellationError())
            }
        }

        /// Opens the gate: resumes every waiter, and lets later waiters through at once.
        func open() {
            let waiters = self.state.withLock { state in
                state.isOpen = true
                defer { state.waiters.removeAll() }
                return Array(state.waiters.values)
            }
            for waiter in waiters { waiter.resume() }
        }
    }

    /// Counts arrivals and lets a task wait until a number of them have happened: the handshake
    /// by which a test learns that a handler or a start has been entered.
    final class Arrivals: Sendable {
        private struct Waiter {
            var target: Int
            var continuation: CheckedContinuation<Void, Never>
        }
        private struct State {
            var count = 0
            var nextID: UInt64 = 0
            var waiters: [UInt64: Waiter] = [:]
        }
        private let state = Lock(State())

        /// How many arrivals so far.
        var count: Int {
            self.state.withLock { $0.count }
        }

        /// Records one arrival and resumes the waiters whose target it reaches.
        func arrive() {
            let ready = self.state.withLock { state -> [CheckedContinuation<Void, Never>] in
                state.count += 1
                let due = state.waiters.filter { $0.value.target <= state.count }
                for id in due.keys { state.waiters.removeValue(forKey: id) }
                return due.values.map(\.continuation)
            }
            for continuation in ready { continuation.resume() }
        }

        /// Suspends until `target` arrivals have happened, or the task is cancelled.
        func wait(for target: Int) async {
            let id = self.state.withLock { state in
                defer { state.nextID += 1 }
                return state.nextID
            }
            await withTaskCancellationHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let resumeNow = self.state.withLock { state -> Bool in
                        if state.count >= target || Task.isCancelled { return true }
                        state.waiters[id] = Waiter(target: target, continuation: continuation)
                        return false
                    }
                    if resumeNow { continuation.resume() }
                }
            } onCancel: {
                let waiter = self.state.withLock { $0.waiters.removeValue(forKey: id) }
                waiter?.continuation.resume()
            }
        }
    }

    /// `entries` cut into consecutive groups the sizes of those in `expected`, each as a set (any
    /// entries left over form one more group): for comparing a log whose entries within a group,
    /// such as the starts of services that start concurrently, may come in any order.
    static func grouped(_ entries: [String], like expected: [Set<String>]) -> [Set<String>] {
        var rest = entries[...]
        var groups: [Set<String>] = []
        for group in expected {
            groups.append(Set(rest.prefix(group.count)))
            rest = rest.dropFirst(group.count)
        }
        if !rest.isEmpty { groups.append(Set(rest)) }
        return groups
    }

    /// Runs `body`, a request, and returns the ``RequestError`` it threw, or `nil` when it
    /// succeeded. (`body` is untyped because closures do not infer typed throws from context; a
    /// request only throws `RequestError`, so anything else is reported as a rejection that
    /// carries it, which no test expects.)
    static func failure<T>(_ body: () async throws -> T) async -> RequestError? {
        do {
            _ = try await body()
            return nil
        } catch let error as RequestError {
            return error
        } catch {
            return RequestError(
                code: .rejected,
                request: "?",
                message: "not a RequestError: \(error)",
                underlying: error
            )
        }
    }
}

// MARK: - Lifecycle services

extension HostFixtures {
    /// A service's name and dependencies, as a type, so that one generic service can play many.
    protocol Spec: SendableMetatype {
        static var name: ServiceName { get }
        static var dependencies: [ServiceName] { get }
    }

    enum Database: Spec {
        static let name: ServiceName = "database"
        static let dependencies: [ServiceName] = []
    }

    enum Cache: Spec {
        static let name: ServiceName = "cache"
        static let dependencies: [ServiceName] = []
    }

    enum Users: Spec {
        static let name: ServiceName = "users"
        static let dependencies: [ServiceName] = ["database", "cache"]
    }

    enum Orders: Spec {
        static let name: ServiceName = "orders"
        static let dependencies: [ServiceName] = ["users"]
    }

    enum Payments: Spec {
        static let name: ServiceName = "payments"
        static let dependencies: [ServiceName] = ["users"]
    }

    enum Billing: Spec {
        static let name: ServiceName = "billing"
        static let dependencies: [ServiceName] = ["orders"]
    }

    /// Declares the worker as a dependency.
    enum Front: Spec {
        static let name: ServiceName = "front"
        static let dependencies: [ServiceName] = ["worker"]
    }

    /// Declares no dependency.
    enum Loner: Spec {
        static let name: ServiceName = "loner"
        static let dependencies: [ServiceName] = []
    }

    /// A service that logs `start name#index` and `stop name#index`, running hooks that tests use
    /// to block or fail a start or a stop.
    actor Node<S: Spec>: ServiceActor {
        static var name: ServiceName { S.name }
        static var dependencies: [ServiceName] { S.dependencies }

        typealias Hook = @Sendable () async throws -> Void

        private let log: Log
        private let onStart: Hook
        private let onStop: Hook
        private var id: InstanceID?

        init(log: Log, onStart: @escaping Hook = {}, onStop: @escaping Hook = {}) {
            self.log = log
            self.onStart = onStart
            self.onStop = onStop
        }

        func start(_ environment: ServiceEnvironment) async throws {
            self.id = environment.instanceID
            try await self.onStart()
            await self.log.append("start \(environment.instanceID)")
        }

        func stop() async throws {
            await self.log.append("stop \(self.id.map(\.description) ?? "\(Self.name)#?")")
            try await self.onStop()
        }
    }

    /// Why a start or stop hook refused.
    struct Refusal: Error, Hashable {
        var reason: String
    }
}

// MARK: - Requests and the worker

extension HostFixtures {
    /// The worker's request; its response says which instance handled it.
    struct Work: ServiceRequest {
        typealias Response = WorkReply
        var value: Int
    }

    /// Which worker instance handled a ``Work`` request, and its value.
    struct WorkReply: Codable, Sendable, Hashable {
        var instance: Int
        var value: Int
    }

    /// A request no service handles.
    struct Unrouted: ServiceRequest {
        typealias Response = Int
    }

    /// What a worker's behaviour throws to fail a request.
    struct WorkFailure: Error, Hashable {
        var reason: String
    }

    /// A service with any number of instances that handles ``Work``. Each instance runs the
    /// behaviour it was given before replying, counts what it handled, and reports the health it
    /// is told to.
    actor Worker: ServiceActor {
        static let name: ServiceName = "worker"

        typealias Behaviour = @Sendable (Work) async throws -> Void

        private let behaviour: Behaviour
        private let log: Log?
        private var report: HealthReport
        private var id: InstanceID?
        /// How many requests this instance handled successfully.
        private(set) var handled = 0

        init(health: HealthReport = .healthy, log: Log? = nil, behaviour: @escaping Behaviour = { _ in }) {
            self.report = health
            self.log = log
            self.behaviour = behaviour
        }

        func setHealth(_ report: HealthReport) {
            self.report = report
        }

        func health() -> HealthReport {
            self.report
        }

        func start(_ environment: ServiceEnvironment) async throws {
            self.id = environment.instanceID
        }

        func stop() async throws {
            await self.log?.append("stop \(self.id.map(\.description) ?? "worker#?")")
        }

        nonisolated func registerHandlers(_ handlers: inout RequestHandlers<Worker>) {
            handlers.on(Work.self) { worker, request in
                try await worker.behaviour(request)
                worker.handled += 1
                await worker.log?.append("handled \(request.value)")
                return WorkReply(instance: worker.id?.index ?? -1, value: request.value)
            }
        }
    }

    /// Another service named `worker`, for name clashes.
    actor WorkerImpostor: ServiceActor {
        static let name: ServiceName = "worker"
    }

    /// A service that also handles ``Work``, for route clashes.
    actor Poacher: ServiceActor {
        static let name: ServiceName = "poacher"

        nonisolated func registerHandlers(_ handlers: inout RequestHandlers<Poacher>) {
            handlers.on(Work.self) { _, request in WorkReply(instance: 0, value: request.value) }
        }
    }

    /// A service whose health checks hang on a gate once told to.
    actor SlowHealth: ServiceActor {
        static let name: ServiceName = "slow"
        private let gate: Gate
        private var hangs = false

        init(gate: Gate) {
            self.gate = gate
        }

        func hangHealthChecks() {
            self.hangs = true
        }

        func health() async -> HealthReport {
            guard self.hangs else { return .healthy }
            do {
                try await self.gate.wait()
            } catch {
                return .dead("cancelled")
            }
            return .healthy
        }
    }

    /// A request only ``PartialPoacher`` handles.
    struct Fresh: ServiceRequest {
        typealias Response = Int
    }

    /// A service that handles a request nobody else does, then one that another service already
    /// handles: its registration must be refused as a whole.
    actor PartialPoacher: ServiceActor {
        static let name: ServiceName = "partial-poacher"

        nonisolated func registerHandlers(_ handlers: inout RequestHandlers<PartialPoacher>) {
            handlers.on(Fresh.self) { _, _ in 1 }
            handlers.on(Work.self) { _, request in WorkReply(instance: 0, value: request.value) }
        }
    }

    /// A service that declares two handlers for one request type.
    actor Doubler: ServiceActor {
        static let name: ServiceName = "doubler"

        nonisolated func registerHandlers(_ handlers: inout RequestHandlers<Doubler>) {
            handlers.on(Work.self) { _, request in WorkReply(instance: 0, value: request.value) }
            handlers.on(Work.self) { _, request in WorkReply(instance: 0, value: request.value * 2) }
        }
    }

    /// Asks a ``Caller`` to send ``Work`` on to the worker, optionally with its own timeout.
    struct Relay<S: Spec>: ServiceRequest {
        typealias Response = WorkReply
        var value: Int
        var nestedTimeout: Duration?

        init(value: Int, nestedTimeout: Duration? = nil) {
            self.value = value
            self.nestedTimeout = nestedTimeout
        }
    }

    /// A service that relays ``Relay`` requests to the worker through its environment's request
    /// client, running `onHandle` in the handler first (to observe the handler's context).
    actor Caller<S: Spec>: ServiceActor {
        static var name: ServiceName { S.name }
        static var dependencies: [ServiceName] { S.dependencies }

        private let onHandle: @Sendable () -> Void
        private var environment: ServiceEnvironment?

        init(onHandle: @escaping @Sendable () -> Void = {}) {
            self.onHandle = onHandle
        }

        func start(_ environment: ServiceEnvironment) async throws {
            self.environment = environment
        }

        nonisolated func registerHandlers(_ handlers: inout RequestHandlers<Caller>) {
            handlers.on(Relay<S>.self) { caller, relay in
                caller.onHandle()
                guard let environment = caller.environment else { throw Refusal(reason: "not started") }
                if let timeout = relay.nestedTimeout {
                    return try await environment.requests.send(Work(value: relay.value), timeout: timeout)
                }
                return try await environment.send(Work(value: relay.value))
            }
        }
    }
}

// MARK: - Events

extension HostFixtures {
    /// Asks the ``Announcer`` to publish ``Announced``; the response is how many subscriptions
    /// matched.
    struct Announce: ServiceRequest {
        typealias Response = Int
        var note: String
    }

    /// The event the ``Announcer`` publishes.
    struct Announced: Event {
        static let topic = "hostfixtures.announced"
        var note: String
    }

    /// Handles ``Announce`` by publishing ``Announced`` through its environment.
    actor Announcer: ServiceActor {
        static let name: ServiceName = "announcer"

        private var environment: ServiceEnvironment?

        func start(_ environment: ServiceEnvironment) async throws {
            self.environment = environment
        }

        nonisolated func registerHandlers(_ handlers: inout RequestHandlers<Announcer>) {
            handlers.on(Announce.self) { announcer, request in
                guard let environment = announcer.environment else { throw Refusal(reason: "not started") }
                let receipt = try await environment.publish(Announced(note: request.note))
                return receipt.subscribers
            }
        }
    }

    /// Subscribes to ``Announced`` at start; its handler records the trace context it runs with,
    /// then arrives.
    actor Listener: ServiceActor {
        static let name: ServiceName = "listener"

        private let heard: Values<TraceContext?>
        private let arrivals: Arrivals

        init(heard: Values<TraceContext?>, arrivals: Arrivals) {
            self.heard = heard
            self.arrivals = arrivals
        }

        func start(_ environment: ServiceEnvironment) async throws {
            try environment.subscribe(to: Announced.self) { [heard, arrivals] _, _ in
                heard.append(TraceContext.current)
                arrivals.arrive()
            }
        }
    }
}

// MARK: - Route policy

extension HostFixtures {
    /// A route policy that records every route it runs and every failure its operation throws,
    /// and refuses every call when given a rejection.
    final class ProbePolicy: RoutePolicy {
        struct Rejection: Error, Hashable {
            var reason: String
        }

        private struct State {
            var routes: [RouteDescriptor] = []
            var failures: [any Error] = []
        }

        private let rejection: Rejection?
        private let state = Lock(State())

        init(rejecting rejection: Rejection? = nil) {
            self.rejection = rejection
        }

        /// The routes executed, in order.
        var routes: [RouteDescriptor] {
            self.state.withLock { $0.routes }
        }

        /// What the operation threw, in order.
        var failures: [any Error] {
            self.state.withLock { $0.failures }
        }

        func execute<Response: Sendable>(
            _ route: RouteDescriptor,
            operation: @escaping @Sendable () async throws -> Response
        ) async throws -> Response {
            self.state.withLock { $0.routes.append(route) }
            if let rejection { throw rejection }
            do {
                return try await operation()
            } catch {
                self.state.withLock { $0.failures.append(error) }
                throw error
            }
        }
    }
}
