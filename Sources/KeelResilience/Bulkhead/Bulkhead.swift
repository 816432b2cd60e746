import KeelCore

/// A task-group semaphore that bounds how many operations run at once, how many wait, and for
/// how long: the bulkhead that keeps one slow dependency from taking every task in the process.
///
/// At no instant do more than ``Configuration/maxConcurrent`` operations run inside the bulkhead.
/// When all permits are taken, callers wait in strict arrival order (FIFO), up to
/// ``Configuration/maxQueued`` of them; one more is refused at once with
/// ``BulkheadError/Code/queueFull``, and a waiter that reaches ``Configuration/maxWait`` is refused
/// with ``BulkheadError/Code/waitTimedOut``.
///
/// ```swift
/// let payments = Bulkhead(name: "payments", configuration: .init(maxConcurrent: 8, maxQueued: 16))
/// let receipt = try await payments.run { try await gateway.charge(order) }
/// ```
///
/// ## Concurrency contract
/// `Bulkhead` is `Sendable`; share one instance among every caller it protects. It is not an
/// actor: ``run(_:)`` runs the operation on the caller's own task and isolation, and suspends
/// only while it waits for a permit.
///
/// Uncontended, ``run(_:)`` takes no lock. While nobody is queued, the permits in use and their
/// holders live in one atomic word: taking a permit is one compare-and-exchange on it, one
/// relaxed atomic add (the `admitted` total) and one relaxed load (the peak, written only when
/// it grows); giving it back is one more compare-and-exchange. Nothing is allocated and the
/// clock is not read. This holds while a permit is free and nobody waits, for a bulkhead whose
/// telemetry makes no gauges (the default `NoOpTelemetry`, or any telemetry for a
/// ``KeyedBulkhead``'s keys); with gauges, every ``run(_:)`` takes a `Mutex` twice instead, so
/// that the gauges are set in the order of the states they show.
///
/// When no permit is free, the caller takes the `Mutex`, which guards a pure FIFO state machine,
/// and queues. From the moment one caller queues until the queue is empty again, every
/// acquisition and release goes through that lock (a bit in the word sends them there), so a
/// newcomer never overtakes a waiter and a release never misses one. Only a caller that must
/// wait suspends, on a continuation. Cancellation is safe at every point: a waiter whose task is
/// cancelled leaves the queue at once and throws `CancellationError`; if the cancellation races
/// with the grant of a permit, the permit is passed on to the next waiter (or returned) and the
/// operation does not run. No permit ever leaks.
///
/// `maxWait` is enforced by one timer task per bulkhead, sleeping on the injected clock until the
/// oldest waiter's deadline; it exists only while someone waits, and the bulkhead owns and
/// cancels it.
public final class Bulkhead: Sendable {
    /// The bulkhead's name, used in errors and as the `bulkhead` dimension of its metrics.
    public let name: String
    /// The limits it was made with.
    public let configuration: Configuration

    @usableFromInline
    let storage: BulkheadStorage

    /// Creates a bulkhead.
    /// - Parameters:
    ///   - name: A name for errors and metrics, such as the dependency it protects.
    ///   - configuration: The limits; checked with `precondition`.
    ///   - clock: The clock that measures `maxWait` and wait times; `ContinuousClock` by default,
    ///     a `TestClock` in tests.
    ///   - telemetry: Where metrics go (`keel.bulkhead.*`, with the dimension `bulkhead`);
    ///     handlers are made here, once.
    ///   - taskExecutor: The executor preference for the timer task; `nil` for the global one.
    public init(
        name: String,
        configuration: Configuration = Configuration(),
        clock: any Clock<Duration> = ContinuousClock(),
        telemetry: any Telemetry = NoOpTelemetry(),
        taskExecutor: (any TaskExecutor)? = nil
    ) {
        configuration.validate()
        self.name = name
        self.configuration = configuration
        self.storage = BulkheadStorage(
            name: name,
            capacity: configuration.maxConcurrent,
            maxQueued: configuration.maxQueued,
            maxWait: configuration.maxWait,
            clock: clock,
            executor: taskExecutor,
            instruments: .make(telemetry, name: name)
        )
    }

    /// Runs `operation` while holding one permit, waiting in line for it if every permit is taken.
    ///
    /// The operation runs on the calling task, in the caller's isolation, exactly once if a
    /// permit is obtained and never otherwise. The permit is returned when the operation returns
    /// or throws, and goes to the oldest waiter first. Suspends only while waiting for a permit
    /// (and while the operation itself suspends).
    ///
    /// Cancelling the calling task while it waits removes it from the queue and throws
    /// `CancellationError` without running the operation; a task already cancelled is still
    /// admitted when a permit is free at once (the operation observes its cancellation).
    /// - Parameter operation: The work to protect.
    /// - Returns: What `operation` returns.
    /// - Throws: ``BulkheadError`` (``BulkheadError/Code/queueFull`` or
    ///   ``BulkheadError/Code/waitTimedOut``) when refused, `CancellationError` when cancelled
    ///   while waiting, or whatever `operation` throws.
    @inlinable
    public func run<T: Sendable>(_ operation: () async throws -> T) async throws -> T {
        if let ticket = try self.storage.acquireOrEnqueue(weight: 1) {
            try await self.storage.wait(ticket)
        }
        defer { self.storage.release(weight: 1) }
        return try await operation()
    }

    /// A snapshot of the bulkhead's state and totals: in flight, queued, rejected, timed out,
    /// wait times, utilisation. Takes the lock briefly; never suspends. A call admitted on the
    /// lock-free path at that very moment may show in ``BulkheadMetrics/used`` a moment before
    /// it is counted in ``BulkheadMetrics/admitted``; once no call is being admitted, every
    /// figure is exact.
    public var metrics: BulkheadMetrics {
        self.storage.metrics()
    }

    /// Suspends until at least `count` callers wait in the queue at once.
    ///
    /// A handshake for tests: once it returns, the callers are queued, and the test can release
    /// a holder, cancel a waiter or advance the clock past `maxWait` knowing where they stand.
    /// Returns at once when that many already wait. It is not cancellable: it waits for the count.
    /// - Parameter count: How many queued callers to wait for.
    public func waitForQueued(count: Int) async {
        await self.storage.waitForQueued(count: count)
    }
}
