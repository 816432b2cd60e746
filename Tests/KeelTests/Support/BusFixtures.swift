import KeelCore
import Synchronization
import Testing

@testable import Keel

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Events, handler doubles and synchronisation helpers shared by the bus tests.
///
/// Everything here waits on continuations: nothing sleeps, polls or yields in a loop. Waits honour
/// cancellation, so a subscription that is cancelled while its handler waits ends promptly.
enum BusFixtures {
    // MARK: Events

    struct Numbered: Event, Hashable {
        static let topic = "test.numbered"
        var publisher = 0
        var sequence: Int
    }

    struct OrderCreated: Event, Hashable {
        static let topic = "order.created"
        var orderID: Int
    }

    struct OrderShipped: Event, Hashable {
        static let topic = "order.shipped"
        var orderID: Int
    }

    struct PaymentFailed: Event, Hashable {
        static let topic = "payment.failed"
        var orderID: Int
    }

    /// An event whose topic is chosen per value.
    struct Routed: Event, Hashable {
        static let topic = "routed"
        var route: String
        var topic: String { self.route }
    }

    /// What a failing handler throws.
    struct HandlerFailure: Error, Hashable, CustomStringConvertible {
        var sequence: Int
        var description: String { "handler failed on \(self.sequence)" }
    }

    /// The wall-clock time every fixture bus stamps on its envelopes (its wall clock is fixed at
    /// this many nanoseconds since the epoch).
    static let publicationTime = Date(timeIntervalSince1970: 1_700_000_000)

    // MARK: Buses

    /// Runs `body` with a fresh bus and always shuts the bus down afterwards, then checks that the
    /// bus accounted for every event it took (its work tracker is back at zero).
    static func withBus<T>(
        configuration: EventBus.Configuration = EventBus.Configuration(),
        clock: some Clock<Duration> = ContinuousClock(),
        telemetry: any Telemetry = NoOpTelemetry(),
        random: RandomSource = RandomSource(seed: 42),
        sourceLocation: SourceLocation = #_sourceLocation,
        _ body: (EventBus) async throws -> T
    ) async throws -> T {
        let bus = EventBus(
            configuration: configuration,
            clock: clock,
            telemetry: telemetry,
            random: random,
            wallClock: .fixed(nanosecondsSinceEpoch: 1_700_000_000_000_000_000)
        )
        let result: T
        do {
            result = try await body(bus)
        } catch {
            await bus.shutdown()
            throw error
        }
        await bus.shutdown()
        #expect(bus.tracker.inFlight == 0, "the bus lost track of events", sourceLocation: sourceLocation)
        return result
    }

    /// Subscription options for the overflow tests.
    static func options(
        capacity: Int,
        overflow: OverflowPolicy = .suspendPublisher,
        batchSize: Int = 64,
        redelivery: RedeliveryPolicy = .none
    ) -> SubscriptionOptions {
        SubscriptionOptions(bufferCapacity: capacity, overflow: overflow, redelivery: redelivery, batchSize: batchSize)
    }

    // MARK: Synchronisation

    /// A gate that handlers wait at until the test opens it.
    ///
    /// ``waitForWaiters(count:)`` is the handshake: it returns once that many tasks are blocked at
    /// the gate, so a test knows a handler is stuck without sleeping. A waiter that is cancelled
    /// leaves at once with `CancellationError`.
    final class Gate: Sendable {
        private struct Watcher {
            var count: Int
            var continuation: CheckedContinuation<Void, Never>
        }

        private struct State {
            var isOpen = false
            var waiters: [UInt64: CheckedContinuation<Void, any Error>] = [:]
            var nextID: UInt64 = 0
            var watchers: [Watcher] = []

            mutating func readyWatchers() -> [CheckedContinuation<Void, Never>] {
                var ready: [CheckedContinuation<Void, Never>] = []
                self.watchers.removeAll { watcher in
                    guard watcher.count <= self.waiters.count else { return false }
                    ready.append(watcher.continuation)
                    return true
                }
                return ready
            }
        }

        private let state = Lock(State())

        /// How many tasks are blocked at the gate now.
        var waiting: Int { self.state.withLock { $0.waiters.count } }

        /// Suspends until the gate is open; returns at once when it already is.
        func wait() async throws {
            let id = self.state.withLock { state in
                defer { state.nextID += 1 }
                return state.nextID
            }
            try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                    enum Action {
                        case pass, cancel
                        case parked([CheckedContinuation<Void, Never>])
                    }
                    let action = self.state.withLock { state -> Action in
                        if state.isOpen { return .pass }
                        if Task.isCancelled { return .cancel }
                        state.waiters[id] = continuation
                        return .parked(state.readyWatchers())
                    }
                    switch action {
                    case .pass: continuation.resume()
                    case .cancel: continuation.resume(throwing: CancellationError())
                    case .parked(let ready): for watcher in ready { watcher.resume() }
                    }
                }
            } onCancel: {
                let waiter = self.state.withLock { $0.waiters.removeValue(forKey: id) }
                waiter?.resume(throwing: CancellationError())
            }
        }

        /// Suspends until at least `count` tasks are blocked at the gate at once.
        func waitForWaiters(count: Int) async {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let ready = self.state.withLock { state -> Bool in
                    if state.waiters.count >= count { return true }
                    state.watchers.append(Watcher(count: count, continuation: continuation))
                    return false
                }
                if ready { continuation.resume() }
            }
        }

        /// Opens the gate for good and lets every waiter through.
        func open() {
            let waiters = self.state.withLock { state in
                state.isOpen = true
                defer { state.waiters.removeAll() }
                return Array(state.waiters.values)
            }
            for waiter in waiters { waiter.resume() }
        }
    }

    /// Collects values from handlers and lets a test wait until enough have arrived.
    final class Collector<Value: Sendable>: Sendable {
        private struct Waiter {
            var id: UInt64
            var count: Int
            var continuation: CheckedContinuation<[Value], Never>
        }

        private struct State {
            var values: [Value] = []
            var waiters: [Waiter] = []
            var nextID: UInt64 = 0
        }

        private let state = Lock(State())

        /// Everything collected so far, in arrival order.
        var values: [Value] { self.state.withLock { $0.values } }

        /// How many values were collected.
        var count: Int { self.state.withLock { $0.values.count } }

        /// Adds a value and wakes the waiters it satisfies.
        func append(_ value: Value) {
            let ready = self.state.withLock { state -> [(CheckedContinuation<[Value], Never>, [Value])] in
                state.values.append(value)
                var ready: [(CheckedContinuation<[Value], Never>, [Value])] = []
                state.waiters.removeAll { waiter in
                    guard state.values.count >= waiter.count else { return false }
                    ready.append((waiter.continuation, state.values))
                    return true
                }
                return ready
            }
            for (continuation, values) in ready { continuation.resume(returning: values) }
        }

        /// Suspends until at least `count` values were collected and returns all of them; returns
        /// what there is when cancelled.
        @discardableResult
        func waitFor(count: Int) async -> [Value] {
            let id = self.state.withLock { state in
                defer { state.nextID += 1 }
                return state.nextID
            }
            return await withTaskCancellationHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<[Value], Never>) in
                    let ready = self.state.withLock { state -> [Value]? in
                        if state.values.count >= count || Task.isCancelled { return state.values }
                        state.waiters.append(Waiter(id: id, count: count, continuation: continuation))
                        return nil
                    }
                    if let ready { continuation.resume(returning: ready) }
                }
            } onCancel: {
                let waiter = self.state.withLock { state -> (CheckedContinuation<[Value], Never>, [Value])? in
                    guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                    return (state.waiters.remove(at: index).continuation, state.values)
                }
                if let (continuation, values) = waiter { continuation.resume(returning: values) }
            }
        }
    }

    /// A value set after a handler was made, for the handler to read (its own subscription).
    final class Box<Value: Sendable>: Sendable {
        private let storage = Lock<Value?>(nil)

        var value: Value? { self.storage.withLock { $0 } }

        func set(_ value: Value) {
            self.storage.withLock { $0 = value }
        }
    }

    /// A Boolean that handlers read and tests flip.
    final class Flag: Sendable {
        private let storage: Atomic<Bool>

        init(_ value: Bool = false) {
            self.storage = Atomic(value)
        }

        var value: Bool { self.storage.load(ordering: .acquiring) }

        func set(_ value: Bool) {
            self.storage.store(value, ordering: .releasing)
        }
    }
}
