import KeelCore
import KeelResilience
import Synchronization

/// One published event, shared by reference among every subscriber it goes to.
final class PublishedEvent: Sendable {
    let event: any Event
    let envelope: EventEnvelope
    /// A fault a test injected into this delivery (then the event goes to one subscriber only).
    let fault: DeliveryFaultAction?

    init(event: any Event, envelope: EventEnvelope, fault: DeliveryFaultAction? = nil) {
        self.event = event
        self.envelope = envelope
        self.fault = fault
    }
}

/// How a subscriber selects events.
enum SubscriberFilter: Sendable {
    case type(ObjectIdentifier)
    case pattern(TopicPattern)
}

/// One subscription's mailbox, handler and handler task.
///
/// The mailbox is a `Mutex` around a ``MailboxStateMachine``; one long-lived task per
/// subscription drains it in batches. No task is created per event.
final class Subscriber: Sendable {
    typealias Handler = @Sendable (any Event, EventEnvelope) async throws -> Void

    let id: SubscriptionID
    let name: String
    let owner: ServiceName?
    let filter: SubscriberFilter
    let options: SubscriptionOptions
    let handler: Handler
    let bus: EventBus
    let spanName: String

    private let mailbox: Lock<MailboxStateMachine<PublishedEvent>>
    private let task = Lock<Task<Void, Never>?>(nil)
    private let delivered = Atomic<Int>(0)
    private let dropped = Atomic<Int>(0)
    private let failedAttempts = Atomic<Int>(0)
    private let deadLettered = Atomic<Int>(0)
    let discarded = Atomic<Int>(0)
    private let peakBuffered = Atomic<Int>(0)
    private let droppedCounter: any TelemetryCounter
    private let deadLetterCounter: any TelemetryCounter
    private let deliveredCounter: any TelemetryCounter
    private let handlerTimer: any TelemetryTimer

    init(
        id: SubscriptionID,
        name: String,
        owner: ServiceName?,
        filter: SubscriberFilter,
        options: SubscriptionOptions,
        bus: EventBus,
        handler: @escaping Handler
    ) {
        self.id = id
        self.name = name
        self.owner = owner
        self.filter = filter
        self.options = options
        self.bus = bus
        self.handler = handler
        self.spanName = "handle \(name)"
        self.mailbox = Lock(MailboxStateMachine(capacity: options.bufferCapacity, overflow: options.overflow))
        let dimensions = [("subscription", name)]
        self.droppedCounter = bus.telemetry.makeCounter(label: "keel.bus.dropped", dimensions: dimensions)
        self.deadLetterCounter = bus.telemetry.makeCounter(label: "keel.bus.dead_letters", dimensions: dimensions)
        self.deliveredCounter = bus.telemetry.makeCounter(label: "keel.bus.delivered", dimensions: dimensions)
        self.handlerTimer = bus.telemetry.makeTimer(label: "keel.bus.handler.duration", dimensions: dimensions)
    }

    func matches(typeID: ObjectIdentifier, topic: String) -> Bool {
        switch self.filter {
        case .type(let id): id == typeID
        case .pattern(let pattern): pattern.matches(topic)
        }
    }

    var isFinished: Bool { self.mailbox.withLock { $0.isFinished } }

    var statistics: SubscriptionStatistics {
        SubscriptionStatistics(
            delivered: self.delivered.load(ordering: .relaxed),
            dropped: self.dropped.load(ordering: .relaxed),
            failedAttempts: self.failedAttempts.load(ordering: .relaxed),
            deadLettered: self.deadLettered.load(ordering: .relaxed),
            discarded: self.discarded.load(ordering: .relaxed),
            buffered: self.mailbox.withLock { $0.count },
            peakBuffered: self.peakBuffered.load(ordering: .relaxed)
        )
    }

    // MARK: Publishing side

    /// What ``offer(_:mayWait:)`` did: the outcome, or that the publisher must park.
    enum Offer {
        case done(MailboxStateMachine<PublishedEvent>.SendOutcome)
        /// The mailbox is full under ``OverflowPolicy/suspendPublisher``: park with
        /// ``park(id:event:)``.
        case mustPark(id: UInt64)
    }

    /// Offers `event` to the mailbox without suspending. The event was already counted into the
    /// work tracker; every path that does not buffer it counts it out again.
    ///
    /// Synchronous, so that a publish that finds room makes no async call per subscriber.
    /// - Returns: The outcome, or the ticket to park with when the mailbox is full under
    ///   ``OverflowPolicy/suspendPublisher`` and `mayWait` is true.
    func offer(_ event: PublishedEvent, mayWait: Bool) -> Offer {
        let action = self.mailbox.withLock { mailbox in
            let action = mailbox.send(event, mayWait: mayWait)
            self.recordPeak(mailbox.count)
            return action
        }
        switch action {
        case .enqueued(let wake):
            wake?.resume()
            return .done(.enqueued)
        case .enqueuedDroppingOldest(_, let wake):
            wake?.resume()
            self.countDrop()
            return .done(.enqueued)
        case .droppedNewest:
            self.countDrop()
            return .done(.droppedNewest)
        case .finished:
            self.bus.tracker.leave()
            return .done(.finished)
        case .full:
            self.bus.tracker.leave()
            return .done(.cancelled)
        case .suspend(let id):
            return .mustPark(id: id)
        }
    }

    /// Offers `event` to the mailbox, parking while it is full under
    /// ``OverflowPolicy/suspendPublisher`` and `mayWait` is true (see ``offer(_:mayWait:)``).
    /// - Returns: The outcome.
    func send(_ event: PublishedEvent, mayWait: Bool) async -> MailboxStateMachine<PublishedEvent>.SendOutcome {
        switch self.offer(event, mayWait: mayWait) {
        case .done(let outcome): return outcome
        case .mustPark(let id): return await self.park(id: id, event: event)
        }
    }

    /// Parks the publisher of `event` until the mailbox has room, it finishes, or the publisher
    /// is cancelled.
    func park(id: UInt64, event: PublishedEvent) async -> MailboxStateMachine<PublishedEvent>.SendOutcome {
        let outcome = await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let action = self.mailbox.withLock { mailbox in
                    let action = mailbox.park(id: id, element: event, continuation: continuation)
                    self.recordPeak(mailbox.count)
                    return action
                }
                if case .resume(let outcome, let wake) = action {
                    wake?.resume()
                    continuation.resume(returning: outcome)
                }
            }
        } onCancel: {
            let waiting = self.mailbox.withLock { $0.cancelProducer(id: id) }
            waiting?.resume(returning: .cancelled)
        }
        if outcome != .enqueued { self.bus.tracker.leave() }
        return outcome
    }

    func countDrop() {
        self.dropped.wrappingAdd(1, ordering: .relaxed)
        self.droppedCounter.increment(by: 1)
        self.bus.tracker.leave()
    }

    private func recordPeak(_ count: Int) {
        if count > self.peakBuffered.load(ordering: .relaxed) {
            self.peakBuffered.store(count, ordering: .relaxed)
        }
    }

    // MARK: Handling side

    /// Starts the handler task.
    /// The subscriber whose handler task the current task is, if any.
    @TaskLocal static var running: ObjectIdentifier?

    /// Starts the handler task. The handle is stored under the same lock that `stop` reads, so a
    /// concurrent `stop` always finds it.
    func start(executor: (any TaskExecutor)?) {
        self.task.withLock { task in
            task = TaskSpawner.spawn(executor: executor) { [self] in
                await Subscriber.$running.withValue(ObjectIdentifier(self)) {
                    await self.run()
                }
            }
        }
    }

    /// Ends the mailbox and waits for the handler task, unless called from that very task (a
    /// handler ending its own subscription): then the handler task is only cancelled, and ends
    /// when the handler returns.
    func stop() async {
        self.finish()
        let task = self.task.withLock { $0 }
        task?.cancel()
        if Subscriber.running == ObjectIdentifier(self) { return }
        await task?.value
    }

    private func finish() {
        let finished = self.mailbox.withLock { $0.finish() }
        finished.consumer?.resume()
        for producer in finished.producers {
            producer.continuation.resume(returning: .finished)
        }
        // Waiting producers count themselves out when resumed with `.finished`.
        let buffered = finished.discarded - finished.producers.count
        if buffered > 0 {
            self.discarded.wrappingAdd(buffered, ordering: .relaxed)
            self.bus.tracker.leave(buffered)
        }
    }

    private func run() async {
        var batch: [PublishedEvent] = []
        batch.reserveCapacity(self.options.batchSize)
        while true {
            batch.removeAll(keepingCapacity: true)
            let (admitted, finished) = self.mailbox.withLock { mailbox in
                (mailbox.take(into: &batch, limit: self.options.batchSize), mailbox.isFinished)
            }
            for producer in admitted { producer.resume(returning: .enqueued) }
            if batch.isEmpty {
                if finished { return }
                await self.waitForEvents()
                continue
            }
            for (index, event) in batch.enumerated() {
                if Task.isCancelled {
                    let rest = batch.count - index
                    self.discarded.wrappingAdd(rest, ordering: .relaxed)
                    self.bus.tracker.leave(rest)
                    break
                }
                if let fault = event.fault {
                    await self.deliver(event, injecting: fault)
                } else {
                    await self.deliver(event)
                }
                self.bus.tracker.leave()
            }
        }
    }

    private func waitForEvents() async {
        await withTaskCancellationHandler {
            await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
                let parked = self.mailbox.withLock { $0.parkConsumer(continuation) }
                if !parked { continuation.resume() }
            }
        } onCancel: {
            self.finish()
        }
    }

    /// Runs the handler once, through the subscription's pipeline if it has one.
    private func handle(_ published: PublishedEvent) async throws {
        if let pipeline = self.options.pipeline {
            let handler = self.handler
            try await pipeline.execute { try await handler(published.event, published.envelope) }
        } else {
            try await self.handler(published.event, published.envelope)
        }
    }

    /// Logs a dead-lettered event at ``/KeelCore/LogLevel/error`` (source `keel.bus`), with the
    /// handler's trace context; metadata `subscription`, `service` (the owner, if any), `event`,
    /// `eventType`, `topic`, `attempts`, `error`.
    private func logDeadLetter(_ envelope: EventEnvelope, error: any Error, attempts: Int, context: TraceContext) {
        let telemetry = self.bus.telemetry
        guard telemetry.isLogging(.error) else { return }
        var metadata = [
            "subscription": self.name,
            "event": "\(envelope.id)",
            "eventType": envelope.eventType,
            "topic": envelope.topic,
            "attempts": "\(attempts)",
            "error": "\(error)",
        ]
        if let owner = self.owner { metadata["service"] = owner.rawValue }
        telemetry.log(
            LogRecord(
                level: .error,
                message:
                    "subscriber \(self.name) dead-lettered event \(envelope.id) (\(envelope.eventType)) after \(attempts) attempt(s): \(error)",
                source: "keel.bus",
                metadata: metadata,
                trace: context
            )
        )
    }

    /// Runs the handler with the envelope's trace context, retrying per the redelivery policy,
    /// then dead-letters the event.
    func deliver(_ published: PublishedEvent) async {
        let bus = self.bus
        var context = published.envelope.makeHandlerContext(using: bus.random)
        let span =
            bus.recordsSpans ? bus.telemetry.startSpan(self.spanName, context: context, kind: .consumer) : nil
        // A tracer may give its span ids of its own: the handler runs under those.
        if let span { context.adoptIDs(of: span.context) }
        let started = bus.isRecording ? bus.reader.now() : .zero
        defer {
            if bus.isRecording { self.handlerTimer.record(bus.reader.now() - started) }
            span?.end()
        }
        let policy = self.options.redelivery
        var attempt = 0
        // Made at the first failure: most events never need it.
        var delays: Backoff.Delays?
        while true {
            attempt += 1
            do {
                try await TraceContext.$current.withValue(context) {
                    guard let span else { return try await self.handle(published) }
                    try await span.withCurrent { try await self.handle(published) }
                }
                self.delivered.wrappingAdd(1, ordering: .relaxed)
                self.deliveredCounter.increment(by: 1)
                return
            } catch {
                if Task.isCancelled {
                    self.discarded.wrappingAdd(1, ordering: .relaxed)
                    return
                }
                self.failedAttempts.wrappingAdd(1, ordering: .relaxed)
                span?.recordError(error)
                if attempt >= policy.maxAttempts {
                    bus.deadLetterQueue.append(
                        published,
                        subscription: self.id,
                        name: self.name,
                        error: error,
                        attempts: attempt
                    )
                    self.deadLettered.wrappingAdd(1, ordering: .relaxed)
                    self.deadLetterCounter.increment(by: 1)
                    self.logDeadLetter(published.envelope, error: error, attempts: attempt, context: context)
                    return
                }
                if delays == nil { delays = policy.backoff.makeDelays(using: bus.random) }
                do {
                    try await bus.clock.sleep(for: delays?.next() ?? .zero)
                } catch {
                    self.discarded.wrappingAdd(1, ordering: .relaxed)
                    return
                }
            }
        }
    }
}
