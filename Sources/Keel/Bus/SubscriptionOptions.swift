import KeelCore
import KeelResilience

/// What a subscriber's mailbox does when it is full.
public struct OverflowPolicy: Sendable, Hashable, CustomStringConvertible {
    enum Base: String, Hashable, Sendable {
        case suspendPublisher, dropOldest, dropNewest
    }
    let base: Base
    private init(_ base: Base) { self.base = base }

    /// The publisher waits until the subscriber has room (the default). Nothing is lost; a slow
    /// subscriber slows those who publish to it, and nobody else.
    public static let suspendPublisher = OverflowPolicy(.suspendPublisher)
    /// The oldest buffered event is dropped to make room for the new one.
    public static let dropOldest = OverflowPolicy(.dropOldest)
    /// The new event is dropped.
    public static let dropNewest = OverflowPolicy(.dropNewest)

    /// The policy's name.
    public var description: String { self.base.rawValue }
}

/// How often and how patiently a failing event handler is retried before its event goes to the
/// dead-letter queue.
///
/// The waits between attempts are a ``/KeelCore/Backoff``, the schedule every Keel retry uses;
/// each event starts it again, and jitter (if the backoff has any) is drawn from the bus's
/// ``/KeelCore/RandomSource``. The default waits 10 ms, then 20 ms, doubling up to 1 s, without
/// jitter.
public struct RedeliveryPolicy: Sendable, Hashable {
    /// Attempts in all, the first included; at least 1.
    public var maxAttempts: Int
    /// The waits between attempts, on the bus's clock. Default
    /// `.exponential(initial: .milliseconds(10), maximum: .seconds(1), jitter: false)`.
    public var backoff: Backoff

    /// Creates a policy.
    /// - Parameters:
    ///   - maxAttempts: Attempts in all, at least 1.
    ///   - backoff: The waits between attempts.
    public init(
        maxAttempts: Int = 3,
        backoff: Backoff = .exponential(initial: .milliseconds(10), maximum: .seconds(1), jitter: false)
    ) {
        precondition(maxAttempts >= 1, "maxAttempts must be at least 1, got \(maxAttempts)")
        self.maxAttempts = maxAttempts
        self.backoff = backoff
    }

    /// One attempt, no retry: a failure goes straight to the dead-letter queue.
    public static let none = RedeliveryPolicy(maxAttempts: 1)
}

/// How a subscription buffers, retries and guards its handler.
public struct SubscriptionOptions: Sendable {
    /// The most events the subscriber's mailbox holds; at least 1.
    public var bufferCapacity: Int
    /// What happens when the mailbox is full.
    public var overflow: OverflowPolicy
    /// How a failing handler is retried.
    public var redelivery: RedeliveryPolicy
    /// The most events taken from the mailbox per wake-up of the subscriber.
    public var batchSize: Int
    /// Strategies around each attempt of the handler (a breaker that stops calling a failing
    /// downstream, a bulkhead, a timeout); `nil` for none. A rejection by the pipeline counts as a
    /// failed attempt, retried per ``redelivery`` and then dead-lettered like any handler error.
    public var pipeline: ResiliencePipeline?

    /// Creates options.
    /// - Parameters:
    ///   - bufferCapacity: The mailbox bound, at least 1.
    ///   - overflow: What happens when it is full.
    ///   - redelivery: How failures are retried.
    ///   - batchSize: Events per wake-up, at least 1.
    ///   - pipeline: Strategies around each attempt of the handler.
    public init(
        bufferCapacity: Int = 1024,
        overflow: OverflowPolicy = .suspendPublisher,
        redelivery: RedeliveryPolicy = RedeliveryPolicy(),
        batchSize: Int = 64,
        pipeline: ResiliencePipeline? = nil
    ) {
        precondition(bufferCapacity >= 1, "bufferCapacity must be at least 1, got \(bufferCapacity)")
        precondition(batchSize >= 1, "batchSize must be at least 1, got \(batchSize)")
        self.bufferCapacity = bufferCapacity
        self.overflow = overflow
        self.redelivery = redelivery
        self.batchSize = batchSize
        self.pipeline = pipeline
    }
}
