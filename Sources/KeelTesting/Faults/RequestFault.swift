import Keel

/// What an injected fault does to one attempt of a request.
///
/// Give it to ``FaultInjector/inject(_:into:when:)``. The fault replaces or holds up the call of
/// the handler, inside the route's policy, so a retry, a timeout or a circuit breaker on the route
/// sees it as it would see the handler misbehave.
///
/// ```swift
/// test.faults.inject(.failure(GatewayDown()), into: ChargePayment.self, when: .next(2))
/// test.faults.inject(.delay(.seconds(3)), into: Quote.self)
/// test.faults.inject(.timeout, into: Lookup.self, when: .probability(0.1))
/// ```
public struct RequestFault: Sendable, CustomStringConvertible {
    let action: RequestFaultAction

    /// Fails the attempt as if the handler had thrown `error`, without calling the handler.
    ///
    /// The caller gets ``/Keel/RequestError`` with code ``/Keel/RequestError/Code-swift.struct/handlerFailed``
    /// and `error` as its ``/Keel/RequestError/underlying``, and the route counts a failure. A
    /// resilience pipeline on the route sees `error` itself, as it sees a handler's error: a
    /// breaker that records that type counts it, a retry that retries it tries again (and the
    /// injector is asked again for the new attempt).
    /// - Parameters:
    ///   - error: The error the handler is to have thrown.
    ///   - delay: How long the attempt takes before it fails, on the host's clock (zero by
    ///     default: it fails at once); for slow failures, such as those a slow-call-rate breaker
    ///     counts. Not negative.
    /// - Returns: The fault.
    public static func failure(_ error: any Error, after delay: Duration = .zero) -> RequestFault {
        precondition(delay >= .zero, "a failure's delay must not be negative, got \(delay)")
        return RequestFault(action: .fail(error, after: delay))
    }

    /// Holds the attempt for `duration` on the host's clock, then calls the handler.
    ///
    /// The delay is a sleep on the host's clock, so with a ``TestClock`` the attempt waits until
    /// the test advances the clock (it counts as a sleeper). If the caller's deadline passes or a
    /// timeout on the route runs out during the delay, the handler is not called and the caller
    /// gets ``/Keel/RequestError/Code-swift.struct/deadlineExceeded``; if the caller is cancelled,
    /// ``/Keel/RequestError/Code-swift.struct/cancelled``.
    /// - Parameter duration: The delay; not negative.
    /// - Returns: The fault.
    public static func delay(_ duration: Duration) -> RequestFault {
        precondition(duration >= .zero, "a delay must not be negative, got \(duration)")
        return RequestFault(action: .delay(duration))
    }

    /// Never answers: the attempt waits, without calling the handler, until it is cancelled.
    ///
    /// With a deadline (the caller's, or one it inherited), the call fails with
    /// ``/Keel/RequestError/Code-swift.struct/deadlineExceeded`` when the deadline passes, as a
    /// handler that never returns would. A `Timeout` in the route's policy ends the attempt when it
    /// runs out (``/Keel/RequestError/Code-swift.struct/deadlineExceeded`` with the `TimeoutError`
    /// as the cause, or a retry of the attempt). Without either, the call waits until the caller's
    /// task is cancelled, then fails with ``/Keel/RequestError/Code-swift.struct/cancelled``: send
    /// such calls from a task the test cancels, or they hold up the host's shutdown.
    ///
    /// The wait is not a sleep on the clock: it adds no sleeper to a ``TestClock``.
    public static let timeout = RequestFault(action: .timeout)

    /// `failure(…)`, `delay(…)` or `timeout`.
    public var description: String {
        switch self.action {
        case .fail(let error, let after):
            after == .zero ? "failure(\(error))" : "failure(\(error), after: \(after))"
        case .delay(let duration): "delay(\(duration))"
        case .timeout: "timeout"
        }
    }
}
