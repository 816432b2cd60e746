import KeelCore
import Synchronization

/// An event whose handler kept failing after every redelivery attempt.
///
/// Dead letters wait in the bus's queue (``EventBus/deadLetters``) until they are replayed to
/// their subscription (``EventBus/replayDeadLetters(where:)``) or removed.
public struct DeadLetter: Sendable, CustomStringConvertible {
    /// The letter's position in the queue's history; unique within a bus.
    public var sequence: UInt64
    /// The event.
    public var event: any Event
    /// Its envelope.
    public var envelope: EventEnvelope
    /// The subscription whose handler failed.
    public var subscription: SubscriptionID
    /// That subscription's name.
    public var subscriptionName: String
    /// The last error the handler threw.
    public var error: any Error
    /// How many attempts were made.
    public var attempts: Int

    /// One line: sequence, topic, subscription, attempts and error.
    public var description: String {
        "#\(self.sequence) \(self.envelope.topic) → \(self.subscriptionName) after \(self.attempts) attempts: \(self.error)"
    }
}

/// The bus's bounded queue of dead letters.
final class DeadLetterQueue: Sendable {
    private struct State {
        var letters: [DeadLetter] = []
        var next: UInt64 = 0
        var evicted = 0
    }
    private let state = Lock(State())
    let capacity: Int

    init(capacity: Int) {
        precondition(capacity >= 0, "deadLetterCapacity must not be negative, got \(capacity)")
        self.capacity = capacity
    }

    func append(
        _ event: PublishedEvent,
        subscription: SubscriptionID,
        name: String,
        error: any Error,
        attempts: Int
    ) {
        self.state.withLock { state in
            state.letters.append(
                DeadLetter(
                    sequence: state.next,
                    event: event.event,
                    envelope: event.envelope,
                    subscription: subscription,
                    subscriptionName: name,
                    error: error,
                    attempts: attempts
                )
            )
            state.next += 1
            if state.letters.count > self.capacity {
                state.letters.removeFirst(state.letters.count - self.capacity)
                state.evicted += 1
            }
        }
    }

    var letters: [DeadLetter] {
        self.state.withLock { $0.letters }
    }

    var evicted: Int {
        self.state.withLock { $0.evicted }
    }

    func remove(where predicate: (DeadLetter) -> Bool) -> [DeadLetter] {
        self.state.withLock { state in
            let removed = state.letters.filter(predicate)
            state.letters.removeAll(where: predicate)
            return removed
        }
    }

    func putBack(_ letters: [DeadLetter]) {
        guard !letters.isEmpty else { return }
        self.state.withLock { state in
            state.letters = (letters + state.letters).sorted { $0.sequence < $1.sequence }
        }
    }
}
