import Keel
import KeelCore
import KeelResilience

/// The strategies that guard the shop's calls to the payment gateway, and the pipeline that
/// composes them, installed as the policy of the `ChargePayment` route.
///
/// The strategies hold the state (the breaker's memory of recent calls, the bulkhead's permits,
/// the budget's counts), so there is one set for the one gateway, shared by every charge; the
/// program keeps this value to watch the breaker and to print their metrics.
///
/// The numbers are small so that the sample runs in a second or two: a real gateway would get
/// seconds, not milliseconds.
public struct PaymentResilience: Sendable {
    /// How long one attempt may wait for the gateway.
    package static let attemptTimeout = Duration.milliseconds(40)
    /// How long the breaker stays open before it lets probes through, unless the initializer is
    /// told otherwise.
    public static let openDuration = Duration.milliseconds(150)

    /// Shared by every charge, so that a failing gateway sees at most a bounded share of extra
    /// calls, however many orders retry at once.
    package let budget: RetryBudget
    package let retry: Retry
    /// The circuit breaker `payment-gateway`: opens when half of the last ten attempts failed, or
    /// five in a row; while open, a charge fails at once with `RequestError` code `circuitOpen`.
    public let breaker: CircuitBreaker
    /// The bulkhead `payment-gateway`: two calls at the gateway at once, one more may wait 15 ms;
    /// a charge it turns away fails with `RequestError` code `bulkheadFull`.
    public let bulkhead: Bulkhead
    package let timeout: Timeout
    /// The four strategies, outermost first: the policy of the `ChargePayment` route.
    public let pipeline: ResiliencePipeline

    /// Makes the strategies and their pipeline.
    /// - Parameters:
    ///   - clock: The clock of every timer and wait (the host's).
    ///   - random: The source of the strategies' jitter.
    ///   - telemetry: Where the strategies report their metrics.
    ///   - openDuration: How long the breaker stays open before it lets probes through.
    ///   - maxConcurrentCharges: How many calls the bulkhead lets at the gateway at once; as many
    ///     again may wait 15 ms for a permit, the rest are turned away. At least 1. The walk-through's
    ///     2 shed a fifth to a half of the orders of 16 concurrent clients in shop-server's load check.
    public init(
        clock: any Clock<Duration>,
        random: RandomSource,
        telemetry: any Telemetry,
        openDuration: Duration = PaymentResilience.openDuration,
        maxConcurrentCharges: Int = 2
    ) {
        precondition(maxConcurrentCharges >= 1, "maxConcurrentCharges must be at least 1: \(maxConcurrentCharges)")
        self.budget = RetryBudget(configuration: .init(ratio: 0.2, minimumRetries: 3), clock: clock)
        self.retry = Retry(
            name: "payment",
            configuration: .init(
                maxAttempts: 2,
                backoff: .constant(.milliseconds(10)),
                budget: self.budget,
                shouldRetryError: Self.isWorthRetrying
            ),
            clock: clock,
            random: random,
            telemetry: telemetry
        )

        var policy = CircuitBreaker.Configuration()
        // Open when half of the last ten attempts failed, or five failed in a row.
        policy.window = .lastCalls(10)
        policy.minimumNumberOfCalls = 10
        policy.failureRateThreshold = 0.5
        policy.consecutiveFailureThreshold = 5
        policy.openDuration = .fixed(openDuration)
        // Two probes, and the move to half-open happens on the clock, so the program sees it.
        policy.permittedCallsInHalfOpen = 2
        policy.halfOpenTransition = .automatic
        // A bulkhead refusal says the shop is busy, not that the gateway is failing.
        policy.errorClassification = .lists(ignore: [BulkheadError.self])
        self.breaker = CircuitBreaker(
            name: "payment-gateway",
            configuration: policy,
            clock: clock,
            random: random,
            telemetry: telemetry
        )

        // Two calls at the gateway at once (unless told otherwise), one more may wait a little
        // (as many more as may run), the rest are turned away.
        self.bulkhead = Bulkhead(
            name: "payment-gateway",
            configuration: .init(
                maxConcurrent: maxConcurrentCharges,
                maxQueued: maxConcurrentCharges == 2 ? 1 : maxConcurrentCharges,
                maxWait: .milliseconds(15)
            ),
            clock: clock,
            telemetry: telemetry
        )
        self.timeout = Timeout(name: "payment-attempt", duration: Self.attemptTimeout, clock: clock, random: random)

        // Outermost first:
        // - retry outside the breaker, so that the breaker counts every attempt, and once it
        //   opens it refuses the remaining retries at once instead of letting them reach the
        //   gateway;
        // - breaker outside the bulkhead, so that a refused call never takes a permit;
        // - bulkhead outside the timeout, so that an attempt holds its permit only as long as the
        //   timeout lets it run;
        // - the timeout innermost, per attempt, so that a slow attempt is cut and counted by the
        //   breaker as a failure, and the retry gets a fresh attempt with a fresh timeout.
        // (The builder's closure may not capture `self` before every property is set: hence locals.)
        let (retry, breaker, bulkhead, timeout) = (self.retry, self.breaker, self.bulkhead, self.timeout)
        self.pipeline = ResiliencePipeline {
            retry
            breaker
            bulkhead
            timeout
        }
    }

    /// Retry what a second attempt may fix: a gateway that said "try again", or an attempt that
    /// timed out. A refusal by the breaker or the bulkhead is not retried: the pipeline said no.
    @Sendable
    private static func isWorthRetrying(_ error: any Error) -> Bool {
        switch error {
        case is TimeoutError:
            true
        case is GatewayError:
            // The strategies of a route see the handler's own error, not the RequestError around it.
            true
        default:
            false
        }
    }
}
