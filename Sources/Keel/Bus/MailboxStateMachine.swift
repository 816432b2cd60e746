/// The pure state of one subscriber's mailbox: a bounded buffer, the parked consumer, the parked
/// publishers waiting for room, and what overflow did.
///
/// Every method runs under the mailbox's lock and returns what the caller must do after
/// releasing it (resume a continuation, account for a dropped element). It never suspends.
struct MailboxStateMachine<Element> {
    /// How a publication ended for the publisher.
    enum SendOutcome: Sendable, Equatable {
        case enqueued
        case droppedNewest
        case cancelled
        case finished
    }

    struct Producer {
        var id: UInt64
        var element: Element
        var continuation: CheckedContinuation<SendOutcome, Never>
    }

    enum SendAction {
        /// Buffered; wake the consumer if it was parked.
        case enqueued(wake: UnsafeContinuation<Void, Never>?)
        /// Buffered after dropping the oldest element, which is returned.
        case enqueuedDroppingOldest(Element, wake: UnsafeContinuation<Void, Never>?)
        /// The new element was dropped.
        case droppedNewest
        /// The mailbox is finished; the element was not taken.
        case finished
        /// The buffer is full and the policy is to wait: park with this id.
        case suspend(id: UInt64)
        /// The buffer is full, the policy is to wait, and the publisher may not: not taken.
        case full
    }

    enum ParkAction {
        case resume(SendOutcome, wake: UnsafeContinuation<Void, Never>?)
        case parked
    }

    struct Finished {
        var consumer: UnsafeContinuation<Void, Never>?
        var producers: [Producer]
        var discarded: Int
    }

    private(set) var buffer = RingBuffer<Element>()
    let capacity: Int
    let overflow: OverflowPolicy.Base
    private var consumer: UnsafeContinuation<Void, Never>?
    private var waiting = RingBuffer<Producer>()
    private var reserved: Set<UInt64> = []
    private var cancelledBeforePark: Set<UInt64> = []
    private var nextProducerID: UInt64 = 0
    private(set) var isFinished = false
    /// Whether the consumer is between taking a batch and asking for the next one.
    private(set) var isConsumerBusy = false

    init(capacity: Int, overflow: OverflowPolicy) {
        precondition(capacity >= 1, "capacity must be at least 1, got \(capacity)")
        self.capacity = capacity
        self.overflow = overflow.base
    }

    var count: Int { self.buffer.count }
    var waitingProducers: Int { self.waiting.count }

    private mutating func takeConsumer() -> UnsafeContinuation<Void, Never>? {
        defer { self.consumer = nil }
        return self.consumer
    }

    mutating func send(_ element: Element, mayWait: Bool = true) -> SendAction {
        if self.isFinished { return .finished }
        if self.buffer.count < self.capacity && self.waiting.isEmpty {
            self.buffer.append(element)
            return .enqueued(wake: self.takeConsumer())
        }
        switch self.overflow {
        case .dropNewest:
            return .droppedNewest
        case .dropOldest:
            let oldest = self.buffer.popFirst()!
            self.buffer.append(element)
            return .enqueuedDroppingOldest(oldest, wake: self.takeConsumer())
        case .suspendPublisher:
            guard mayWait else { return .full }
            let id = self.nextProducerID
            self.nextProducerID &+= 1
            self.reserved.insert(id)
            return .suspend(id: id)
        }
    }

    mutating func park(
        id: UInt64,
        element: Element,
        continuation: CheckedContinuation<SendOutcome, Never>
    ) -> ParkAction {
        self.reserved.remove(id)
        if self.cancelledBeforePark.remove(id) != nil { return .resume(.cancelled, wake: nil) }
        if self.isFinished { return .resume(.finished, wake: nil) }
        if self.buffer.count < self.capacity && self.waiting.isEmpty {
            self.buffer.append(element)
            return .resume(.enqueued, wake: self.takeConsumer())
        }
        self.waiting.append(Producer(id: id, element: element, continuation: continuation))
        return .parked
    }

    /// A parked publisher was cancelled: returns its continuation if it was still waiting.
    mutating func cancelProducer(id: UInt64) -> CheckedContinuation<SendOutcome, Never>? {
        if self.reserved.contains(id) {
            self.cancelledBeforePark.insert(id)
            return nil
        }
        var kept = RingBuffer<Producer>()
        var found: CheckedContinuation<SendOutcome, Never>?
        while let producer = self.waiting.popFirst() {
            if producer.id == id { found = producer.continuation } else { kept.append(producer) }
        }
        self.waiting = kept
        return found
    }

    /// Moves up to `limit` elements into `batch` and admits waiting publishers into the room
    /// freed. Returns the publishers to resume.
    mutating func take(into batch: inout [Element], limit: Int) -> [CheckedContinuation<SendOutcome, Never>] {
        while batch.count < limit, let element = self.buffer.popFirst() {
            batch.append(element)
        }
        var admitted: [CheckedContinuation<SendOutcome, Never>] = []
        while self.buffer.count < self.capacity, let producer = self.waiting.popFirst() {
            self.buffer.append(producer.element)
            admitted.append(producer.continuation)
        }
        self.isConsumerBusy = !batch.isEmpty
        return admitted
    }

    /// The consumer found the buffer empty: park it, unless something arrived or the mailbox
    /// finished, in which case it must not park (returns `false`).
    mutating func parkConsumer(_ continuation: UnsafeContinuation<Void, Never>) -> Bool {
        precondition(self.consumer == nil, "two consumers parked on one mailbox")
        if !self.buffer.isEmpty || self.isFinished { return false }
        self.consumer = continuation
        return true
    }

    /// Ends the mailbox: nothing more is accepted; buffered and waiting elements are discarded.
    mutating func finish() -> Finished {
        guard !self.isFinished else { return Finished(consumer: nil, producers: [], discarded: 0) }
        self.isFinished = true
        var producers: [Producer] = []
        while let producer = self.waiting.popFirst() { producers.append(producer) }
        let discarded = self.buffer.count + producers.count
        self.buffer = RingBuffer()
        return Finished(consumer: self.takeConsumer(), producers: producers, discarded: discarded)
    }
}
