import KeelCore
import KeelEventSourcing

extension ProcessManagerRunner {
    /// How a runner retries, delivers and cleans up.
    public struct Configuration: Sendable {
        /// The durable subscriptions' settings: how often the handling of one event is tried
        /// (a throwing handler, an undecodable state, a failed commit) and with what pauses, and
        /// what happens after the last attempt (by default the event is parked as a failed
        /// publication of its subscription, where ``/Keel/DurableSubscription/resubmit(position:)``
        /// delivers it again).
        public var subscription = ProjectionRunner.Configuration()
        /// How many times one effect is delivered before it is parked as failed
        /// (``ProcessManagerRunner/failedEffects()``). At least 1; default 10.
        public var deliveryAttempts: Int = 10 {
            didSet { precondition(self.deliveryAttempts >= 1, "deliveryAttempts must be at least 1") }
        }
        /// The pauses between the delivery attempts of one effect, and between the attempts of a
        /// timeout's handler, on the host's clock. Default: 100 ms doubling up to 30 s, without
        /// jitter.
        public var deliveryBackoff: Backoff = .exponential(
            initial: .milliseconds(100),
            maximum: .seconds(30),
            jitter: false
        )
        /// The time one command may take before its delivery counts as failed; `nil` for the
        /// request channel's own deadlines only. Default 30 s.
        public var commandTimeout: Duration? = .seconds(30)
        /// How many times a timeout's handler is tried when it throws (or its commit fails) before
        /// the timeout is left pending until the next start of the runner. At least 1; default 3.
        public var timeoutAttempts: Int = 3 {
            didSet { precondition(self.timeoutAttempts >= 1, "timeoutAttempts must be at least 1") }
        }
        /// How long a completed instance is kept (its last state, and the ids of the events it
        /// handled, so that a late duplicate is still recognised) before it is deleted; `nil` keeps
        /// it for ever. Default 7 days. An event for a deleted instance starts a new one, so keep
        /// it longer than any duplicate may arrive late.
        public var completedRetention: Duration? = .seconds(7 * 24 * 3600)
        /// How states and effects' payloads are encoded; JSON by default.
        public var codec: any EventCodec = JSONEventCodec()

        /// The default configuration.
        public init() {}
    }
}
