import KeelCore
import KeelEventSourcing
import Synchronization

/// A one-shot signal: ``wait()`` suspends until ``signal()`` has been called once, and returns at
/// once after that.
///
/// For checks that must know a step has happened in another task before they act; the waiter is
/// not cancellable (a check that never gets its signal is stopped by its test's time limit).
package final class OneShotSignal: Sendable {
    private enum State {
        case waiting([CheckedContinuation<Void, Never>])
        case signalled
    }

    private let state = Lock(State.waiting([]))

    /// Creates an unsignalled signal.
    package init() {}

    /// Signals, resuming every waiter; later calls do nothing.
    package func signal() {
        let waiters = self.state.withLock { state -> [CheckedContinuation<Void, Never>] in
            guard case .waiting(let waiters) = state else { return [] }
            state = .signalled
            return waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Suspends until ``signal()`` has been called.
    package func wait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let signalled = self.state.withLock { state -> Bool in
                guard case .waiting(var waiters) = state else { return true }
                waiters.append(continuation)
                state = .waiting(waiters)
                return false
            }
            if signalled { continuation.resume() }
        }
    }
}

/// A store that forwards every call to another and signals when a caller starts waiting for
/// events beyond a given head: how a check knows that a subscription has read everything and is
/// about to park (or has parked) in the wrapped store's ``EventStore/waitForHead(beyond:)``.
///
/// Subscriptions are built on the protocol (``EventStore/subscribe(from:pageSize:)``), so a
/// subscription made from the probe runs exactly the code one made from the wrapped store runs,
/// with the probe's signal in front of each wait.
package struct ParkingProbe: ForwardingEventStore {
    /// The store every call goes to.
    package let base: any EventStore
    /// Signalled the first time ``waitForHead(beyond:)`` is called with a head of at least
    /// ``threshold``.
    package let parking = OneShotSignal()
    /// The smallest head whose wait signals ``parking``.
    package let threshold: UInt64

    /// Wraps `base`.
    /// - Parameters:
    ///   - base: The store every call goes to.
    ///   - threshold: The smallest head whose wait signals ``parking``.
    package init(_ base: any EventStore, signallingWaitsBeyond threshold: UInt64) {
        self.base = base
        self.threshold = threshold
    }

    package func waitForHead(beyond head: UInt64) async {
        if head >= self.threshold { self.parking.signal() }
        await self.base.waitForHead(beyond: head)
    }
}
