import Keel
import ServiceLifecycle

/// A Keel ``/Keel/ServiceHost`` run as a swift-service-lifecycle `Service`, so that a
/// `ServiceGroup` starts it beside the process's other services (an HTTP server, a database
/// client) and stops it gracefully with them.
///
/// ```swift
/// let host = ServiceHost(telemetry: SwiftServerTelemetry())
/// try await host.register(UserService())
/// try await host.register(OrderService())
///
/// let group = ServiceGroup(
///     services: [HostService(host: host), httpServer],
///     gracefulShutdownSignals: [.sigterm, .sigint],
///     logger: logger
/// )
/// try await group.run()
/// ```
///
/// ``run()`` starts the host, waits for the group's graceful shutdown (or the task's
/// cancellation), then shuts the host down: Keel stops taking requests and events from outside,
/// lets in-flight work finish within the drain timeout, and stops the services in reverse start
/// order.
///
/// **Signals.** The group owns the process's signals: list them in its `gracefulShutdownSignals`.
/// A host run this way installs no signal handler of its own, because ``run()`` never calls
/// ``/Keel/ServiceHost/run()`` (which waits for SIGINT and SIGTERM itself); it only calls
/// ``/Keel/ServiceHost/start()`` and ``/Keel/ServiceHost/shutdown(drainTimeout:)``.
///
/// **Timeouts.** Give the group's `maximumGracefulShutdownDuration`, if you set one, more time than
/// the drain timeout plus the services' own `stop`: past it the group cancels its services, and a
/// cancelled ``run()`` still waits for the host's shutdown to complete.
public struct HostService: Service, CustomStringConvertible {
    /// The host this service starts and stops. Register its services before the group runs, and
    /// do not start or shut it down elsewhere.
    public let host: ServiceHost
    /// How long shutdown waits for in-flight work before it stops the services anyway; `nil` uses
    /// the host's ``/Keel/ServiceHost/Configuration/shutdownTimeout``.
    public let drainTimeout: Duration?

    private let onRunning: @Sendable () async -> Void

    /// Wraps `host`.
    /// - Parameters:
    ///   - host: The host, with its services registered; ``run()`` starts it. Not yet started:
    ///     a host that was started or shut down elsewhere fails ``run()`` with
    ///     ``/Keel/HostError/Code-swift.struct/invalidState``.
    ///   - drainTimeout: How long shutdown waits for in-flight requests and event handlers, on
    ///     the host's clock; `nil` (the default) uses the host's
    ///     ``/Keel/ServiceHost/Configuration/shutdownTimeout``, `.zero` stops at once.
    ///   - onRunning: Called once the host has started, on the task of ``run()``, before it waits
    ///     for shutdown: the place to announce readiness or to release work that needs the host.
    ///     Called exactly once per successful start, never when the start fails. A graceful
    ///     shutdown that comes while it runs takes effect when it returns; it sees the task's
    ///     cancellation.
    public init(
        host: ServiceHost,
        drainTimeout: Duration? = nil,
        onRunning: @escaping @Sendable () async -> Void = {}
    ) {
        if let drainTimeout {
            precondition(drainTimeout >= .zero, "a drain timeout must not be negative: \(drainTimeout)")
        }
        self.host = host
        self.drainTimeout = drainTimeout
        self.onRunning = onRunning
    }

    /// Starts the host, waits for graceful shutdown or cancellation, then shuts the host down and
    /// returns.
    ///
    /// The start is ``/Keel/ServiceHost/start()``: services start in dependency order, and a start
    /// that fails has already stopped whatever started when its error reaches the group. Then the
    /// call suspends until the `ServiceGroup` shuts down gracefully or the task is cancelled
    /// (outside a group, only cancellation ends the wait). Either way it then calls
    /// ``/Keel/ServiceHost/shutdown(drainTimeout:)`` and returns once the host is stopped: new
    /// requests from outside are refused with ``/Keel/RequestError/Code-swift.struct/shuttingDown``,
    /// in-flight work may finish within the drain timeout, and the services stop in reverse
    /// order. The shutdown runs in a task that does not inherit this task's cancellation, as in
    /// ``/Keel/ServiceHost/run()``, so that a cancelled group still stops services that see no
    /// cancellation in their `stop`. Errors from services' `stop` do not fail the call; the host
    /// collects them in ``/Keel/ServiceHost/stopFailures``.
    /// - Throws: The ``/Keel/HostError`` of a failed start (a missing dependency, a cycle, a
    ///   service whose start threw, or a host that was not idle).
    public func run() async throws {
        try await self.host.start()
        await self.onRunning()
        do {
            try await gracefulShutdown()
        } catch {
            // `gracefulShutdown()` throws only `CancellationError`: the task was cancelled, which
            // ends the wait just as a graceful shutdown does.
        }
        let host = self.host
        let drainTimeout = self.drainTimeout
        // Unstructured, owned and awaited here: the shutdown must not inherit this task's
        // cancellation. It keeps the host's executor preference, as the host's own tasks do.
        let shutdown: Task<Void, Never>
        if let executor = host.configuration.executor {
            shutdown = Task(executorPreference: executor) { await host.shutdown(drainTimeout: drainTimeout) }
        } else {
            shutdown = Task { await host.shutdown(drainTimeout: drainTimeout) }
        }
        await shutdown.value
    }

    /// `HostService`, as the group's logs name it.
    public var description: String { "HostService" }
}
