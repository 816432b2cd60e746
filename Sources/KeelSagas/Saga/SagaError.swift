/// Why a saga could not be started, run or resumed.
///
/// A saga whose steps fail does not throw: its ``SagaOutcome`` says it was compensated or needs an
/// operator. `SagaError` is for what keeps the runner from doing its work: a duplicate id, an
/// unknown saga type, a journal that cannot be written or read, a body that breaks the
/// determinism rule, a step misused. ``underlying`` carries the cause where there is one.
public struct SagaError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure this is. New codes may be added; switch with a `default`.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case duplicateSaga, unknownSaga, journalUnavailable, journalCorrupt, journalFromNewerVersion
            case nondeterminism, duplicateStepName, stepAfterPivot, misplacedPivot, concurrentSteps
            case stepTimedOut, stepInDoubt, suspended, notFound, invalidArgument, notInIntervention
            case encodingFailed
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// A saga with this id exists and the reuse policy refuses a new run
        /// (``SagaReusePolicy/rejectDuplicate``, or an unfinished or intervened run).
        public static let duplicateSaga = Code(.duplicateSaga)
        /// No saga of the journal's type is registered with the runner, so it cannot be resumed.
        public static let unknownSaga = Code(.unknownSaga)
        /// The journal's event store failed; ``SagaError/underlying`` is its error. The saga stays
        /// unfinished in the journal and is resumed by the next recovery.
        public static let journalUnavailable = Code(.journalUnavailable)
        /// The journal holds an entry that cannot be decoded, or entries in an impossible order.
        public static let journalCorrupt = Code(.journalCorrupt)
        /// The journal holds an entry of a schema version newer than this version of Keel reads.
        public static let journalFromNewerVersion = Code(.journalFromNewerVersion)
        /// On replay, the body called a step other than the one the journal records at that
        /// point, or no longer reached a recorded step: it broke the determinism rule of
        /// ``Saga``.
        public static let nondeterminism = Code(.nondeterminism)
        /// Two steps (or timers, branches, nested sagas) of one run have the same name.
        public static let duplicateStepName = Code(.duplicateStepName)
        /// A compensatable step was called after the saga's pivot completed: past the pivot, only
        /// retriable steps may follow.
        public static let stepAfterPivot = Code(.stepAfterPivot)
        /// A pivot was called inside a parallel branch or a nested saga, or a second time.
        public static let misplacedPivot = Code(.misplacedPivot)
        /// Two steps of one scope ran at the same time (for example from `async let`): run
        /// concurrent steps as branches of ``SagaContext/parallel(_:_:)``.
        public static let concurrentSteps = Code(.concurrentSteps)
        /// A step's attempt ran past its timeout.
        public static let stepTimedOut = Code(.stepTimedOut)
        /// Recovery found a step that started but was not recorded as completed, and the step is
        /// not idempotent, so running it again could repeat its effect. It is the ``SagaFailure/error``
        /// of such a step's failure, in the process that found it.
        public static let stepInDoubt = Code(.stepInDoubt)
        /// The runner is shutting down: the saga stopped between steps, unfinished, and the next
        /// recovery resumes it.
        public static let suspended = Code(.suspended)
        /// No saga with this id is in the journal.
        public static let notFound = Code(.notFound)
        /// An argument is invalid: an empty name or id, or a name with `:`.
        public static let invalidArgument = Code(.invalidArgument)
        /// The operator call applies only to a saga that needs intervention.
        public static let notInIntervention = Code(.notInIntervention)
        /// An input or output could not be encoded or decoded; ``SagaError/underlying`` is the
        /// coder's error.
        public static let encodingFailed = Code(.encodingFailed)

        /// The code's name.
        public var description: String { self.base.rawValue }
    }

    /// What kind of failure this is.
    public var code: Code
    /// A human-readable explanation.
    public var message: String
    /// The cause, where there is one.
    public var underlying: (any Error)?

    /// Creates an error.
    /// - Parameters:
    ///   - code: What kind of failure.
    ///   - message: An explanation.
    ///   - underlying: The cause.
    public init(code: Code, message: String, underlying: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.underlying = underlying
    }

    /// `SagaError(code): message (cause)`.
    public var description: String {
        var text = "SagaError(\(self.code)): \(self.message)"
        if let underlying { text += " (cause: \(underlying))" }
        return text
    }
}
