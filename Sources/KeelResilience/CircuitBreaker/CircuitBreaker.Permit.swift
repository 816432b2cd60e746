extension CircuitBreaker {
    /// The right to make one call through a ``CircuitBreaker``, from ``CircuitBreaker/acquirePermit()``.
    ///
    /// Make the call, then consume the permit with exactly one of ``recordSuccess()``,
    /// ``recordResult(_:)``, ``recordFailure(_:)`` or ``release()``. The permit is noncopyable:
    /// the compiler rejects recording twice or using it after recording. A permit that goes out of
    /// scope without an outcome counts as a cancelled call (it never counts as a failure, and a
    /// half-open permit returns its probe slot), so an early return or a thrown error between
    /// admission and recording cannot leave a half-open breaker waiting for a probe that never
    /// reports.
    ///
    /// A permit keeps its breaker alive. It is `Sendable`: a call may start on one task and be
    /// recorded on another. Recording never suspends; classification (the breaker's
    /// ``Configuration/errorClassification`` and ``Configuration/isFailureResult``) runs on the
    /// recording task, outside any lock. An outcome recorded after the breaker has changed state
    /// since the permit was granted no longer counts.
    public struct Permit: ~Copyable, Sendable {
        /// The breaker, retained by hand so that the permit's fields stay trivial and `discard`
        /// can skip the deinit once an outcome is recorded.
        private let breaker: Unmanaged<CircuitBreaker>
        private let permit: CircuitBreakerStateMachine.Permit
        private let start: Duration

        init(breaker: CircuitBreaker, permit: CircuitBreakerStateMachine.Permit, start: Duration) {
            self.breaker = Unmanaged.passRetained(breaker)
            self.permit = permit
            self.start = start
        }

        /// Records that the call succeeded.
        public consuming func recordSuccess() {
            self.finish(.success, error: nil)
        }

        /// Records the value the call returned: a success, unless the breaker's
        /// ``Configuration/isFailureResult`` counts it as a failure.
        /// - Parameter value: What the call returned.
        public consuming func recordResult(_ value: some Sendable) {
            let breaker = self.breaker.takeUnretainedValue()
            self.finish(breaker.classify(value), error: nil)
        }

        /// Records the error the call threw, classified by the breaker's
        /// ``Configuration/errorClassification``: a failure, a success, or ignored;
        /// `CancellationError` (or any error while the recording task is cancelled) is never a
        /// failure.
        /// - Parameter error: What the call threw.
        public consuming func recordFailure(_ error: any Error) {
            let breaker = self.breaker.takeUnretainedValue()
            self.finish(breaker.classify(error), error: error)
        }

        /// Gives the permit back without an outcome, as if the call had been cancelled: nothing is
        /// counted and a half-open probe slot is freed. The same happens when a permit goes out of
        /// scope unconsumed.
        public consuming func release() {
            self.finish(.cancelled, error: nil)
        }

        private consuming func finish(_ outcome: CircuitBreakerStateMachine.Outcome, error: (any Error)?) {
            let breaker = self.breaker.takeRetainedValue()
            breaker.record(self.permit, outcome, start: self.start, error: error)
            discard self
        }

        deinit {
            let breaker = self.breaker.takeRetainedValue()
            breaker.record(self.permit, .cancelled, start: self.start, error: nil)
        }
    }
}
