import KeelCore

/// Gives an operation a bounded time, and really stops it when the time is up.
///
/// ``execute(_:)`` races the operation against a sleep on the injected clock in a task group.
/// Whichever finishes first wins; the other is cancelled. When the sleep wins, the operation's task
/// is cancelled, the call waits for the operation to return (structured concurrency: nothing is
/// left running behind the caller's back) and throws ``TimeoutError``.
///
/// The timeout respects the caller's deadline: when ``/KeelCore/TraceContext/current`` carries a
/// deadline that comes before `now + duration`, that deadline is the limit (code
/// ``TimeoutError/Code/deadlineExceeded``). The operation runs with the effective deadline bound
/// into `TraceContext.current`, so nested calls (requests, retries, inner timeouts) inherit it.
///
/// ```swift
/// let timeout = Timeout(name: "gateway", duration: .seconds(2))
/// let receipt = try await timeout.execute { try await gateway.charge(order) }
/// ```
///
/// ## Concurrency contract
/// `Timeout` is a `Sendable` value with no mutable state. Each call creates a task group with two
/// child tasks: the operation (which inherits the caller's task-locals and executor preference)
/// and the sleeper. The call returns only after both have finished. The operation must observe
/// cancellation for the timeout to take effect promptly: an operation that ignores cancellation
/// delays the ``TimeoutError`` until it returns. Cancelling the caller cancels both children and
/// throws `CancellationError` (unless the operation finished first), never a ``TimeoutError``.
public struct Timeout: ResilienceStrategy {
    /// The timeout's name, used in errors.
    public let name: String
    /// The longest the operation may run, unless an inherited deadline comes first.
    public let duration: Duration

    private let clock: any Clock<Duration>
    private let random: RandomSource

    /// Creates a timeout.
    /// - Parameters:
    ///   - name: A name for errors.
    ///   - duration: The longest the operation may run; positive.
    ///   - clock: The clock that measures it and reads the inherited deadline; `ContinuousClock`
    ///     by default, a `TestClock` in tests. A deadline made on a clock of another kind is
    ///     ignored.
    ///   - random: Where the ids of a new trace context come from when the caller has none
    ///     (needed to carry the deadline to the operation). By default a new source seeded from
    ///     the system's generator; pass a seeded one (or a host's) so that a run repeats.
    public init(
        name: String = "timeout",
        duration: Duration,
        clock: any Clock<Duration> = ContinuousClock(),
        random: RandomSource = RandomSource()
    ) {
        precondition(duration > .zero, "duration must be positive, got \(duration)")
        self.name = name
        self.duration = duration
        self.clock = clock
        self.random = random
    }

    /// Runs `operation`, cancelling it and throwing ``TimeoutError`` if it does not finish within
    /// the effective timeout (the earlier of ``duration`` and the inherited deadline).
    ///
    /// When the inherited deadline has already passed, the operation does not run. Otherwise it
    /// runs exactly once, in a child task, with `TraceContext.current` set to a copy of the
    /// caller's context (or a new root) whose deadline is the effective one.
    /// - Parameter operation: The work to bound.
    /// - Returns: What `operation` returned, if it finished first.
    /// - Throws: ``TimeoutError`` when the time ran out; `CancellationError` when the caller was
    ///   cancelled; otherwise what `operation` threw.
    public func execute<T: Sendable>(_ operation: @escaping @Sendable () async throws -> T) async throws -> T {
        var context = TraceContext.current ?? TraceContext.makeRoot(using: self.random)
        var limit = self.duration
        var code = TimeoutError.Code.timedOut
        if let remaining = context.deadline?.remaining(onAny: self.clock), remaining <= limit {
            limit = max(remaining, .zero)
            code = .deadlineExceeded
        }
        if limit <= .zero {
            try Task.checkCancellation()
            throw self.error(code, limit)
        }
        context.deadline = Deadline.after(limit, onAny: self.clock)
        let bound = context
        let sleep = limit
        let clock = self.clock
        let error = self.error(code, limit)
        return try await withThrowingTaskGroup(of: T.self, returning: T.self) { group in
            group.addTask {
                try await TraceContext.$current.withValue(bound) { try await operation() }
            }
            group.addTask {
                try await clock.sleep(for: sleep)
                throw error
            }
            defer { group.cancelAll() }
            // Both children were added, so the group yields a first result.
            return try await group.next()!
        }
    }

    private func error(_ code: TimeoutError.Code, _ limit: Duration) -> TimeoutError {
        let reason = code == .deadlineExceeded ? "the caller's deadline came first" : "the operation took too long"
        return TimeoutError(
            code: code,
            timeout: limit,
            name: self.name,
            message: "\(reason); the operation was cancelled"
        )
    }
}
