extension CircuitBreaker {
    /// The state of a ``CircuitBreaker``.
    ///
    /// `closed`, `open` and `halfOpen` are the automatic states the breaker moves between by
    /// itself; `forcedOpen`, `disabled` and `metricsOnly` are entered only by manual control and
    /// left only by ``CircuitBreaker/reset()``. The set may grow, so it is a struct with static
    /// members rather than an enum; compare with `==` or `switch` with a `default`.
    ///
    /// A `State` is a plain value: reading one never suspends, and it may be sent anywhere.
    public struct State: Hashable, Sendable, CustomStringConvertible {
        enum Base: UInt8, Sendable {
            case closed = 0
            case open = 1
            case halfOpen = 2
            case forcedOpen = 3
            case disabled = 4
            case metricsOnly = 5
        }

        let base: Base

        init(_ base: Base) {
            self.base = base
        }

        /// Calls pass and their outcomes are recorded; a tripped policy opens the breaker.
        public static let closed = State(.closed)
        /// Calls are rejected with ``CircuitBreakerError/Code/open`` until the open duration ends.
        public static let open = State(.open)
        /// A limited number of probe calls pass; their outcomes decide between closed and open.
        public static let halfOpen = State(.halfOpen)
        /// Every call is rejected with ``CircuitBreakerError/Code/forcedOpen`` until a reset.
        public static let forcedOpen = State(.forcedOpen)
        /// Every call passes and nothing is recorded, until a reset.
        public static let disabled = State(.disabled)
        /// Every call passes and is recorded (metrics and events), but the breaker never opens.
        public static let metricsOnly = State(.metricsOnly)

        /// Whether calls are admitted without limit in this state.
        public var admitsAllCalls: Bool {
            switch self.base {
            case .closed, .disabled, .metricsOnly: true
            case .open, .halfOpen, .forcedOpen: false
            }
        }

        /// The state's name: `closed`, `open`, `halfOpen`, `forcedOpen`, `disabled`, `metricsOnly`.
        public var description: String {
            switch self.base {
            case .closed: "closed"
            case .open: "open"
            case .halfOpen: "halfOpen"
            case .forcedOpen: "forcedOpen"
            case .disabled: "disabled"
            case .metricsOnly: "metricsOnly"
            }
        }
    }
}
