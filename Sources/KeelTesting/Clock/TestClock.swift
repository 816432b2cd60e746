import KeelCore
import Synchronization

/// A clock whose time moves only when a test moves it.
///
/// Inject a `TestClock` wherever code takes a `some Clock<Duration>`. Code that sleeps on it
/// suspends until the test calls ``advance(by:)`` or ``advance(to:)`` past its deadline; nothing
/// depends on wall-clock time, so timeouts, backoffs and deadlines become exact and repeatable.
///
/// Tests coordinate with the code under test through an explicit handshake rather than by
/// sleeping or yielding: ``waitForSleepers(count:)`` suspends until that many tasks are asleep
/// on the clock, after which the test advances time and observes the effect.
///
/// ```swift
/// let clock = TestClock()
/// try await withThrowingTaskGroup(of: String.self) { group in
///     group.addTask {
///         try await clock.sleep(for: .seconds(5))
///         return "woke"
///     }
///     await clock.waitForSleepers(count: 1)  // the child is now asleep
///     clock.advance(by: .seconds(4))          // not yet
///     #expect(clock.sleeperCount == 1)
///     clock.advance(by: .seconds(1))          // reaches the deadline and wakes the child
///     let result = try await group.next()
///     #expect(result == "woke")
/// }
/// ```
///
/// The clock starts at ``Instant/offset`` `.zero` unless told otherwise and its
/// ``minimumResolution`` is `.zero`. All methods are thread-safe: state changes happen under a
/// short `Mutex` that is never held while a task is resumed, and the synchronous methods never
/// suspend. Modelled on `ManualClock` from swift-async-algorithms and the API of `TestClock` from
/// swift-clocks.
public final class TestClock: Clock, Sendable {
    /// An instant on a ``TestClock``: the time since the clock's start.
    public struct Instant: InstantProtocol, Sendable, Hashable, Comparable, CustomStringConvertible {
        /// The time since the clock's start, which is `.zero`.
        public var offset: Swift.Duration

        /// Creates the instant `offset` after the clock's start.
        /// - Parameter offset: The time since the start; `.zero` is the start itself.
        public init(offset: Swift.Duration = .zero) {
            self.offset = offset
        }

        /// The instant `duration` later (or earlier, for a negative duration).
        /// - Parameter duration: How far to move.
        /// - Returns: The moved instant.
        public func advanced(by duration: Swift.Duration) -> Instant {
            Instant(offset: self.offset + duration)
        }

        /// The time from this instant to `other`; negative when `other` is earlier.
        /// - Parameter other: The other instant.
        /// - Returns: `other.offset - offset`.
        public func duration(to other: Instant) -> Swift.Duration {
            other.offset - self.offset
        }

        /// Orders instants by their offset.
        /// - Parameters:
        ///   - lhs: An instant.
        ///   - rhs: Another instant.
        /// - Returns: Whether `lhs` is earlier than `rhs`.
        public static func < (lhs: Instant, rhs: Instant) -> Bool {
            lhs.offset < rhs.offset
        }

        /// The offset, such as `TestClock.Instant(1.5 seconds)`.
        public var description: String {
            "TestClock.Instant(\(self.offset))"
        }
    }

    private let state: Lock<StateMachine<CheckedContinuation<Void, any Error>, CheckedContinuation<Void, Never>>>

    /// Creates a clock that reads `now` until it is advanced.
    /// - Parameter now: The starting instant; the clock's start, `.zero`, by default.
    public init(now: Instant = .init(offset: .zero)) {
        self.state = Lock(StateMachine(now: now))
    }

    /// The current instant. It changes only through ``advance(by:)``, ``advance(to:)`` and
    /// ``advanceToNextSleeper()``.
    public var now: Instant {
        self.state.withLock { $0.now }
    }

    /// The smallest step the clock can measure: `.zero`, because it moves only when told.
    public var minimumResolution: Swift.Duration {
        .zero
    }

    /// The number of tasks currently suspended in ``sleep(until:tolerance:)``.
    ///
    /// A sleeper counts from the moment it is suspended until it is woken by an advance or
    /// cancelled; both remove it before this property can be read again, so after
    /// ``advance(by:)`` returns the count already excludes every sleeper that advance woke.
    public var sleeperCount: Int {
        self.state.withLock { $0.sleeperCount }
    }

    /// Suspends until the clock reaches `deadline`.
    ///
    /// When `deadline` is not after ``now`` the call returns at once without suspending, but
    /// still throws `CancellationError` if the current task is cancelled, as the system clocks'
    /// sleeps do. Otherwise the calling task is suspended, counted in ``sleeperCount``, and
    /// resumed by the first ``advance(by:)`` or ``advance(to:)`` that reaches `deadline`. Sleepers
    /// woken by the same advance are resumed in deadline order, equal deadlines in the order they
    /// went to sleep; the woken tasks then run concurrently.
    ///
    /// Cancellation is honoured at every point: a task cancelled before or while it sleeps is
    /// removed from the clock and resumed at once with `CancellationError`, without the clock
    /// moving.
    /// - Parameters:
    ///   - deadline: The instant to wake at.
    ///   - tolerance: Ignored: a test clock wakes sleepers exactly at their deadline.
    /// - Throws: `CancellationError` if the task is cancelled before the deadline is reached.
    public func sleep(until deadline: Instant, tolerance: Swift.Duration? = nil) async throws {
        if deadline <= self.now {
            try Task.checkCancellation()
            return
        }
        let id = self.state.withLock { $0.makeSleeperID() }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let action = self.state.withLock { $0.sleep(id: id, until: deadline, sleeper: continuation) }
                switch action {
                case .resume:
                    continuation.resume()
                case .resumeWithCancellation:
                    continuation.resume(throwing: CancellationError())
                case .suspend(let waiters):
                    for waiter in waiters {
                        waiter.resume()
                    }
                }
            }
        } onCancel: {
            let sleeper = self.state.withLock { $0.cancelSleeper(id: id) }
            sleeper?.resume(throwing: CancellationError())
        }
    }

    /// Moves the clock forward by `duration` and wakes every sleeper whose deadline it reaches.
    ///
    /// The woken sleepers are removed from ``sleeperCount`` before this method returns and are
    /// resumed in deadline order (equal deadlines in the order they went to sleep). The method
    /// itself never suspends; the woken tasks continue concurrently with the caller, so a test
    /// that needs to observe their effect awaits it (for example with a task group's `next()`, or
    /// with ``waitForSleepers(count:)`` when they go back to sleep).
    /// - Parameter duration: How far to move; must not be negative.
    public func advance(by duration: Swift.Duration) {
        precondition(duration >= .zero, "TestClock cannot go back in time: advance(by: \(duration))")
        let sleepers = self.state.withLock { $0.advance(to: $0.now.advanced(by: duration)) }
        for sleeper in sleepers {
            sleeper.resume()
        }
    }

    /// Moves the clock forward to `instant` and wakes every sleeper whose deadline it reaches.
    ///
    /// Behaves as ``advance(by:)`` with the distance from ``now`` to `instant`.
    /// - Parameter instant: The new current instant; must not be before ``now``.
    public func advance(to instant: Instant) {
        let sleepers = self.state.withLock { $0.advance(to: instant) }
        for sleeper in sleepers {
            sleeper.resume()
        }
    }

    /// Moves the clock to the earliest deadline among the current sleepers and wakes every
    /// sleeper due by then.
    ///
    /// Use it to step through scheduled work one deadline at a time without knowing the
    /// deadlines. With no sleepers the clock does not move.
    /// - Returns: `true` if the clock moved to a sleeper's deadline, `false` if nobody was asleep.
    @discardableResult
    public func advanceToNextSleeper() -> Bool {
        let sleepers = self.state.withLock { state -> [CheckedContinuation<Void, any Error>]? in
            guard let deadline = state.nextDeadline else { return nil }
            return state.advance(to: deadline)
        }
        guard let sleepers else { return false }
        for sleeper in sleepers {
            sleeper.resume()
        }
        return true
    }

    /// Suspends until at least `count` tasks are asleep on this clock at the same time.
    ///
    /// This is the handshake that replaces sleeping or yielding in tests: start the code under
    /// test, wait until it has gone to sleep on the clock, then advance. The waiter does not poll:
    /// it is resumed by the ``sleep(until:tolerance:)`` call that brings the number of sleepers to
    /// `count`. It returns at once when enough sleepers are already asleep or `count` is not
    /// positive. Sleepers that finish before the count is reached do not count.
    ///
    /// Cancelling the waiting task resumes it at once and it returns normally, without the count
    /// having been reached; check `Task.isCancelled` or ``sleeperCount`` if that matters.
    /// - Parameter count: How many simultaneous sleepers to wait for.
    public func waitForSleepers(count: Int) async {
        if count <= 0 || self.sleeperCount >= count {
            return
        }
        let id = self.state.withLock { $0.makeWaiterID() }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let action = self.state.withLock { $0.wait(id: id, forSleepers: count, waiter: continuation) }
                switch action {
                case .resume:
                    continuation.resume()
                case .suspend:
                    break
                }
            }
        } onCancel: {
            let waiter = self.state.withLock { $0.cancelWaiter(id: id) }
            waiter?.resume()
        }
    }
}
