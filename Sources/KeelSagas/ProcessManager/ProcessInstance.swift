/// One process instance as stored: what ``ProcessManagerRunner/instance(for:)`` returns.
public struct ProcessInstance<State: Sendable>: Sendable {
    /// The correlation key that names the instance.
    public var correlationKey: String
    /// The instance's state; `nil` when its handlers left none.
    public var state: State?
    /// Whether a handler completed the instance (``ProcessContext/complete()``). A completed
    /// instance keeps its last state, ignores later events and has no pending timeouts; it is
    /// deleted after ``ProcessManagerRunner/Configuration/completedRetention``.
    public var isCompleted: Bool
    /// The pending timeouts, by due time.
    public var timeouts: [ProcessTimeout]
    /// How many messages (events and timeouts) the instance has handled.
    public var handledCount: Int

    /// Creates an instance's description.
    /// - Parameters:
    ///   - correlationKey: The instance's key.
    ///   - state: Its state.
    ///   - isCompleted: Whether it completed.
    ///   - timeouts: Its pending timeouts.
    ///   - handledCount: How many messages it handled.
    public init(
        correlationKey: String,
        state: State?,
        isCompleted: Bool,
        timeouts: [ProcessTimeout],
        handledCount: Int
    ) {
        self.correlationKey = correlationKey
        self.state = state
        self.isCompleted = isCompleted
        self.timeouts = timeouts
        self.handledCount = handledCount
    }
}
