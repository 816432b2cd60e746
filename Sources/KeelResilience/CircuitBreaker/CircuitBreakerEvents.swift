import KeelCore
import Synchronization

/// The events of one ``CircuitBreaker``, for one consumer, as an `AsyncSequence`.
///
/// Each sequence made by ``CircuitBreaker/events(bufferSize:)`` is one subscription with its own
/// bounded buffer, starting with the events published after it was made. When the consumer
/// falls behind and the buffer is full, the **oldest** buffered event is dropped (the policy is
/// drop-oldest, so a slow consumer never slows the breaker or its callers);
/// ``droppedCount`` says how many were lost. Publishing never suspends and never blocks on a
/// consumer.
///
/// Iterate it from one task. `next()` suspends until an event arrives; cancelling the iterating
/// task ends the iteration (`next()` returns `nil`) and ends the subscription, as does
/// ``CircuitBreaker/shutdown()``. The subscription also ends when the last copy of the sequence
/// and its iterator are gone.
public struct CircuitBreakerEvents: AsyncSequence, Sendable {
    /// The element type.
    public typealias Element = CircuitBreakerEvent
    /// The failure type: the sequence never throws.
    public typealias Failure = Never

    let subscription: Subscription

    /// How many events this consumer lost because its buffer was full.
    public var droppedCount: Int {
        self.subscription.broadcaster.droppedCount(self.subscription.id)
    }

    /// Makes the iterator. Make one iterator per sequence.
    /// - Returns: The iterator.
    public func makeAsyncIterator() -> Iterator {
        Iterator(subscription: self.subscription)
    }

    /// The iterator of ``CircuitBreakerEvents``.
    public struct Iterator: AsyncIteratorProtocol {
        let subscription: Subscription

        /// The next event; suspends until one is published. Returns `nil` once the breaker has
        /// shut down and the buffer is empty, or when the task is cancelled.
        /// - Returns: The event, or `nil` at the end.
        public mutating func next() async -> CircuitBreakerEvent? {
            await self.subscription.broadcaster.next(self.subscription.id)
        }

        /// The next event; the same as ``next()``.
        /// - Parameter actor: Ignored; the iterator runs on the caller's isolation.
        /// - Returns: The event, or `nil` at the end.
        public mutating func next(isolation actor: isolated (any Actor)?) async -> CircuitBreakerEvent? {
            await self.subscription.broadcaster.next(self.subscription.id)
        }
    }

    /// Ends its subscription when the last reference goes.
    final class Subscription: Sendable {
        let broadcaster: Broadcaster
        let id: UInt64

        init(broadcaster: Broadcaster, id: UInt64) {
            self.broadcaster = broadcaster
            self.id = id
        }

        deinit {
            self.broadcaster.unsubscribe(self.id)
        }
    }

    /// A fan-out of events to bounded per-consumer buffers: a `Mutex` around the consumers'
    /// rings and their parked continuations. Continuations are resumed after the lock is released.
    final class Broadcaster: Sendable {
        private struct Consumer {
            var buffer: [CircuitBreakerEvent] = []
            var head = 0
            var capacity: Int
            var dropped = 0
            var waiter: CheckedContinuation<CircuitBreakerEvent?, Never>?
            var isCancelled = false

            var count: Int { self.buffer.count - self.head }

            mutating func push(_ event: CircuitBreakerEvent) {
                if self.count == self.capacity {
                    self.head += 1
                    self.dropped += 1
                }
                self.buffer.append(event)
                if self.head >= 64 && self.head * 2 >= self.buffer.count {
                    self.buffer.removeFirst(self.head)
                    self.head = 0
                }
            }

            mutating func pop() -> CircuitBreakerEvent? {
                guard self.head < self.buffer.count else { return nil }
                let event = self.buffer[self.head]
                self.head += 1
                if self.head == self.buffer.count {
                    self.buffer.removeAll(keepingCapacity: true)
                    self.head = 0
                }
                return event
            }
        }

        private struct State {
            var consumers: [UInt64: Consumer] = [:]
            var nextID: UInt64 = 0
            var isFinished = false
        }

        private let state = Lock(State())
        /// Mirrors `consumers.count`, so that publishing with nobody listening costs one load.
        private let consumerCount = Atomic<Int>(0)
        /// Tests: sees each event on the publishing thread, before any consumer can.
        private let onPublish: (@Sendable (CircuitBreakerEvent) -> Void)?

        init(onPublish: (@Sendable (CircuitBreakerEvent) -> Void)? = nil) {
            self.onPublish = onPublish
        }

        var hasConsumers: Bool {
            self.consumerCount.load(ordering: .relaxed) > 0
        }

        func subscribe(bufferSize: Int) -> CircuitBreakerEvents {
            precondition(bufferSize >= 1, "an event buffer holds at least one event, got \(bufferSize)")
            let id = self.state.withLock { state -> UInt64 in
                let id = state.nextID
                state.nextID += 1
                var consumer = Consumer(capacity: bufferSize)
                consumer.isCancelled = state.isFinished
                state.consumers[id] = consumer
                self.consumerCount.store(state.consumers.count, ordering: .relaxed)
                return id
            }
            return CircuitBreakerEvents(subscription: Subscription(broadcaster: self, id: id))
        }

        func publish(_ events: CircuitBreakerEvent...) {
            guard self.hasConsumers else { return }
            if let onPublish = self.onPublish {
                for event in events { onPublish(event) }
            }
            let resumptions = self.state.withLock { state in
                var resumptions: [(CheckedContinuation<CircuitBreakerEvent?, Never>, CircuitBreakerEvent)] = []
                guard !state.isFinished else { return resumptions }
                for id in state.consumers.keys.sorted() {
                    for event in events {
                        if let waiter = state.consumers[id]!.waiter {
                            state.consumers[id]!.waiter = nil
                            resumptions.append((waiter, event))
                        } else {
                            state.consumers[id]!.push(event)
                        }
                    }
                }
                return resumptions
            }
            for (waiter, event) in resumptions {
                waiter.resume(returning: event)
            }
        }

        func next(_ id: UInt64) async -> CircuitBreakerEvent? {
            await withTaskCancellationHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<CircuitBreakerEvent?, Never>) in
                    let ready: CircuitBreakerEvent?? = self.state.withLock { state in
                        guard var consumer = state.consumers[id] else { return .some(nil) }
                        defer { state.consumers[id] = consumer }
                        if let event = consumer.pop() { return .some(event) }
                        if consumer.isCancelled || state.isFinished { return .some(nil) }
                        consumer.waiter = continuation
                        return .none
                    }
                    if case .some(let event) = ready {
                        continuation.resume(returning: event)
                    }
                }
            } onCancel: {
                let waiter = self.state.withLock { state -> CheckedContinuation<CircuitBreakerEvent?, Never>? in
                    state.consumers[id]?.isCancelled = true
                    let waiter = state.consumers[id]?.waiter
                    state.consumers[id]?.waiter = nil
                    return waiter
                }
                waiter?.resume(returning: nil)
            }
        }

        func droppedCount(_ id: UInt64) -> Int {
            self.state.withLock { $0.consumers[id]?.dropped ?? 0 }
        }

        func unsubscribe(_ id: UInt64) {
            let waiter = self.state.withLock { state -> CheckedContinuation<CircuitBreakerEvent?, Never>? in
                let waiter = state.consumers.removeValue(forKey: id)?.waiter
                self.consumerCount.store(state.consumers.count, ordering: .relaxed)
                return waiter
            }
            waiter?.resume(returning: nil)
        }

        /// Ends every subscription: consumers drain their buffers, then get `nil`.
        func finish() {
            let waiters = self.state.withLock { state in
                state.isFinished = true
                var waiters: [CheckedContinuation<CircuitBreakerEvent?, Never>] = []
                for id in state.consumers.keys.sorted() {
                    if let waiter = state.consumers[id]!.waiter {
                        waiters.append(waiter)
                        state.consumers[id]!.waiter = nil
                    }
                }
                return waiters
            }
            for waiter in waiters {
                waiter.resume(returning: nil)
            }
        }
    }
}
