import KeelCore

/// Gives an operation a bounded time, and really stops it when the time is up.
///
/// ``execute(_:)`` runs the operation in a child task of a task group and races it against the
/// timeout's shared timer. When the time is up first, the operation's task is cancelled, the call
/// waits for the operation to return (structured concurrency: nothing is left running behind the
/// caller's back) and throws ``TimeoutError``.
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
/// ## How it works, and what it costs
/// A call binds the trace context, creates a task group and starts the operation's child task
/// *immediately* (`addImmediateTask`, on the platforms that have it): the child runs on the
/// caller's thread until it first suspends. An operation that returns without suspending (a cache
/// hit, synchronous work) has finished by then, and the call returns its result without parking
/// and without touching the timer or the clock: a task group, a child task and the task-local
/// binding, about a microsecond of processor time (the `timeout.call.inline` benchmark).
///
/// An operation that suspends, and a call into an actor does (a task started this way cannot take
/// over an actor's thread, so it is enqueued on the actor), leaves the caller to park on a
/// continuation with its deadline entered in the timeout's one shared timer: a task that sleeps
/// on the injected clock until the earliest deadline of the calls in flight, expires the calls
/// that are due and sleeps again until the next one. A call that ends first (the operation
/// finished, or the caller was cancelled) removes its deadline; the timer is not woken for that,
/// and when it wakes with nothing pending it ends. A deadline earlier than the one the timer
/// sleeps until (a caller's shorter deadline) replaces the timer task. So beyond the task group,
/// a call costs a few short lock operations and one resumption of the caller (the
/// `timeout.call` benchmark), and a steady stream of calls costs one clock sleep per `duration`,
/// not one per call. The timer task is started with `taskExecutor` as its executor preference.
///
/// ``shutdown()`` cancels the timer task and waits for it. A timeout keeps working afterwards:
/// calls in flight then, and every later call whose operation suspends, race the operation
/// against a sleep of their own in the task group (a second child task and a clock sleep per
/// call, several µs more). A clock whose sleep throws for another reason than cancellation puts
/// the timer out of service the same way, and the calls then meet the clock's error in their own
/// sleep and throw it. Copies of a `Timeout` share one timer, so shutting one down shuts them
/// all down. A timeout dropped without a shutdown cancels its timer task; a timer task with
/// nothing pending ends at its next wake-up, at most `duration` after the last call.
///
/// ## Concurrency contract
/// `Timeout` is a `Sendable` value; share it among callers. Each call creates a task group with
/// one child task, the operation, which inherits the caller's task-locals and executor
/// preference. The call returns only after the operation's task has finished. The operation
/// must observe cancellation for the timeout to take effect promptly: an operation that ignores
/// cancellation delays the ``TimeoutError`` until it returns. Cancelling the caller cancels the
/// operation and throws `CancellationError` (unless the operation finished first), never a
/// ``TimeoutError``. Time is read only from the injected clock.
public struct Timeout: ResilienceStrategy {
    /// The timeout's name, used in errors.
    public let name: String
    /// The longest the operation may run, unless an inherited deadline comes first.
    public let duration: Duration

    private let clock: any Clock<Duration>
    private let random: RandomSource
    private let timer: TimeoutTimer

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
    ///   - taskExecutor: The executor preference for the shared timer's task; `nil` for the
    ///     global one.
    public init(
        name: String = "timeout",
        duration: Duration,
        clock: any Clock<Duration> = ContinuousClock(),
        random: RandomSource = RandomSource(),
        taskExecutor: (any TaskExecutor)? = nil
    ) {
        precondition(duration > .zero, "duration must be positive, got \(duration)")
        self.name = name
        self.duration = duration
        self.clock = clock
        self.random = random
        self.timer = TimeoutTimer(clock: clock, executor: taskExecutor)
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
        let (deadline, due) = self.timer.deadline(limit)
        context.deadline = deadline
        // Bound here, around the group, the context is inherited by the operation's task without
        // a binding of its own.
        return try await TraceContext.$current.withValue(context) {
            try await self.race(operation, until: due, code: code, limit: limit)
        }
    }

    /// Runs `operation` in a child task and waits for it, for the timer, or for the caller's
    /// cancellation.
    private func race<T: Sendable>(
        _ operation: @escaping @Sendable () async throws -> T,
        until due: Duration,
        code: TimeoutError.Code,
        limit: Duration
    ) async throws -> T {
        try await withThrowingTaskGroup(of: T.self, returning: T.self) { group in
            let attempt = TimeoutAttempt()
            if #available(macOS 26.0, iOS 26.0, watchOS 26.0, tvOS 26.0, visionOS 26.0, *) {
                group.addImmediateTask {
                    defer { attempt.finish() }
                    return try await operation()
                }
            } else {
                group.addTask {
                    defer { attempt.finish() }
                    return try await operation()
                }
            }
            // The operation returned without suspending: no timer, no parking.
            if attempt.hasFinished {
                return try await group.next()!
            }
            switch await self.timer.wait(for: attempt, until: due) {
            case .finished:
                return try await group.next()!
            case .expired:
                // Leaving the group by a throw cancels the operation and waits for it.
                throw self.error(code, limit)
            case .cancelled:
                throw CancellationError()
            case .orphaned:
                // The timer was shut down: race the operation against a sleep of our own.
                let sleep = self.timer.sleep
                group.addTask {
                    try await sleep(due)
                    throw Expired()
                }
                do {
                    let value = try await group.next()!
                    group.cancelAll()
                    return value
                } catch is Expired {
                    throw self.error(code, limit)
                }
            }
        }
    }

    /// Stops the shared timer's task and waits for it. The timeout keeps working: later calls
    /// whose operation suspends time themselves with a sleep of their own (see the type's
    /// documentation). Calling it again does nothing more.
    public func shutdown() async {
        await self.timer.shutdown()
    }

    /// The calls waiting for the shared timer.
    var pendingCount: Int {
        self.timer.pendingCount
    }

    /// The shared timer, for tests.
    var sharedTimer: TimeoutTimer {
        self.timer
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

/// What the sleeping child throws when a call times itself after the shared timer's shutdown.
private struct Expired: Error {}
