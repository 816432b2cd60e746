import Keel
import KeelCore
import Synchronization

/// Records the events published on a bus, and lets a test wait for the ones it expects.
///
/// ```swift
/// let recorder = try EventRecorder(bus: host.bus, pattern: "order.#")
/// _ = try await host.client.send(PlaceOrder(user: 1, sku: "kb", quantity: 1))
/// let created = try await recorder.waitFor(count: 1, of: OrderCreated.self, timeout: .seconds(5), clock: clock)
/// ```
///
/// Waiting never polls and never sleeps: each recorded event checks the waiters, and the timeout
/// is a sleep on the clock you pass, so with a ``TestClock`` the test decides when time runs out.
/// The recorder is an ordinary subscription with a large buffer that never drops
/// (``/Keel/OverflowPolicy/suspendPublisher``); ``cancel()`` ends it.
public final class EventRecorder: Sendable {
    /// One recorded event.
    public struct Record: Sendable {
        /// The event.
        public var event: any Event
        /// Its envelope.
        public var envelope: EventEnvelope
    }

    /// The wait ran out of time.
    public struct TimeoutError: Error, Sendable, CustomStringConvertible {
        /// How many matching events were expected.
        public var expected: Int
        /// How many had arrived.
        public var matched: Int
        /// The topics of every event recorded so far.
        public var recordedTopics: [String]
        /// When the wait ended by its real-time limit, not by its timeout on the given clock: how
        /// long it waited in real time (a test clock that nobody advanced never reaches a timeout).
        public var realTimeLimit: Duration?

        /// `expected N matching events, got M (topics…)`.
        public var description: String {
            var text =
                "expected \(self.expected) matching events, got \(self.matched); recorded: \(self.recordedTopics)"
            if let realTimeLimit = self.realTimeLimit {
                text += "; gave up after \(realTimeLimit) of real time (the clock never reached the timeout)"
            }
            return text
        }
    }

    private struct Waiter {
        var id: UInt64
        var count: Int
        var predicate: @Sendable (Record) -> Bool
        var continuation: CheckedContinuation<[Record], Never>
    }

    private struct State {
        var records: [Record] = []
        var waiters: [Waiter] = []
        var nextWaiter: UInt64 = 0
    }

    private final class Storage: Sendable {
        let state = Lock(State())
    }

    private let storage = Storage()
    private let subscriptionBox = Lock<Subscription?>(nil)

    /// Starts recording every event whose topic matches `pattern`.
    /// - Parameters:
    ///   - bus: The bus.
    ///   - pattern: A ``/Keel/TopicPattern``; every topic by default.
    /// - Throws: ``/Keel/EventBusError`` when the bus is shut down.
    public init(bus: EventBus, pattern: String = "#") throws(EventBusError) {
        let subscription = try bus.subscribe(
            pattern: pattern,
            name: "recorder:\(pattern)",
            options: SubscriptionOptions(bufferCapacity: 65_536, redelivery: .none)
        ) { [storage] event, envelope in
            Self.record(Record(event: event, envelope: envelope), in: storage)
        }
        self.subscriptionBox.withLock { $0 = subscription }
    }

    /// The id of the recorder's subscription.
    var subscriptionID: SubscriptionID? {
        self.subscriptionBox.withLock { $0?.id }
    }

    private static func record(_ record: Record, in storage: Storage) {
        let ready = storage.state.withLock { state -> [(CheckedContinuation<[Record], Never>, [Record])] in
            state.records.append(record)
            var ready: [(CheckedContinuation<[Record], Never>, [Record])] = []
            state.waiters.removeAll { waiter in
                let matched = state.records.filter(waiter.predicate)
                guard matched.count >= waiter.count else { return false }
                ready.append((waiter.continuation, Array(matched.prefix(waiter.count))))
                return true
            }
            return ready
        }
        for (continuation, records) in ready { continuation.resume(returning: records) }
    }

    /// Everything recorded so far, in arrival order.
    public var records: [Record] {
        self.storage.state.withLock { $0.records }
    }

    /// The recorded events of one type, in arrival order.
    /// - Parameter type: The event type.
    /// - Returns: The events.
    public func events<E: Event>(of type: E.Type) -> [E] {
        self.records.compactMap { $0.event as? E }
    }

    /// Waits until `count` recorded events satisfy `predicate` (counting those already recorded).
    ///
    /// On a ``TestClock`` the timeout passes only when the test advances the clock, so a test
    /// that waits for an event that never comes would hang until its time limit. Unless the
    /// clock is a `ContinuousClock` or a `SuspendingClock`, the wait therefore also ends after
    /// `realTimeLimit` of real time, with a ``TimeoutError`` that says so.
    /// - Parameters:
    ///   - count: How many.
    ///   - timeout: How long to wait on `clock`.
    ///   - clock: The clock that measures the timeout.
    ///   - realTimeLimit: The real-time safety net on any other clock; `nil` for none. Default
    ///     10 seconds.
    ///   - predicate: Which records count.
    /// - Returns: The first `count` matching records.
    /// - Throws: ``TimeoutError`` when time runs out; `CancellationError` when cancelled.
    public func waitFor<C: Clock<Duration>>(
        count: Int,
        timeout: Duration,
        clock: C,
        realTimeLimit: Duration? = .seconds(10),
        where predicate: @escaping @Sendable (Record) -> Bool
    ) async throws -> [Record] {
        let isRealTime = clock is ContinuousClock || clock is SuspendingClock
        let safetyNet = isRealTime ? nil : realTimeLimit
        let outcome: Outcome = try await withThrowingTaskGroup(of: Outcome.self) { group in
            group.addTask { .matched(await self.wait(count: count, predicate: predicate)) }
            group.addTask {
                try await clock.sleep(for: timeout)
                return .timedOut
            }
            if let safetyNet {
                group.addTask {
                    try await ContinuousClock().sleep(for: safetyNet)
                    return .realTimeLimit
                }
            }
            let first = try await group.next()!
            group.cancelAll()
            return first
        }
        if case .matched(let result) = outcome, result.count >= count { return result }
        try Task.checkCancellation()
        let records = self.records
        var error = TimeoutError(
            expected: count,
            matched: records.filter(predicate).count,
            recordedTopics: records.map(\.envelope.topic)
        )
        if case .realTimeLimit = outcome { error.realTimeLimit = safetyNet }
        throw error
    }

    /// How a wait ended.
    private enum Outcome: Sendable {
        case matched([Record])
        case timedOut
        case realTimeLimit
    }

    /// Waits until `count` events of type `type` that satisfy `predicate` were recorded.
    /// - Parameters:
    ///   - count: How many.
    ///   - type: The event type.
    ///   - timeout: How long to wait on `clock`.
    ///   - clock: The clock that measures the timeout.
    ///   - realTimeLimit: The real-time safety net on a clock other than `ContinuousClock` and
    ///     `SuspendingClock` (see ``waitFor(count:timeout:clock:realTimeLimit:where:)``); `nil` for
    ///     none. Default 10 seconds.
    ///   - predicate: Which events count; all by default.
    /// - Returns: The first `count` matching events.
    /// - Throws: ``TimeoutError`` when time runs out; `CancellationError` when cancelled.
    public func waitFor<E: Event, C: Clock<Duration>>(
        count: Int,
        of type: E.Type,
        timeout: Duration,
        clock: C,
        realTimeLimit: Duration? = .seconds(10),
        where predicate: @escaping @Sendable (E) -> Bool = { _ in true }
    ) async throws -> [E] {
        try await self.waitFor(count: count, timeout: timeout, clock: clock, realTimeLimit: realTimeLimit) { record in
            (record.event as? E).map(predicate) ?? false
        }.compactMap { $0.event as? E }
    }

    /// Suspends until `count` records match; returns what matched so far when cancelled.
    private func wait(count: Int, predicate: @escaping @Sendable (Record) -> Bool) async -> [Record] {
        let id = self.storage.state.withLock { state in
            defer { state.nextWaiter += 1 }
            return state.nextWaiter
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<[Record], Never>) in
                let ready = self.storage.state.withLock { state -> [Record]? in
                    let matched = state.records.filter(predicate)
                    if matched.count >= count { return Array(matched.prefix(count)) }
                    if Task.isCancelled { return matched }
                    state.waiters.append(Waiter(id: id, count: count, predicate: predicate, continuation: continuation))
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
        } onCancel: {
            let waiter = self.storage.state.withLock { state -> (Waiter, [Record])? in
                guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                let waiter = state.waiters.remove(at: index)
                return (waiter, state.records.filter(waiter.predicate))
            }
            if let (waiter, matched) = waiter { waiter.continuation.resume(returning: matched) }
        }
    }

    /// Stops recording and waits for the recorder's subscription to end.
    public func cancel() async {
        let subscription = self.subscriptionBox.withLock { $0 }
        await subscription?.cancel()
    }
}
