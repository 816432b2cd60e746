import Keel

/// Event throughput: publish N events on an ``EventBus`` to S subscribers against S raw
/// `AsyncStream`s, each consumed by its own task.
///
/// Ours uses the bus's defaults (mailbox capacity 1024, `suspendPublisher`); every handler counts
/// into a ``Latch`` and the round ends when all N × S deliveries happened. The baseline yields
/// the same events into unbounded `AsyncStream`s whose consumer tasks count into the same latch;
/// its consumer tasks are created in the round, which N amortises. Both report nanoseconds per
/// delivery.
final class PublishScenario: Scenario {
    let metrics: [Metric]
    let workload = Workload.calibrated(minimum: 8_192)

    private let subscribers: Int
    private let latch = Latch()
    private var bus: EventBus?

    /// Creates the scenario.
    /// - Parameters:
    ///   - name: The metric's name.
    ///   - subscribers: Subscribers of every event.
    init(name: String, subscribers: Int) {
        precondition(subscribers >= 1, "at least one subscriber, got \(subscribers)")
        self.subscribers = subscribers
        let baseline =
            subscribers == 1
            ? "raw AsyncStream (unbounded), one consumer task"
            : "\(subscribers) raw AsyncStreams (unbounded), each consumed by its own task"
        self.metrics = [Metric(name: name, baseline: baseline, unit: subscribers == 1 ? "element" : "delivery")]
    }

    func setUp() async throws {
        let bus = EventBus()
        for index in 0..<self.subscribers {
            try bus.subscribe(to: Tick.self, name: "bench.\(index)") { [latch] _, _ in
                latch.arrive()
            }
        }
        self.bus = bus
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
        let latch = self.latch
        let events = self.events(delivering: count)
        latch.reset(expecting: events * self.subscribers)
        let streams = (0..<self.subscribers).map { _ in AsyncStream.makeStream(of: Tick.self) }
        let clock = ContinuousClock()
        let start = clock.now
        let end = await withDiscardingTaskGroup(returning: ContinuousClock.Instant.self) { group in
            for (stream, _) in streams {
                group.addTask {
                    for await _ in stream { latch.arrive() }
                }
            }
            for sequence in 0..<events {
                for (_, continuation) in streams { continuation.yield(Tick(sequence: sequence)) }
            }
            for (_, continuation) in streams { continuation.finish() }
            await latch.wait()
            return clock.now
        }
        return [start.duration(to: end).nanoseconds / Double(events * self.subscribers)]
    }

    /// The events to publish for about `deliveries` deliveries (the unit the harness counts).
    private func events(delivering deliveries: Int) -> Int {
        max(deliveries / self.subscribers, 1)
    }

    func tearDown() async {
        await self.bus?.shutdown()
        self.bus = nil
    }
}
