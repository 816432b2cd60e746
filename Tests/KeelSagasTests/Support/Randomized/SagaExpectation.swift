import KeelSagas

/// What a ``SagaPlan`` must end in, worked out from the plan alone: the outcome's phase and cause,
/// which steps completed (their effect applied exactly once), which were compensated (exactly
/// once), whose compensation failed for good, and how often each action and compensation ran.
struct SagaExpectation: Sendable {
    /// What kind of error a cause records.
    enum CauseKind: Sendable, Hashable {
        case injected
        case timeout
        case cancellation
        /// One of several failing branches: whichever failed first.
        case any
    }

    struct Cause: Sendable, Hashable, CustomStringConvertible {
        /// The steps the cause may name (`nil`: the body itself threw, between steps).
        var steps: Set<String?>
        var kind: CauseKind

        var description: String {
            "\(self.kind) at " + self.steps.map { $0 ?? "(body)" }.sorted().joined(separator: " or ")
        }

        func matches(_ failure: SagaFailure) -> Bool {
            guard self.steps.contains(failure.step) else { return false }
            switch self.kind {
            case .injected: return failure.errorType == "InjectedFailure"
            case .timeout: return failure.errorType == "SagaError" && failure.message.contains("stepTimedOut")
            case .cancellation: return failure.isCancellation
            case .any: return true
            }
        }
    }

    var phase: SagaStatus.Phase = .completed
    var cause: Cause?
    /// Steps whose action completed: their effect applied once and stays unless compensated.
    var completed: [SagaPlan.Step] = []
    /// Steps compensated successfully.
    var compensated: [SagaPlan.Step] = []
    /// Steps whose compensation failed every attempt.
    var failedCompensations: [SagaPlan.Step] = []
    /// Calls of each step's action, by full name (absent: never called).
    var actionCalls: [String: Int] = [:]
    /// Calls of each step's compensation, by full name.
    var undoCalls: [String: Int] = [:]

    /// The money this saga moved to the merchant, net of compensations.
    var netMoney: Int {
        Self.money(self.completed) - Self.money(self.compensated)
    }

    /// The stock this saga keeps reserved, per item, net of compensations.
    var netStock: [Int: Int] {
        var stock: [Int: Int] = [:]
        for step in self.completed {
            if case .stock(let item, let quantity) = step.effect { stock[item, default: 0] += quantity }
        }
        for step in self.compensated {
            if case .stock(let item, let quantity) = step.effect { stock[item, default: 0] -= quantity }
        }
        return stock.filter { $0.value != 0 }
    }

    private static func money(_ steps: [SagaPlan.Step]) -> Int {
        steps.reduce(0) { sum, step in
            if case .money(let amount) = step.effect { return sum + amount }
            return sum
        }
    }

    init(_ plan: SagaPlan) {
        var pending: [SagaPlan.Step] = []
        var failure = self.walk(plan.items, pending: &pending)
        var isPastPivot = false
        if failure == nil, let pivot = plan.pivot {
            if let pivotFailure = self.run(pivot, attempts: pivot.attempts) {
                failure = pivotFailure
            } else {
                isPastPivot = true
            }
        }
        if let failure {
            self.compensate(pending)
            self.phase = self.failedCompensations.isEmpty ? .compensated : .needsIntervention
            self.cause = failure
            return
        }
        if isPastPivot {
            for item in plan.afterPivot {
                guard case .step(let step) = item else { continue }
                if let retriableFailure = self.run(step, attempts: SagaPlan.retriableAttempts) {
                    self.phase = .needsIntervention
                    self.cause = retriableFailure
                    return
                }
            }
        }
        if !self.failedCompensations.isEmpty {
            // A nested saga that failed and was caught could not compensate a step: the run
            // completes its body, then stops for an operator, naming a failed compensation.
            self.phase = .needsIntervention
            self.cause = Cause(steps: Set(self.failedCompensations.map(\.name)), kind: .any)
        }
    }

    /// Walks a sequence of items; returns the failure that stops it. Completed steps with an
    /// effect are added to `pending`, for the compensation that a later failure runs.
    private mutating func walk(_ items: [SagaPlan.Item], pending: inout [SagaPlan.Step]) -> Cause? {
        for item in items {
            switch item {
            case .step(let step):
                if let failure = self.run(step, attempts: step.attempts) { return failure }
                pending.append(step)
            case .timer:
                continue
            case .cancel:
                return Cause(steps: [nil], kind: .cancellation)
            case .parallel(_, let branches):
                var failing: Set<String?> = []
                for branch in branches {
                    for step in branch {
                        if self.run(step, attempts: step.attempts) != nil {
                            failing.insert(step.name)
                            break
                        }
                        pending.append(step)
                    }
                }
                if !failing.isEmpty { return Cause(steps: failing, kind: .any) }
            case .nested(_, let nestedItems, let catches):
                var nestedPending: [SagaPlan.Step] = []
                if let failure = self.walk(nestedItems, pending: &nestedPending) {
                    // A nested saga that fails compensates its own steps before its call throws.
                    self.compensate(nestedPending)
                    if catches { continue }
                    return failure
                }
                pending.append(contentsOf: nestedPending)
            }
        }
        return nil
    }

    /// Runs one step's attempts: records its calls; returns its failure, or `nil` (and records it
    /// completed) when an attempt succeeds.
    private mutating func run(_ step: SagaPlan.Step, attempts: Int) -> Cause? {
        var lastKind = CauseKind.injected
        for attempt in 1...attempts {
            self.actionCalls[step.name, default: 0] += 1
            if attempt == 1, let slow = step.slow, let timeout = step.timeout, slow > timeout {
                lastKind = .timeout
                continue
            }
            switch step.action {
            case .succeed, .requestCancel:
                self.completed.append(step)
                return nil
            case .failTransiently(let times, _) where attempt > times:
                self.completed.append(step)
                return nil
            case .failTransiently, .failPermanently:
                lastKind = .injected
            case .cancelSaga:
                // `CancellationError` is never retried.
                return Cause(steps: [step.name], kind: .cancellation)
            }
        }
        return Cause(steps: [step.name], kind: lastKind)
    }

    /// Compensates `steps`, newest first (the order does not matter to what is checked).
    private mutating func compensate(_ steps: [SagaPlan.Step]) {
        for step in steps.reversed() where step.effect != nil {
            switch step.undo {
            case .succeed:
                self.undoCalls[step.name, default: 0] += 1
                self.compensated.append(step)
            case .failTransiently(let times, _):
                self.undoCalls[step.name, default: 0] += times + 1
                self.compensated.append(step)
            case .failPermanently:
                self.undoCalls[step.name, default: 0] += SagaPlan.compensationAttempts
                self.failedCompensations.append(step)
            }
        }
    }
}
