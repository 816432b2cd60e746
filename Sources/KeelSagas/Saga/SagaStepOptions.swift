import KeelResilience

/// How a step runs: whether it may run again after a crash, how long an attempt may take, and how
/// often it is attempted before it fails.
///
/// ```swift
/// let payment = try await saga.step("pay", SagaStepOptions(isIdempotent: true, timeout: .seconds(2), retry: payRetry)) { step in
///     try await payments.charge(order.total, key: step.idempotencyKey)
/// } compensate: { payment, _ in
///     try await payments.refund(payment.id)
/// }
/// ```
public struct SagaStepOptions: Sendable {
    /// Whether the step may run again with the same idempotency key without repeating its effect.
    ///
    /// When recovery finds the step started but not recorded as completed (the process died
    /// during it), an idempotent step runs again with the same ``SagaStepContext/idempotencyKey``;
    /// a step that is not is *in doubt*: the saga compensates the steps before it, and, if the
    /// step itself has a compensation, stops as needing intervention, since nobody knows whether
    /// its effect happened. Default `false`.
    public var isIdempotent: Bool
    /// The longest one attempt may run, on the runner's clock; `nil` (the default) for no limit.
    /// An attempt past it is cancelled, awaited, and fails with
    /// ``SagaError/Code-swift.struct/stepTimedOut``.
    public var timeout: Duration?
    /// Retries the step's attempts (KeelResilience's ``/KeelResilience/Retry``, on its own clock);
    /// `nil` (the default) for a single attempt. Each attempt is journaled.
    ///
    /// Only for ``SagaContext/step(_:_:action:compensate:)->_`` and
    /// ``SagaContext/pivot(_:_:action:)->_``: a retriable step is retried by the runner's
    /// ``SagaRunner/Configuration/retriableAttempts`` and
    /// ``SagaRunner/Configuration/retriableBackoff``.
    public var retry: Retry?

    /// Creates step options.
    /// - Parameters:
    ///   - isIdempotent: Whether the step may run again after a crash.
    ///   - timeout: The longest one attempt may run.
    ///   - retry: The retry strategy of the step's attempts.
    public init(isIdempotent: Bool = false, timeout: Duration? = nil, retry: Retry? = nil) {
        self.isIdempotent = isIdempotent
        self.timeout = timeout
        self.retry = retry
    }

    /// An idempotent step with a single attempt and no timeout.
    public static var idempotent: SagaStepOptions { SagaStepOptions(isIdempotent: true) }
}

/// What a step's action (or compensation) knows about the call it is making.
public struct SagaStepContext: Sendable, Hashable {
    /// The saga's type name.
    public var saga: String
    /// The saga's id.
    public var sagaID: String
    /// The step's full name (a nested saga's steps carry the nested saga's name in front:
    /// `payment/charge`).
    public var step: String
    /// The attempt, from 1: retries and recovery count on.
    public var attempt: Int
    /// The saga's run: 1, and more after a run allowed by ``SagaReusePolicy/allowAfterFailure``.
    public var run: Int

    /// The step's stable idempotency key: the same every time this step of this saga runs,
    /// including after a crash: `<saga id>/<step>`, with `#<run>` after the id from a saga's
    /// second run on. Pass it to the service the step calls, so that a repeated call has no
    /// second effect. A compensation gets `<key>/compensate`. (Made when it is read: a step that
    /// does not use it does not pay for it.)
    public var idempotencyKey: String {
        self.run == 1 ? self.sagaID + "/" + self.step : self.sagaID + "#" + String(self.run) + "/" + self.step
    }
}
