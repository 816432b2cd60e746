import KeelCore
import Synchronization

/// One sequential scope of a run: the root, a parallel branch, or a nested saga.
///
/// Items of a scope run one after another, each at the next index. The scope keeps what its
/// completed items would need to undo, in completion order, so that compensation walks it
/// backwards: a step's compensation, a parallel group's branches (compensated concurrently),
/// a nested saga's own scope.
final class SagaScope: Sendable {
    enum Node: Sendable {
        case step(SagaUndo)
        case branches([SagaScope])
        case nested(SagaScope)
    }

    struct State: Sendable {
        var nextIndex = 0
        var isBusy = false
        var nodes: [Node] = []
        /// Set when a nested saga's scope compensated itself: its nodes are done.
        var isCompensated = false
    }

    /// The scope's path in the run (empty for the root).
    let path: String
    /// What the names of this scope's items start with (a nested saga's name and `/`).
    let namePrefix: String
    /// Whether a pivot may be called here: only in the root scope.
    let isRoot: Bool
    let state: Lock<State>

    init(path: String, namePrefix: String, isRoot: Bool) {
        self.path = path
        self.namePrefix = namePrefix
        self.isRoot = isRoot
        self.state = Lock(State())
    }

    /// Takes the next index for an item, or throws when another item of this scope is running.
    func take(_ name: String) throws(SagaError) -> Int {
        let index: Int? = self.state.withLock { state in
            guard !state.isBusy else { return nil }
            state.isBusy = true
            defer { state.nextIndex += 1 }
            return state.nextIndex
        }
        guard let index else {
            throw SagaError(
                code: .concurrentSteps,
                message:
                    "\(name) started while another step of the same scope was running; run concurrent steps as branches of `parallel`"
            )
        }
        return index
    }

    func release() {
        self.state.withLock { $0.isBusy = false }
    }

    func add(_ node: Node) {
        self.state.withLock { state in
            // Room for a short saga's compensations at once, rather than growing by copying.
            if state.nodes.isEmpty { state.nodes.reserveCapacity(4) }
            state.nodes.append(node)
        }
    }
}

/// A completed step's compensation, ready to run.
struct SagaUndo: Sendable {
    var ref: SagaItemRef
    /// The step's full name.
    var step: String
    var compensate: @Sendable (SagaStepContext) async throws -> Void
}
