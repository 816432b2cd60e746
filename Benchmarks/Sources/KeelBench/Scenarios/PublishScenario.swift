import Keel

/// Event throughput: publish N events on an ``EventBus`` to S subscribers, against one of two
/// baselines that deliver the same events to S consumer tasks.
///
/// Ours uses the bus's defaults (mailbox capacity 1024, `suspendPublisher`, batches of 64);
/// every handler counts into a ``Latch`` and the round ends when all N × S deliveries happened.
/// The baselines' consumers count into the same latch. Everything that consumes is made in
/// ``setUp()`` and lasts across rounds, as the bus's subscribers do, and ends in ``tearDown()``,
/// which finishes the mailboxes or streams and awaits the consumer tasks. Both sides report
/// nanoseconds per delivery.
///
/// - ``Baseline/ringBuffer``: the floor of the bus's own shape, a ``BoundedMailbox`` per
///   subscriber (a 1024-slot ring buffer in a `Mutex`, the publisher suspending when it is full)
///   drained in batches of 64 by one parked consumer task each, resumed once per wake-up.
/// - ``Baseline/asyncStream``: what a user would write, an unbounded `AsyncStream` per subscriber
///   with one consumer task each (`for await`), one continuation resume per element when the
///   consumer is parked; the publisher never waits.
final class PublishScenario: Scenario {
    /// What the bus is compared with.
    enum Baseline {
        /// A bounded ring buffer per subscriber, drained in batches.
        case ringBuffer
        /// An unbounded `AsyncStream` per subscriber.
        case asyncStream
    }

    /// The bus's default mailbox capacity, which the ring buffer copies.
    static let capacity = 1024
    /// The bus's default batch size, which the ring buffer's consumers copy.
    static let batchSize = 64

    let metrics: [Metric]
    let workload = Workload.calibrated(minimum: 8_192)

    private let subscribers: Int
    private let baseline: Baseline
    private let latch = Latch()
    private var bus: EventBus?
    private var mailboxes: [BoundedMailbox<Tick>] = []
    private var streams: [AsyncStream<Tick>.Continuation] = []
    /// The baseline's consumer tasks, unstructured because they outlive ``setUp()`` as the bus's
    /// subscriber tasks do; ``tearDown()`` ends and awaits them.
    private var consumers: [Task<Void, Never>] = []

    /// Creates the scenario.
    /// - Parameters:
    ///   - name: The metric's name.
    ///   - subscribers: Subscribers of every event.
    ///   - baseline: What the bus is compared with.
    ///   - goal: The README's goal for the ratio, if any.
    ///   - recorded: The ratio recorded on the project's machine kind.
    init(name: String, subscribers: Int, baseline: Baseline, goal: Double? = nil, recorded: Double?) {
        precondition(subscribers >= 1, "at least one subscriber, got \(subscribers)")
        self.subscribers = subscribers
        self.baseline = baseline
        let consumers =
            subscribers == 1
            ? "one consumer task" : "\(subscribers) consumer tasks (one each)"
        let description: String
        switch baseline {
        case .ringBuffer:
            let mailboxes = subscribers == 1 ? "a bounded ring buffer" : "\(subscribers) bounded ring buffers"
            description =
                "\(mailboxes) (Mutex, \(Self.capacity) slots, publisher suspends when full), "
                + "\(consumers) draining \(Self.batchSize) per take, one resume per wake-up; "
                + "both sides: consumers made in setUp, on \(Machine.pool)"
        case .asyncStream:
            let streams = subscribers == 1 ? "a raw AsyncStream" : "\(subscribers) raw AsyncStreams"
            description =
                "\(streams) (unbounded: the publisher never waits), \(consumers) (for await); "
                + "both sides: consumers made in setUp, on \(Machine.pool)"
        }
        self.metrics = [
            Metric(
                name: name,
                baseline: description,
                unit: subscribers == 1 ? "element" : "delivery",
                goal: goal,
                recorded: recorded
            )
        ]
    }

    func setUp() async throws {
        let bus = EventBus()
        for index in 0..<self.subscribers {
            try bus.subscribe(to: Tick.self, name: "bench.\(index)") { [latch] _, _ in
                latch.arrive()
            }
        }
        self.bus = bus
        let latch = self.latch
        switch self.baseline {
        case .ringBuffer:
            self.mailboxes = (0..<self.subscribers).map { _ in BoundedMailbox(capacity: Self.capacity) }
            self.consumers = self.mailboxes.map { mailbox in
                Task {
                    var batch: [Tick] = []
                    batch.reserveCapacity(Self.batchSize)
                    while true {
                        batch.removeAll(keepingCapacity: true)
                        let isFinished = mailbox.take(into: &batch, limit: Self.batchSize)
                        if batch.isEmpty {
                            if isFinished { return }
                            await mailbox.waitForElements()
                            continue
                        }
                        for _ in batch { latch.arrive() }
                    }
                }
            }
        case .asyncStream:
            let pairs = (0..<self.subscribers).map { _ in AsyncStream.makeStream(of: Tick.self) }
            self.streams = pairs.map(\.continuation)
            self.consumers = pairs.map { stream, _ in
                Task {
                    for await _ in stream { latch.arrive() }
                }
            }
        }
    }

    func runOurs(_ count: Int) async throws -> [Double] {
        let bus = self.bus!
        let events = self.events(delivering: count)
        self.latch.reset(expecting: events * self.subscribers)
        let clock = ContinuousClock()
        let start = clock.now
        for sequence in 0..<events {
            try await bus.publish(Tick(sequence: sequence))
        }
        await self.latch.wait()
        return [start.duration(to: clock.now).nanoseconds / Double(events * self.subscribers)]
    }

    func runBaseline(_ count: Int) async throws -> [Double] {
        let events = self.events(delivering: count)
        self.latch.reset(expecting: events * self.subscribers)
        let clock = ContinuousClock()
        let start = clock.now
        switch self.baseline {
        case .ringBuffer:
            let mailboxes = self.mailboxes
            for sequence in 0..<events {
                for mailbox in mailboxes {
                    guard await mailbox.send(Tick(sequence: sequence)) else { throw CancellationError() }
                }
            }
        case .asyncStream:
            let streams = self.streams
            for sequence in 0..<events {
                for stream in streams { stream.yield(Tick(sequence: sequence)) }
            }
        }
        await self.latch.wait()
        return [start.duration(to: clock.now).nanoseconds / Double(events * self.subscribers)]
    }

    /// The events to publish for about `deliveries` deliveries (the unit the harness counts).
    private func events(delivering deliveries: Int) -> Int {
        max(deliveries / self.subscribers, 1)
    }

    func tearDown() async {
        await self.bus?.shutdown()
        self.bus = nil
        for mailbox in self.mailboxes { mailbox.finish() }
        for stream in self.streams { stream.finish() }
        for consumer in self.consumers { await consumer.value }
        self.mailboxes = []
        self.streams = []
        self.consumers = []
    }
}
