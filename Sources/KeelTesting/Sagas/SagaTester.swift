import KeelCore
import KeelEventSourcing
import KeelSagas
import Synchronization

/// Tests a saga on virtual time: runs it on an in-memory journal with a ``TestClock``, makes its
/// steps and compensations fail by name, crashes it at a step as a killed process would, restarts
/// it as a new process, and reads back what it did.
///
/// ```swift
/// @Test func aDeclinedPaymentReleasesTheStock() async throws {
///     let tester = SagaTester()
///     tester.failStep("pay")
///     let outcome = try await tester.run(PlaceOrder(services: fakes), input: order)
///     #expect(outcome.phase == .compensated)
///     let history = try await tester.history(PlaceOrder.self)
///     #expect(history.compensated == ["reserve"])
/// }
///
/// @Test func aCrashDuringPaymentResumesIt() async throws {
///     let tester = SagaTester()
///     tester.crash(at: "pay")                       // given a journal that stops as pay starts,
///     _ = try? await tester.run(PlaceOrder(services: fakes), input: order)
///     try await tester.restart()                    // when a new process recovers it,
///     // pay is idempotent: it runs again with the same key, and the saga goes on.
///     #expect(try await tester.outcome(PlaceOrder.self).phase == .completed)
/// }
/// ```
///
/// Works the same from an `XCTestCase` async test. Injected failures are ``InjectedFailure``s;
/// the runner's backoffs are immediate by default, and everything else waits on ``clock``.
public final class SagaTester: Sendable {
    /// The error an injected failure throws.
    public struct InjectedFailure: Error, Sendable, Hashable, CustomStringConvertible {
        /// The step whose action (or compensation) failed.
        public var step: String
        /// The attempt that failed.
        public var attempt: Int
        /// Whether it was the compensation that failed.
        public var isCompensation: Bool

        /// `injected failure of <step> (attempt n)`, or of its compensation.
        public var description: String {
            "injected failure of \(self.isCompensation ? "the compensation of " : "")\(self.step) (attempt \(self.attempt))"
        }
    }

    /// The default configuration: the runner's, with immediate backoffs.
    public static var defaultConfiguration: SagaRunner.Configuration {
        SagaRunner.Configuration(compensationBackoff: .immediate, retriableBackoff: .immediate)
    }

    private struct State {
        var runner: SagaRunner?
        var registrations: [@Sendable (SagaRunner) -> Void] = []
    }

    /// The clock the sagas wait on.
    public let clock: TestClock
    /// The journal's store, which outlives a ``restart()``.
    public let store: InMemoryEventStore
    /// The runner's telemetry (spans, metrics and logs), timed by ``clock``.
    public let telemetry: InMemoryRecorder
    private let configuration: SagaRunner.Configuration
    private let random: RandomSource
    private let state = Lock(State())
    /// The faults, apart from the tester, so that the runner it makes does not hold the tester.
    private let faults = SagaFaults()

    /// Creates a tester with an empty journal.
    /// - Parameters:
    ///   - clock: The clock; a new one at zero by default.
    ///   - seed: The seed of the runner's random source.
    ///   - configuration: The runner's configuration; ``defaultConfiguration`` by default.
    public init(
        clock: TestClock = TestClock(),
        seed: UInt64 = 1,
        configuration: SagaRunner.Configuration = SagaTester.defaultConfiguration
    ) {
        self.clock = clock
        self.store = InMemoryEventStore()
        self.telemetry = InMemoryRecorder(clock: clock)
        self.configuration = configuration
        self.random = RandomSource(seed: seed)
        _ = self.makeRunner()
    }

    /// The current runner: the first one, or the one the last ``restart()`` made.
    public var runner: SagaRunner {
        self.state.withLock { $0.runner! }
    }

    private func makeRunner() -> SagaRunner {
        let runner = SagaRunner(
            store: TesterStore(base: self.store, faults: self.faults),
            configuration: self.configuration,
            clock: self.clock,
            wallClock: self.clock.wallClock(startingAt: 1_700_000_000_000_000_000),
            random: self.random,
            telemetry: self.telemetry,
            executor: nil,
            interceptor: { [faults] attempt in try faults.intercept(attempt) }
        )
        let registrations = self.state.withLock { state in
            state.runner = runner
            return state.registrations
        }
        for register in registrations { register(runner) }
        return runner
    }

    // MARK: Faults

    /// Makes the next `times` attempts of the step `step` fail with an ``InjectedFailure``, before
    /// its action runs.
    /// - Parameters:
    ///   - step: The step's full name (a nested saga's steps: `<nested>/<step>`).
    ///   - times: How many attempts fail; every one by default. 0 stops failing it.
    public func failStep(_ step: String, times: Int = .max) {
        self.faults.state.withLock { $0.failures[SagaFaults.Key(kind: .step, step: step)] = times }
    }

    /// Makes the next `times` attempts of the compensation of `step` fail with an
    /// ``InjectedFailure``.
    /// - Parameters:
    ///   - step: The step whose compensation fails.
    ///   - times: How many attempts fail; every one by default. 0 stops failing it.
    public func failCompensation(of step: String, times: Int = .max) {
        self.faults.state.withLock { $0.failures[SagaFaults.Key(kind: .compensation, step: step)] = times }
    }

    /// Makes the process "die" as the step `step` starts: its start is journaled, its action does
    /// not run, and nothing more reaches the journal until ``restart()``. The run in progress
    /// throws ``/KeelSagas/SagaError`` with `journalUnavailable`, as a run whose process died
    /// would never return.
    /// - Parameter step: The step's full name.
    public func crash(at step: String) {
        self.faults.state.withLock { $0.crashStep = step }
    }

    // MARK: Running

    /// Registers `saga` with the runner and with every runner a ``restart()`` makes.
    /// - Parameter saga: The saga.
    public func register<S: Saga>(_ saga: S) {
        let runner = self.state.withLock { state in
            state.registrations.append { $0.register(saga) }
            return state.runner!
        }
        runner.register(saga)
    }

    /// Registers `saga` and runs it in the calling task, to its outcome.
    /// - Parameters:
    ///   - saga: The saga.
    ///   - id: Its id; `saga-1` by default.
    ///   - input: Its input.
    ///   - deadline: Its deadline, on ``clock``.
    /// - Returns: The outcome.
    /// - Throws: What ``/KeelSagas/SagaRunner/run(_:id:input:reuse:deadline:)`` throws.
    public func run<S: Saga>(
        _ saga: S,
        id: String = "saga-1",
        input: S.Input,
        deadline: Duration? = nil
    ) async throws(SagaError) -> SagaOutcome<S.Output> {
        self.register(saga)
        return try await self.runner.run(saga, id: id, input: input, deadline: deadline)
    }

    /// Ends the current runner as a process would end (its sagas stop unfinished), makes a new
    /// one on the same journal — as a new process would — and recovers.
    /// - Returns: The sagas recovery resumed.
    /// - Throws: What ``/KeelSagas/SagaRunner/recover()`` throws.
    @discardableResult
    public func restart() async throws(SagaError) -> [SagaStatus] {
        await self.runner.shutdown()
        self.faults.state.withLock { $0.hasCrashed = false }
        return try await self.makeRunner().recover()
    }

    /// The outcome of the saga `id` of type `type`, waiting for it when it runs.
    /// - Parameters:
    ///   - type: The saga's type.
    ///   - id: Its id; `saga-1` by default.
    /// - Returns: The outcome.
    /// - Throws: What ``/KeelSagas/SagaRunner/outcome(_:id:)`` throws.
    public func outcome<S: Saga>(_ type: S.Type, id: String = "saga-1") async throws(SagaError) -> SagaOutcome<S.Output>
    {
        try await self.runner.outcome(type, id: id)
    }

    /// What the saga `id` of type `type` did, by its journal.
    /// - Parameters:
    ///   - type: The saga's type.
    ///   - id: Its id; `saga-1` by default.
    /// - Returns: Its history.
    /// - Throws: What ``/KeelSagas/SagaRunner/history(_:id:)`` throws.
    public func history<S: Saga>(_ type: S.Type, id: String = "saga-1") async throws(SagaError) -> SagaHistory {
        try await self.runner.history(S.name, id: id)
    }

    /// The saga's journal as a readable timeline.
    /// - Parameters:
    ///   - type: The saga's type.
    ///   - id: Its id; `saga-1` by default.
    /// - Returns: The timeline.
    /// - Throws: What ``/KeelSagas/SagaRunner/timeline(_:id:)`` throws.
    public func timeline<S: Saga>(_ type: S.Type, id: String = "saga-1") async throws(SagaError) -> String {
        try await self.runner.timeline(S.name, id: id)
    }
}

/// The failures and the crash a ``SagaTester`` injects.
private final class SagaFaults: Sendable {
    struct Key: Hashable {
        var kind: SagaInterception.Kind
        var step: String
    }

    struct State {
        var failures: [Key: Int] = [:]
        var crashStep: String?
        var hasCrashed = false
    }

    let state = Lock(State())

    var hasCrashed: Bool { self.state.withLock { $0.hasCrashed } }

    func intercept(_ attempt: SagaInterception) throws {
        let failure = self.state.withLock { state -> (any Error)? in
            if attempt.kind == .step, attempt.step == state.crashStep {
                state.crashStep = nil
                state.hasCrashed = true
                return SagaTester.InjectedFailure(step: attempt.step, attempt: attempt.attempt, isCompensation: false)
            }
            let key = Key(kind: attempt.kind, step: attempt.step)
            guard let left = state.failures[key], left > 0 else { return nil }
            state.failures[key] = left - 1
            return SagaTester.InjectedFailure(
                step: attempt.step,
                attempt: attempt.attempt,
                isCompensation: attempt.kind == .compensation
            )
        }
        if let failure { throw failure }
    }
}

/// The tester's journal: the store, which refuses every append once the tester's saga has
/// "crashed".
private struct TesterStore: ForwardingEventStore {
    let base: any EventStore
    let faults: SagaFaults

    init(base: any EventStore, faults: SagaFaults) {
        self.base = base
        self.faults = faults
    }

    @discardableResult
    func append(
        _ events: [EventData],
        to stream: StreamID,
        expecting expected: ExpectedVersion
    ) async throws(EventStoreError) -> AppendResult {
        if self.faults.hasCrashed {
            throw EventStoreError(code: .closed, stream: stream, message: "the saga tester's process crashed")
        }
        return try await self.base.append(events, to: stream, expecting: expected)
    }
}
