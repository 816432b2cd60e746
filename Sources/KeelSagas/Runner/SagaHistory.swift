/// What a saga's latest run did, read from its journal: the steps that completed and failed, the
/// compensations, and how it ended — for tests, dashboards and operators.
public struct SagaHistory: Sendable, Hashable {
    /// The saga's status.
    public var status: SagaStatus
    /// The steps (and pivot, retriable steps, timers and waits) that completed, in completion
    /// order.
    public var completed: [String]
    /// The steps whose failure the journal records, in journal order, with their failures.
    public var failed: [SagaFailure]
    /// The steps whose compensation completed, in completion order.
    public var compensated: [String]
    /// The compensations that gave up, with their last failures.
    public var failedCompensations: [SagaFailure]
    /// How many attempts each step made, by step name.
    public var attempts: [String: Int]
}

extension SagaRunner {
    /// What the latest run of the saga `id` named `saga` did, by its journal.
    /// - Parameters:
    ///   - saga: The saga's type name.
    ///   - id: The saga's id.
    /// - Returns: The history.
    /// - Throws: ``SagaError`` with ``SagaError/Code-swift.struct/notFound`` when the journal has no
    ///   such saga, or when it cannot be read.
    public func history(_ saga: String, id: String) async throws(SagaError) -> SagaHistory {
        guard
            let replay = try await self.runtime.journal.load(SagaRuntime.stream(saga: saga, id: id))
        else {
            throw SagaError(code: .notFound, message: "no saga \(saga) \(id) in the journal")
        }
        var history = SagaHistory(
            status: replay.status,
            completed: [],
            failed: [],
            compensated: [],
            failedCompensations: [],
            attempts: [:]
        )
        for entry in replay.entries {
            guard let name = entry.name else { continue }
            switch entry.kind {
            case .stepStarted:
                history.attempts[name] = max(history.attempts[name] ?? 0, entry.attempt ?? 1)
            case .stepCompleted, .timerFired:
                history.completed.append(name)
            case .stepFailed:
                if let failure = entry.failure { history.failed.append(failure) }
            case .compensationCompleted:
                history.compensated.append(name)
            case .compensationFailed:
                if let failure = entry.failure { history.failedCompensations.append(failure) }
            case .reopened:
                history.failedCompensations = []
            default:
                break
            }
        }
        return history
    }
}
