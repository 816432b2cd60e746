import KeelCore
import Synchronization

/// A saga run's steps, parallel branches, nested sagas and durable timers: what a ``Saga``'s body
/// calls.
///
/// Each call is an *item* of the scope it is called in (the body, a parallel branch, or a nested
/// saga), and a scope's items run one after another: two steps of one scope running at the same
/// time (from `async let`, say) fail with ``SagaError/Code-swift.struct/concurrentSteps``. Run
/// concurrent work as branches of ``parallel(_:_:)``. Every item's name must be unique within the
/// run (it makes the step's idempotency key).
///
/// Every call journals its item before it counts and, on replay, returns what the journal
/// records instead of running again. A context is valid only during its saga's run; calls run in
/// the calling task.
public final class SagaContext: Sendable {
    let execution: SagaExecution
    let scope: SagaScope

    init(execution: SagaExecution, scope: SagaScope) {
        self.execution = execution
        self.scope = scope
    }

    /// The saga's type name.
    public var sagaName: String { self.execution.saga }
    /// The saga's id.
    public var id: String { self.execution.id }
    /// The run: 1 for the saga's first run, more for a run after a compensated one (see
    /// ``SagaReusePolicy/allowAfterFailure``).
    public var run: Int { self.execution.run }
    /// Whether this run is past its pivot: it can no longer compensate, only go forward.
    public var isPastPivot: Bool { self.execution.isPastPivot }

    /// Runs a compensatable step: `action`, then, if the saga later fails before its pivot,
    /// `compensate` with the action's output.
    ///
    /// The step's start is journaled before `action` runs, and its output before this call
    /// returns it. On replay, a step the journal records as completed returns the recorded output
    /// at once, and one recorded as failed throws its ``SagaStepFailure`` again. A step started
    /// but not completed (the process died during it) runs again when
    /// ``SagaStepOptions/isIdempotent``, with the same idempotency key; otherwise it is in doubt
    /// (see ``SagaStepOptions/isIdempotent``).
    ///
    /// `action` runs in the calling task, and sees its cancellation; `compensate` runs in a task
    /// of its own that the saga's cancellation does not reach, with retries (see
    /// ``SagaRunner/Configuration``). A compensation may run more than once (after a crash during
    /// it, or a failed attempt): make it idempotent, for example with its
    /// ``SagaStepContext/idempotencyKey``.
    /// - Parameters:
    ///   - name: The step's name, unique within the run.
    ///   - options: Idempotence, timeout and retries.
    ///   - action: The step's work; it gets the step's idempotency key and attempt.
    ///   - compensate: Undoes the step's effect, given its output; `nil` for a step with nothing
    ///     to undo (a check, a read).
    /// - Returns: The action's output (recorded or fresh).
    /// - Throws: ``SagaStepFailure`` when the step failed (its action threw, timed out, or was in
    ///   doubt); `CancellationError` when the saga's task was cancelled before the step started;
    ///   ``SagaError`` when the call breaks a rule (duplicate name, after the pivot, concurrent
    ///   steps, nondeterminism) or the journal cannot be written.
    public func step<T: Codable & Sendable>(
        _ name: String,
        _ options: SagaStepOptions = SagaStepOptions(),
        action: @escaping @Sendable (SagaStepContext) async throws -> T,
        compensate: (@Sendable (T, SagaStepContext) async throws -> Void)? = nil
    ) async throws -> T {
        try await self.execution.step(
            in: self.scope,
            name: name,
            kind: .step,
            options: options,
            action: action,
            compensate: compensate
        )
    }

    /// Runs a compensatable step whose action returns nothing: as
    /// ``step(_:_:action:compensate:)->_``, with a compensation that gets only the step's context.
    /// - Parameters:
    ///   - name: The step's name, unique within the run.
    ///   - options: Idempotence, timeout and retries.
    ///   - action: The step's work.
    ///   - compensate: Undoes the step's effect; `nil` for a step with nothing to undo.
    /// - Throws: As ``step(_:_:action:compensate:)->_``.
    public func step(
        _ name: String,
        _ options: SagaStepOptions = SagaStepOptions(),
        action: @escaping @Sendable (SagaStepContext) async throws -> Void,
        compensate: (@Sendable (SagaStepContext) async throws -> Void)? = nil
    ) async throws {
        var undo: (@Sendable (SagaNothing, SagaStepContext) async throws -> Void)?
        if let compensate {
            undo = { _, context in try await compensate(context) }
        }
        let work: @Sendable (SagaStepContext) async throws -> SagaNothing = { context in
            try await action(context)
            return SagaNothing()
        }
        _ = try await self.execution.step(
            in: self.scope,
            name: name,
            kind: .step,
            options: options,
            action: work,
            compensate: undo
        )
    }

    /// Runs the saga's pivot: the step after which it can no longer compensate.
    ///
    /// If the pivot fails, the steps before it are compensated. Once it has completed, only
    /// ``retriable(_:_:action:)->_`` steps and timers may follow, cancelling the saga no longer
    /// compensates anything, and a failure of the body ends the run as needing intervention. A
    /// saga has at most one pivot, called from its own body (not a branch or a nested saga).
    /// - Parameters:
    ///   - name: The step's name, unique within the run.
    ///   - options: Idempotence, timeout and retries.
    ///   - action: The step's work.
    /// - Returns: The action's output.
    /// - Throws: As ``step(_:_:action:compensate:)->_``, and ``SagaError`` with
    ///   ``SagaError/Code-swift.struct/misplacedPivot`` for a second pivot or one in a branch or
    ///   nested saga.
    public func pivot<T: Codable & Sendable>(
        _ name: String,
        _ options: SagaStepOptions = SagaStepOptions(),
        action: @escaping @Sendable (SagaStepContext) async throws -> T
    ) async throws -> T {
        try await self.execution.step(
            in: self.scope,
            name: name,
            kind: .pivot,
            options: options,
            action: action,
            compensate: nil
        )
    }

    /// Runs the saga's pivot, whose action returns nothing: as ``pivot(_:_:action:)->_``.
    /// - Parameters:
    ///   - name: The step's name, unique within the run.
    ///   - options: Idempotence, timeout and retries.
    ///   - action: The step's work.
    /// - Throws: As ``pivot(_:_:action:)->_``.
    public func pivot(
        _ name: String,
        _ options: SagaStepOptions = SagaStepOptions(),
        action: @escaping @Sendable (SagaStepContext) async throws -> Void
    ) async throws {
        _ = try await self.pivot(name, options) { context in
            try await action(context)
            return SagaNothing()
        }
    }

    /// Runs a retriable step: one that must eventually succeed, so it is retried rather than
    /// compensated (the steps after a pivot).
    ///
    /// The step runs in a task of its own that the saga's cancellation does not reach, and is
    /// attempted again after each failure, with the runner's
    /// ``SagaRunner/Configuration/retriableBackoff``, up to
    /// ``SagaRunner/Configuration/retriableAttempts`` attempts; when they run out the step fails,
    /// and past the pivot the run then needs intervention (an operator's
    /// ``SagaRunner/retry(_:id:)`` attempts it again). A retriable step is idempotent by nature:
    /// recovery runs it again with the same idempotency key.
    /// - Parameters:
    ///   - name: The step's name, unique within the run.
    ///   - options: The timeout of each attempt (``SagaStepOptions/retry`` is not used).
    ///   - action: The step's work.
    /// - Returns: The action's output.
    /// - Throws: ``SagaStepFailure`` when the attempts ran out; ``SagaError`` as for
    ///   ``step(_:_:action:compensate:)->_``.
    public func retriable<T: Codable & Sendable>(
        _ name: String,
        _ options: SagaStepOptions = SagaStepOptions(),
        action: @escaping @Sendable (SagaStepContext) async throws -> T
    ) async throws -> T {
        try await self.execution.step(
            in: self.scope,
            name: name,
            kind: .retriable,
            options: options,
            action: action,
            compensate: nil
        )
    }

    /// Runs a retriable step whose action returns nothing: as ``retriable(_:_:action:)->_``.
    /// - Parameters:
    ///   - name: The step's name, unique within the run.
    ///   - options: The timeout of each attempt.
    ///   - action: The step's work.
    /// - Throws: As ``retriable(_:_:action:)->_``.
    public func retriable(
        _ name: String,
        _ options: SagaStepOptions = SagaStepOptions(),
        action: @escaping @Sendable (SagaStepContext) async throws -> Void
    ) async throws {
        _ = try await self.retriable(name, options) { context in
            try await action(context)
            return SagaNothing()
        }
    }

    /// Runs branches concurrently, each in a child task with a scope of its own, and returns
    /// their outputs.
    ///
    /// When a branch fails, the other branches are cancelled and awaited, and the call throws the
    /// first failure. The branches' completed steps are compensated with the rest of the saga's,
    /// each branch newest first and the branches concurrently.
    ///
    /// ```swift
    /// let (payment, reservation) = try await saga.parallel(
    ///     "charge-and-reserve",
    ///     { branch in try await branch.step("pay") { _ in try await pay() } compensate: { p, _ in try await refund(p) } },
    ///     { branch in try await branch.step("reserve") { _ in try await reserve() } compensate: { r, _ in try await release(r) } }
    /// )
    /// ```
    /// - Parameters:
    ///   - name: The group's name, unique within the run.
    ///   - branches: The branches; each gets its own context.
    /// - Returns: Each branch's output, in order.
    /// - Throws: The first branch failure; ``SagaError`` as for ``step(_:_:action:compensate:)->_``.
    public func parallel<each Output: Sendable>(
        _ name: String,
        _ branches: repeat @escaping @Sendable (SagaContext) async throws -> each Output
    ) async throws -> (repeat each Output) {
        let execution = self.execution
        let fullName = self.scope.namePrefix + name
        let index = try self.scope.take(fullName)
        defer { self.scope.release() }
        let ref = SagaItemRef(scope: self.scope.path, index: index)
        if try execution.claim(ref, name: fullName, kind: .parallel, in: self.scope) == nil {
            try Task.checkCancellation()
            try await execution.append(execution.itemEntry(.scopeStarted, ref, name: fullName, itemKind: .parallel))
        }
        var count = 0
        for _ in repeat each branches { count += 1 }
        let scopes = (0..<count).map { branch in
            SagaScope(path: "\(self.scope.path)/\(index).\(branch)", namePrefix: self.scope.namePrefix, isRoot: false)
        }
        self.scope.add(.branches(scopes))
        let values = try await withThrowingTaskGroup(of: (Int, any Sendable).self) { group in
            var branchIndex = 0
            for branch in repeat each branches {
                let context = SagaContext(execution: execution, scope: scopes[branchIndex])
                let slot = branchIndex
                group.addTask { (slot, try await branch(context)) }
                branchIndex += 1
            }
            var values = [(any Sendable)?](repeating: nil, count: count)
            var firstError: (any Error)?
            while let result = await group.nextResult() {
                switch result {
                case .success(let (slot, value)):
                    values[slot] = value
                case .failure(let error):
                    if firstError == nil {
                        firstError = error
                        group.cancelAll()
                    }
                }
            }
            if let firstError { throw firstError }
            return values.map { $0! }
        }
        let cursor = PackCursor(values)
        return (repeat cursor.next((each Output).self))
    }

    /// Runs another saga's body as part of this one, under the name `name`: its steps are
    /// journaled in this saga's journal, named `<name>/<step>`.
    ///
    /// When the nested saga fails, its own completed steps are compensated (newest first) before
    /// this call throws its failure: it fails as a unit, and this body may go on another way.
    /// When it completes and this saga fails later, its steps are compensated with the rest.
    /// - Parameters:
    ///   - saga: The nested saga.
    ///   - input: Its input.
    ///   - name: Its name in this run, unique within the run.
    /// - Returns: Its output.
    /// - Throws: What its body throws, after its compensation; ``SagaError`` as for
    ///   ``step(_:_:action:compensate:)->_``.
    public func run<Nested: Saga>(
        _ saga: Nested,
        _ input: Nested.Input,
        as name: String
    ) async throws
        -> Nested.Output
    {
        let execution = self.execution
        let fullName = self.scope.namePrefix + name
        let index = try self.scope.take(fullName)
        defer { self.scope.release() }
        let ref = SagaItemRef(scope: self.scope.path, index: index)
        if try execution.claim(ref, name: fullName, kind: .nested, in: self.scope) == nil {
            try Task.checkCancellation()
            try await execution.append(execution.itemEntry(.scopeStarted, ref, name: fullName, itemKind: .nested))
        }
        let nested = SagaScope(path: "\(self.scope.path)/\(index)", namePrefix: fullName + "/", isRoot: false)
        self.scope.add(.nested(nested))
        do {
            return try await saga.run(input, saga: SagaContext(execution: execution, scope: nested))
        } catch {
            if !execution.isSuspension(error) {
                await execution.whileNotSuspended { await execution.compensate(nested) }
                if let failure = execution.state.withLock({ $0.journalFailure }) { throw failure }
            }
            throw error
        }
    }

    /// Waits `duration` on the runner's clock, durably: the timer's due time is journaled, so a
    /// saga resumed after a restart waits only what is left (or not at all, when it is due).
    ///
    /// Before the pivot, the wait ends early with `CancellationError` when the saga's task is
    /// cancelled (the saga then compensates); past the pivot, where the saga only goes forward, it
    /// does not.
    /// - Parameters:
    ///   - name: The timer's name, unique within the run.
    ///   - duration: How long to wait, from the first time the body reaches the timer.
    /// - Throws: `CancellationError`; ``SagaError`` as for ``step(_:_:action:compensate:)->_``.
    public func sleep(_ name: String, for duration: Duration) async throws {
        let execution = self.execution
        let fullName = self.scope.namePrefix + name
        let index = try self.scope.take(fullName)
        defer { self.scope.release() }
        let ref = SagaItemRef(scope: self.scope.path, index: index)
        let recorded = try execution.claim(ref, name: fullName, kind: .timer, in: self.scope)
        if recorded?.isFired == true { return }
        let now = execution.runtime.wallClock.nanosecondsSinceEpoch()
        let due: Int64
        if let recordedDue = recorded?.dueTime {
            due = recordedDue
        } else {
            let (seconds, attoseconds) = duration.components
            due = now + seconds * 1_000_000_000 + attoseconds / 1_000_000_000
            var entry = execution.itemEntry(.timerStarted, ref, name: fullName, itemKind: .timer)
            entry.dueTime = due
            try await execution.append(entry)
        }
        if due > now {
            if execution.isPastPivot {
                // Past the pivot the saga only goes forward: its cancellation does not cut the
                // timer short (a shutdown still stops it).
                let slept = await execution.whileNotSuspended { () async -> Result<Void, any Error> in
                    do {
                        return .success(try await execution.sleep(for: .nanoseconds(due - now), timer: fullName))
                    } catch {
                        return .failure(error)
                    }
                }
                try slept.get()
            } else {
                try await execution.sleep(for: .nanoseconds(due - now), timer: fullName)
            }
        }
        try await execution.append(execution.itemEntry(.timerFired, ref, name: fullName, itemKind: .timer))
    }
}

extension SagaContext {
    /// Waits for the signal `name` — an answer from outside, sent with
    /// ``SagaRunner/signal(_:id:name:payload:)`` — or until `timeout` passes, durably: the wait's
    /// due time is journaled, so a saga resumed after a restart waits only what is left, and a
    /// signal sent while no process ran is found in the journal.
    ///
    /// This is how a saga waits for an event: a durable subscription's handler (at least once,
    /// across restarts) turns the event into a signal for the saga it correlates with.
    ///
    /// ```swift
    /// // In the saga: wait up to a day for the bank's confirmation.
    /// guard let transfer = try await saga.waitForSignal("transfer-confirmed", as: Transfer.self, timeout: .seconds(86_400)) else {
    ///     throw TransferTimedOut()   // before the pivot: the saga compensates
    /// }
    /// // In the subscriber: the event becomes the signal.
    /// try await runner.signal(PayByTransfer.name, id: event.orderID, name: "transfer-confirmed", payload: event.transfer)
    /// ```
    /// - Parameters:
    ///   - name: The signal's name; also the wait's name, unique within the run.
    ///   - type: The payload's type.
    ///   - timeout: How long to wait, from the first time the body reaches the wait.
    /// - Returns: The first payload sent under `name` in this run, or `nil` when the wait timed
    ///   out.
    /// - Throws: `CancellationError` when the saga's task is cancelled before the pivot (past it,
    ///   the wait goes on); ``SagaError`` as for ``step(_:_:action:compensate:)->_``, or with
    ///   ``SagaError/Code-swift.struct/encodingFailed`` when the payload does not decode as `type`.
    public func waitForSignal<T: Codable & Sendable>(
        _ name: String,
        as type: T.Type = T.self,
        timeout: Duration
    ) async throws -> T? {
        let execution = self.execution
        let scope = self.scope
        let payload: String?
        if execution.isPastPivot {
            // Past the pivot the saga only goes forward: its cancellation does not cut the wait
            // short (a shutdown still stops it).
            let waited = await execution.whileNotSuspended { () async -> Result<String?, any Error> in
                do {
                    return .success(try await execution.waitForSignal(in: scope, name: name, timeout: timeout))
                } catch {
                    return .failure(error)
                }
            }
            payload = try waited.get()
        } else {
            payload = try await execution.waitForSignal(in: scope, name: name, timeout: timeout)
        }
        guard let payload else { return nil }
        return try SagaPayload.decode(T.self, from: payload, what: "the signal \(name)")
    }
}

/// The journaled output of a step that returns nothing.
struct SagaNothing: Codable, Sendable {}

/// Hands out the values of a parallel group, in order, as the types of its branches.
private final class PackCursor: @unchecked Sendable {
    // Used by one task, in one expression, after the group's children have all finished.
    private var values: [any Sendable]
    private var index = 0

    init(_ values: [any Sendable]) {
        self.values = values
    }

    func next<T>(_ type: T.Type) -> T {
        defer { self.index += 1 }
        // The group stored branch `i`'s output at `i`, and branch `i` returns the `i`-th type.
        return self.values[self.index] as! T
    }
}
