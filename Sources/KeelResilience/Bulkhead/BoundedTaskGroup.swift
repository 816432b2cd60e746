/// A task group whose running children are bounded by a ``Bulkhead``: adding a child suspends
/// until a permit is free.
///
/// Get one from ``Bulkhead/withTaskGroup(_:)`` or ``withBoundedTaskGroup(maxConcurrentChildren:_:)``.
/// It wraps a throwing discarding task group: the group awaits every child before its scope
/// returns; when a child throws, the group cancels the other children and the scope rethrows the
/// first error. Children's results are discarded; collect what you need through your own state.
///
/// ## Concurrency contract
/// Use the group only inside its scope and only from the task that runs the scope, as with any
/// task group. Each child holds one permit from the moment it is added until it returns or
/// throws. ``addTask(_:)`` suspends the adding task while no permit is free, in FIFO order with
/// every other user of the bulkhead.
public struct BoundedTaskGroup {
    private var group: ThrowingDiscardingTaskGroup<any Error>
    private let storage: BulkheadStorage

    init(group: ThrowingDiscardingTaskGroup<any Error>, storage: BulkheadStorage) {
        self.group = group
        self.storage = storage
    }

    /// Waits for a permit, then starts `operation` as a child task that holds it until it ends.
    ///
    /// If the group has been cancelled (a child threw, or ``cancelAll()`` was called), the child
    /// is not started and the permit goes back at once: the call returns `false` so that a loop
    /// adding children can stop; the scope then rethrows the child's error.
    /// - Parameter operation: The child's work. If it throws, the group cancels its siblings.
    /// - Returns: `true` if the child was started, `false` if the group was cancelled.
    /// - Throws: ``BulkheadError`` if the bulkhead refuses the permit (queue full or
    ///   `maxWait` reached), `CancellationError` if the adding task is cancelled while it waits.
    @discardableResult
    public mutating func addTask(_ operation: sending @escaping () async throws -> Void) async throws -> Bool {
        try await self.storage.acquire(weight: 1)
        let storage = self.storage
        let isAdded = self.group.addTaskUnlessCancelled {
            defer { storage.release(weight: 1) }
            try await operation()
        }
        if !isAdded {
            storage.release(weight: 1)
        }
        return isAdded
    }

    /// Cancels every child running now and every child added later.
    public func cancelAll() {
        self.group.cancelAll()
    }

    /// Whether the group has been cancelled, by ``cancelAll()`` or by a child that threw.
    public var isCancelled: Bool {
        self.group.isCancelled
    }
}

extension Bulkhead {
    /// Runs `body` with a task group whose running children are bounded by this bulkhead.
    ///
    /// The scope returns only when `body` has returned and every child has finished. If a child
    /// throws, the other children are cancelled, children not yet added are refused, and the
    /// child's error is rethrown. If `body` throws, the children are cancelled and awaited, then
    /// the error is rethrown. Children share the bulkhead's permits with every other caller of
    /// ``run(_:)``.
    /// - Parameter body: Adds children with ``BoundedTaskGroup/addTask(_:)``.
    /// - Returns: What `body` returns.
    /// - Throws: The first error of a child or of `body`, including a ``BulkheadError`` from
    ///   ``BoundedTaskGroup/addTask(_:)``.
    public func withTaskGroup<Result>(
        _ body: (inout BoundedTaskGroup) async throws -> Result
    ) async throws -> Result {
        try await withThrowingDiscardingTaskGroup(returning: Result.self) { group in
            var bounded = BoundedTaskGroup(group: group, storage: self.storage)
            return try await body(&bounded)
        }
    }
}

/// Runs `body` with a task group that runs at most `maxConcurrentChildren` children at once.
///
/// A shorthand for a private ``Bulkhead`` with no wait limit and its
/// ``Bulkhead/withTaskGroup(_:)``: adding a child suspends until one of the running children
/// ends. The scope awaits every child; a child that throws cancels its siblings and its error
/// is rethrown.
///
/// ```swift
/// try await withBoundedTaskGroup(maxConcurrentChildren: 4) { group in
///     for url in urls {
///         try await group.addTask { try await fetch(url) }
///     }
/// }
/// ```
/// - Parameters:
///   - maxConcurrentChildren: The most children running at once; at least 1.
///   - body: Adds children.
/// - Returns: What `body` returns.
/// - Throws: The first error of a child or of `body`.
public func withBoundedTaskGroup<Result>(
    maxConcurrentChildren: Int,
    _ body: (inout BoundedTaskGroup) async throws -> Result
) async throws -> Result {
    let bulkhead = Bulkhead(
        name: "bounded-task-group",
        configuration: .init(maxConcurrent: maxConcurrentChildren, maxQueued: 1, maxWait: nil)
    )
    return try await bulkhead.withTaskGroup(body)
}
