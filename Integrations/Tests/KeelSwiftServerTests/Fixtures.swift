import InMemoryLogging
import Keel
import KeelCore
import KeelTesting
import Logging
import Synchronization

/// Test doubles for the lifecycle and end-to-end suites: a worker service, a service whose start
/// fails, a log, and the handshakes the tests use instead of sleeping (a gate, arrivals).
enum Fixtures {}

// MARK: - Synchronisation

extension Fixtures {
    /// An ordered log of what happened, shared by services and the test.
    actor Log {
        private(set) var entries: [String] = []

        func append(_ entry: String) {
            self.entries.append(entry)
        }
    }

    /// Suspends its waiters until it is opened. A cancelled waiter leaves with
    /// `CancellationError`, also when cancelled before it parked.
    final class Gate: Sendable {
        private struct State {
            var isOpen = false
            var nextID = 0
            var waiters: [Int: CheckedContinuation<Void, any Error>] = [:]
        }
        private let state = Mutex(State())

        func wait() async throws {
            let id = self.state.withLock { state in
                defer { state.nextID += 1 }
                return state.nextID
            }
            try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                    // Checked under the lock that `onCancel` takes, so that an early cancellation
                    // is seen.
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

        func open() {
            let waiters = self.state.withLock { state in
                state.isOpen = true
                defer { state.waiters.removeAll() }
                return Array(state.waiters.values)
            }
            for waiter in waiters { waiter.resume() }
        }
    }

    /// Counts arrivals and lets a task wait until a number of them have happened.
    final class Arrivals: Sendable {
        private struct State {
            var count = 0
            var nextID = 0
            var waiters: [Int: (target: Int, continuation: CheckedContinuation<Void, Never>)] = [:]
        }
        private let state = Mutex(State())

        var count: Int {
            self.state.withLock { $0.count }
        }

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
                        state.waiters[id] = (target, continuation)
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

    /// The ``RequestError`` that `body` threw, or `nil` when it succeeded.
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

// MARK: - Hosts and services

extension Fixtures {
    /// A host on `clock` with periodic health checks off and health checks unbounded, so that the
    /// only sleeper on the clock is the shutdown's drain timer.
    static func makeHost(
        clock: TestClock,
        shutdownTimeout: Duration = .seconds(10),
        telemetry: any Telemetry = NoOpTelemetry()
    ) -> ServiceHost {
        var configuration = TestHost.defaultConfiguration
        configuration.shutdownTimeout = shutdownTimeout
        configuration.healthCheckTimeout = nil
        return ServiceHost(
            configuration: configuration,
            clock: clock,
            telemetry: telemetry,
            random: RandomSource(seed: 11)
        )
    }

    /// A logger whose entries the test can read.
    static func makeLogger() -> (Logger, InMemoryLogHandler) {
        let handler = InMemoryLogHandler()
        var logger = Logger(label: "keel.integrations.tests") { _ in handler }
        logger.logLevel = .debug
        return (logger, handler)
    }

    /// The worker's request: its reply is its value.
    struct Work: ServiceRequest {
        typealias Response = Int
        var value: Int
    }

    /// A service that handles ``Work``, running its behaviour before it replies, and logs
    /// `start`, `handled <value>` and `stop`.
    actor Worker: ServiceActor {
        static let name: ServiceName = "worker"

        typealias Behaviour = @Sendable (Work) async throws -> Void

        private let log: Log
        private let behaviour: Behaviour

        init(log: Log, behaviour: @escaping Behaviour = { _ in }) {
            self.log = log
            self.behaviour = behaviour
        }

        func start(_ environment: ServiceEnvironment) async throws {
            await self.log.append("start worker")
        }

        func stop() async throws {
            await self.log.append("stop worker")
        }

        nonisolated func registerHandlers(_ handlers: inout RequestHandlers<Worker>) {
            handlers.on(Work.self) { worker, request in
                try await worker.behaviour(request)
                await worker.log.append("handled \(request.value)")
                return request.value
            }
        }
    }

    /// Why ``Broken`` refuses to start.
    struct Refusal: Error, Hashable {
        var reason: String
    }

    /// A service whose start throws ``Refusal``, and that logs its stop.
    actor Broken: ServiceActor {
        static let name: ServiceName = "broken"
        static let dependencies: [ServiceName] = ["worker"]

        private let log: Log

        init(log: Log) {
            self.log = log
        }

        func start(_ environment: ServiceEnvironment) async throws {
            throw Refusal(reason: "no disk")
        }

        func stop() async throws {
            await self.log.append("stop broken")
        }
    }
}
