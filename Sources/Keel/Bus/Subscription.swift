/// Identifies a subscription within a bus.
public struct SubscriptionID: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The raw value, increasing in subscription order.
    public var rawValue: UInt64

    /// Creates an id.
    /// - Parameter rawValue: The raw value.
    public init(rawValue: UInt64) {
        self.rawValue = rawValue
    }

    /// `sub-N`.
    public var description: String { "sub-\(self.rawValue)" }
}

/// What happened to the events of one subscription so far.
public struct SubscriptionStatistics: Sendable, Hashable {
    /// Events handled successfully.
    public var delivered: Int
    /// Events dropped because the mailbox was full (``OverflowPolicy/dropOldest`` or
    /// ``OverflowPolicy/dropNewest``).
    public var dropped: Int
    /// Handler attempts that threw.
    public var failedAttempts: Int
    /// Events sent to the dead-letter queue.
    public var deadLettered: Int
    /// Events discarded because the subscription ended before they were handled.
    public var discarded: Int
    /// Events in the mailbox now.
    public var buffered: Int
    /// The most events the mailbox ever held at once.
    public var peakBuffered: Int
}

/// A live subscription: its identity, its statistics and the means to end it.
///
/// Ending it (``cancel()``) cancels the handler in progress and returns once it has returned;
/// events still in the mailbox are discarded and counted. A subscription made through a service's environment ends
/// when that service stops.
public struct Subscription: Sendable, Hashable, CustomStringConvertible {
    let subscriber: Subscriber

    /// The subscription's id.
    public var id: SubscriptionID { self.subscriber.id }
    /// The subscription's name (given, or derived from its type or pattern).
    public var name: String { self.subscriber.name }
    /// The service that owns it, if any.
    public var owner: ServiceName? { self.subscriber.owner }
    /// What happened to its events so far.
    public var statistics: SubscriptionStatistics { self.subscriber.statistics }
    /// Whether it has ended.
    public var isCancelled: Bool { self.subscriber.isFinished }

    /// Ends the subscription and waits until its handler has returned.
    ///
    /// Safe to call more than once and from several tasks; every call returns after the handler
    /// task has finished. Called from the subscription's own handler (a one-shot subscription),
    /// it returns at once: the handler is cancelled and the subscription ends when it returns.
    public func cancel() async {
        self.subscriber.bus.remove(self.subscriber)
        await self.subscriber.stop()
    }

    public static func == (lhs: Subscription, rhs: Subscription) -> Bool {
        lhs.subscriber === rhs.subscriber
    }

    /// Hashes the subscription's identity.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(ObjectIdentifier(self.subscriber))
    }

    /// `name (id)`.
    public var description: String { "\(self.name) (\(self.id))" }
}
