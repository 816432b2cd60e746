import KeelCore
import KeelResilience
import KeelSagas
import KeelTesting

/// A randomized saga: runs its plan's items, its pivot and the retriable steps after it.
struct RandomSaga: Saga {
    static let name = "random.saga"
    let plan: SagaPlan
    let performer: PlanPerformer

    func run(_ index: Int, saga: SagaContext) async throws -> Int {
        try await self.performer.perform(self.plan.items, in: saga)
        if let pivot = self.plan.pivot {
            try await self.performer.perform(pivot, as: .pivot, in: saga)
        }
        for item in self.plan.afterPivot {
            switch item {
            case .step(let step): try await self.performer.perform(step, as: .retriable, in: saga)
            default: try await self.performer.perform([item], in: saga)
            }
        }
        return index
    }
}

/// A randomized saga's nested saga: its items, in the parent's journal.
struct RandomNestedSaga: Saga {
    static let name = "random.nested"
    let items: [SagaPlan.Item]
    let performer: PlanPerformer

    func run(_ index: Int, saga: SagaContext) async throws -> Int {
        try await self.performer.perform(self.items, in: saga)
        return index
    }
}

/// Carries out one saga's plan against the ledger, on the virtual time.
struct PlanPerformer: Sendable {
    enum Kind {
        case step, pivot, retriable
    }

    let index: Int
    let ledger: SagaLedger
    let time: VirtualTime
    let cancellation: CancelRequest
    /// Retry strategies by attempts (2 and 3), immediate, on the test clock.
    let retries: [Int: Retry]

    func perform(_ items: [SagaPlan.Item], in saga: SagaContext) async throws {
        for item in items {
            switch item {
            case .step(let step):
                try await self.perform(step, as: .step, in: saga)
            case .timer(let name, let duration):
                let token = self.time.park(wakingAfter: duration, sleepers: 1)
                do {
                    try await saga.sleep(name, for: duration)
                } catch {
                    self.time.unpark(token)
                    throw error
                }
            case .cancel:
                self.cancellation.request()
                try await Cancellation.arrival()
            case .nested(let name, let items, let catches):
                do {
                    _ = try await saga.run(
                        RandomNestedSaga(items: items, performer: self),
                        self.index,
                        as: name
                    )
                } catch let failure as SagaStepFailure where catches {
                    _ = failure  // the nested saga compensated itself; this body goes on
                }
            case .parallel(let name, let branches):
                try await self.perform(name, branches, in: saga)
            }
        }
    }

    private func perform(_ name: String, _ branches: [[SagaPlan.Step]], in saga: SagaContext) async throws {
        let units = BranchUnits(branches: branches.count, time: self.time)
        let barrier = SiblingBarrier(branches: branches.count, time: self.time)
        defer { units.bodyResumed() }
        let branch = { (number: Int) -> @Sendable (SagaContext) async throws -> Int in
            { context in
                units.branchStarted()
                defer {
                    barrier.settle(number)
                    units.branchEnded()
                }
                for step in branches[number] {
                    try await self.perform(step, as: .step, in: context, barrier: barrier, branch: number)
                }
                return number
            }
        }
        switch branches.count {
        case 2: _ = try await saga.parallel(name, branch(0), branch(1))
        case 3: _ = try await saga.parallel(name, branch(0), branch(1), branch(2))
        default: preconditionFailure("a plan's group has 2 or 3 branches, not \(branches.count)")
        }
    }

    func perform(
        _ step: SagaPlan.Step,
        as kind: Kind,
        in saga: SagaContext,
        barrier: SiblingBarrier? = nil,
        branch: Int = 0
    ) async throws {
        let action: @Sendable (SagaStepContext) async throws -> SagaLedger.Receipt = { context in
            try await self.act(step, context, barrier: barrier, branch: branch)
        }
        switch kind {
        case .step:
            let options = SagaStepOptions(isIdempotent: true, timeout: step.timeout, retry: self.retries[step.attempts])
            if step.effect == nil {
                _ = try await saga.step(step.localName, options, action: action)
            } else {
                _ = try await saga.step(step.localName, options, action: action) { receipt, context in
                    try await self.undo(step, receipt, context)
                }
            }
        case .pivot:
            let options = SagaStepOptions(isIdempotent: true, timeout: step.timeout, retry: self.retries[step.attempts])
            _ = try await saga.pivot(step.localName, options, action: action)
        case .retriable:
            _ = try await saga.retriable(step.localName, SagaStepOptions(timeout: step.timeout), action: action)
        }
    }

    private func act(
        _ step: SagaPlan.Step,
        _ context: SagaStepContext,
        barrier: SiblingBarrier?,
        branch: Int
    ) async throws -> SagaLedger.Receipt {
        self.ledger.recordActionCall(context.idempotencyKey)
        if context.attempt == 1, let slow = step.slow {
            let wake = step.timeout.map { min($0, slow) } ?? slow
            let token = self.time.park(wakingAfter: wake, sleepers: step.timeout == nil ? 1 : 2)
            do {
                try await self.time.clock.sleep(for: slow)
            } catch {
                self.time.unpark(token)
                throw error
            }
        }
        if step.waitsForSiblings, let barrier {
            barrier.settle(branch)
            try await barrier.wait(branch: branch)
        }
        switch step.action {
        case .succeed:
            break
        case .requestCancel:
            self.cancellation.request()
        case .cancelSaga:
            self.cancellation.request()
            try await Cancellation.arrival()
            throw CancellationError()
        case .failPermanently:
            throw SagaLedger.InjectedFailure(operation: context.step)
        case .failTransiently(let times, let afterEffect):
            if context.attempt <= times {
                if afterEffect { _ = self.ledger.apply(step.effect, saga: self.index, key: context.idempotencyKey) }
                throw SagaLedger.InjectedFailure(operation: "\(context.step) attempt \(context.attempt)")
            }
        }
        return self.ledger.apply(step.effect, saga: self.index, key: context.idempotencyKey)
    }

    private func undo(_ step: SagaPlan.Step, _ receipt: SagaLedger.Receipt, _ context: SagaStepContext) async throws {
        self.ledger.recordUndoCall(receipt.key)
        switch step.undo {
        case .succeed:
            break
        case .failPermanently:
            throw SagaLedger.InjectedFailure(operation: context.step)
        case .failTransiently(let times, let afterEffect):
            if context.attempt <= times {
                if afterEffect { self.ledger.reverse(receipt) }
                throw SagaLedger.InjectedFailure(operation: "\(context.step) attempt \(context.attempt)")
            }
        }
        self.ledger.reverse(receipt)
        self.ledger.recordUndoReturn(receipt.key)
    }
}
