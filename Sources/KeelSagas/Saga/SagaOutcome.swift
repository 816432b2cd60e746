/// How a saga run ended.
///
/// A run never ends without an outcome in its journal: it either completed, or compensated every
/// completed step, or it stopped where it could neither go on nor undo, and needs an operator
/// (``SagaRunner/interventions()``, ``SagaRunner/retry(_:id:)``, ``SagaRunner/resolve(_:id:note:)``).
public enum SagaOutcome<Output: Sendable>: Sendable {
    /// Every step ran; the body returned `Output`.
    case completed(Output)
    /// A step failed (or the body threw, or the saga was cancelled or ran past its deadline)
    /// before the pivot, and every completed step was compensated. The failure is the cause.
    case compensated(SagaFailure)
    /// The saga could not finish either way: a compensation kept failing, a step after the pivot
    /// kept failing, a step's effect is in doubt, or the body broke the determinism rule.
    case needsIntervention(SagaIntervention)

    /// The output of a completed run, or `nil`.
    public var output: Output? {
        if case .completed(let output) = self { return output }
        return nil
    }

    /// The run's phase.
    public var phase: SagaStatus.Phase {
        switch self {
        case .completed: .completed
        case .compensated: .compensated
        case .needsIntervention: .needsIntervention
        }
    }
}

extension SagaOutcome: Equatable where Output: Equatable {}

/// A saga that needs an operator, and why.
public struct SagaIntervention: Sendable, Hashable, CustomStringConvertible {
    /// The saga's type name.
    public var saga: String
    /// The saga's id.
    public var id: String
    /// The run that stopped.
    public var run: Int
    /// What made the saga stop: the failed step, or the body's error.
    public var cause: SagaFailure
    /// The compensations that kept failing, each with its step's name; empty when the saga
    /// stopped for another reason (past the pivot, in doubt, nondeterminism).
    public var failedCompensations: [SagaFailure]

    /// Creates an intervention record.
    /// - Parameters:
    ///   - saga: The saga's type name.
    ///   - id: The saga's id.
    ///   - run: The run.
    ///   - cause: What made it stop.
    ///   - failedCompensations: The compensations that kept failing.
    public init(saga: String, id: String, run: Int, cause: SagaFailure, failedCompensations: [SagaFailure]) {
        self.saga = saga
        self.id = id
        self.run = run
        self.cause = cause
        self.failedCompensations = failedCompensations
    }

    /// One line: the saga, the cause and the failed compensations.
    public var description: String {
        var text = "\(self.saga) \(self.id) (run \(self.run)) needs intervention: \(self.cause)"
        if !self.failedCompensations.isEmpty {
            text += "; compensations failed: " + self.failedCompensations.map(\.description).joined(separator: "; ")
        }
        return text
    }
}

/// Where a saga stands, as its journal says: for sagas of any type.
public struct SagaStatus: Sendable, Hashable, CustomStringConvertible {
    /// A run's phase.
    public enum Phase: String, Sendable, Hashable, Codable {
        /// Started and not finished: running, or waiting to be resumed by recovery.
        case running
        /// Completed.
        case completed
        /// Compensated.
        case compensated
        /// Stopped, waiting for an operator.
        case needsIntervention
        /// Stopped and then marked resolved by an operator.
        case resolved
    }

    /// The saga's type name.
    public var saga: String
    /// The saga's id.
    public var id: String
    /// The latest run.
    public var run: Int
    /// The latest run's phase.
    public var phase: Phase
    /// What ended the run, when it did not complete.
    public var cause: SagaFailure?
    /// The compensations that kept failing.
    public var failedCompensations: [SagaFailure]

    /// `saga id run N: phase`.
    public var description: String {
        "\(self.saga) \(self.id) run \(self.run): \(self.phase.rawValue)" + (self.cause.map { " (\($0))" } ?? "")
    }
}

/// What ``SagaRunner/run(_:id:input:reuse:deadline:)`` does when the journal already holds a saga
/// with the same type and id.
public struct SagaReusePolicy: Hashable, Sendable, CustomStringConvertible {
    private enum Base: String, Hashable, Sendable {
        case rejectDuplicate, returnExisting, allowAfterFailure
    }
    private let base: Base
    private init(_ base: Base) { self.base = base }

    /// Refuse: throw ``SagaError/Code-swift.struct/duplicateSaga`` whatever the earlier run's
    /// state.
    public static let rejectDuplicate = SagaReusePolicy(.rejectDuplicate)
    /// Return the earlier run's outcome: its recorded outcome when it finished; when it is
    /// unfinished, resume it in the calling task — with the input its journal records, not the
    /// one given — (or wait for it, when it runs in this process) and return its outcome. The
    /// default: submitting the same id twice is harmless.
    public static let returnExisting = SagaReusePolicy(.returnExisting)
    /// As ``returnExisting``, except that a compensated run is followed by a new run (its steps
    /// get new idempotency keys). A completed run is returned, not run again; a run that needs
    /// intervention must be retried or resolved first.
    public static let allowAfterFailure = SagaReusePolicy(.allowAfterFailure)

    /// The policy's name.
    public var description: String { self.base.rawValue }
}
