extension TestClock {
    /// The pure state of a ``TestClock``: the current instant, the sleepers and the waiters.
    ///
    /// Every method is synchronous and returns what the caller must do (resume a sleeper, resume
    /// waiters) instead of doing it, so that ``TestClock`` can hold its lock only for the state
    /// change and resume continuations after releasing it. The machine is generic over what it
    /// stores for a suspended sleeper and a suspended waiter, so it can be tested without tasks.
    ///
    /// A sleeper goes through these states, keyed by the id from ``makeSleeperID()``:
    ///
    /// - *arriving*: it has an id but has not stored its continuation yet;
    /// - *cancelled while arriving*: its task was cancelled before it stored its continuation; when
    ///   the continuation arrives it is resumed at once with `CancellationError`;
    /// - *asleep*: it waits for the clock to reach its deadline;
    /// - gone: it was woken or cancelled; a late cancellation finds nothing and does nothing.
    ///
    /// Waiters in ``TestClock/waitForSleepers(count:)`` follow the same life cycle.
    package struct StateMachine<Sleeper, Waiter> {
        /// Whether a sleeper or waiter that has an id has been cancelled before it was stored.
        private enum Arrival {
            case arriving
            case cancelledWhileArriving
        }

        private struct Asleep {
            var deadline: Instant
            /// The position in registration order; breaks ties between equal deadlines.
            var order: UInt64
            var sleeper: Sleeper
        }

        private struct Waiting {
            var count: Int
            var waiter: Waiter
        }

        /// What the caller of ``sleep(id:until:sleeper:)`` must do.
        package enum SleepAction {
            /// The deadline has already been reached: resume the sleeper normally.
            case resume
            /// The sleeper's task was cancelled before it arrived: resume it with `CancellationError`.
            case resumeWithCancellation
            /// The sleeper is stored; resume these waiters, whose sleeper count has been reached.
            case suspend(resumingWaiters: [Waiter])
        }

        /// What the caller of ``wait(id:forSleepers:waiter:)`` must do.
        package enum WaitAction {
            /// The count is reached, or the waiter was cancelled while arriving: resume it.
            case resume
            /// The waiter is stored until the count is reached or it is cancelled.
            case suspend
        }

        /// The clock's current instant.
        package private(set) var now: Instant
        private var nextID: UInt64 = 0
        private var nextOrder: UInt64 = 0
        private var arrivingSleepers: [UInt64: Arrival] = [:]
        private var asleep: [UInt64: Asleep] = [:]
        private var arrivingWaiters: [UInt64: Arrival] = [:]
        private var waiting: [UInt64: Waiting] = [:]

        /// Creates a machine whose clock reads `now` and has no sleepers.
        /// - Parameter now: The starting instant.
        package init(now: Instant) {
            self.now = now
        }

        /// The number of sleepers currently suspended.
        package var sleeperCount: Int {
            self.asleep.count
        }

        /// The number of waiters currently suspended.
        package var waiterCount: Int {
            self.waiting.count
        }

        /// The earliest deadline of a suspended sleeper, if any.
        package var nextDeadline: Instant? {
            self.asleep.values.lazy.map(\.deadline).min()
        }

        // MARK: Sleepers

        /// Gives a new sleeper its id; it is *arriving* until ``sleep(id:until:sleeper:)``.
        /// - Returns: The id.
        package mutating func makeSleeperID() -> UInt64 {
            let id = self.makeID()
            self.arrivingSleepers[id] = .arriving
            return id
        }

        /// Stores the sleeper `id` until the clock reaches `deadline`.
        /// - Parameters:
        ///   - id: An id from ``makeSleeperID()`` that has not slept yet.
        ///   - deadline: When to wake it.
        ///   - sleeper: What to hand back when it must be resumed.
        /// - Returns: What to do with the sleeper and any waiters.
        package mutating func sleep(id: UInt64, until deadline: Instant, sleeper: Sleeper) -> SleepAction {
            guard let arrival = self.arrivingSleepers.removeValue(forKey: id) else {
                preconditionFailure("TestClock sleeper \(id) slept without arriving or slept twice: \(self)")
            }
            switch arrival {
            case .cancelledWhileArriving:
                return .resumeWithCancellation
            case .arriving:
                guard deadline > self.now else { return .resume }
                self.asleep[id] = Asleep(deadline: deadline, order: self.nextOrder, sleeper: sleeper)
                self.nextOrder += 1
                return .suspend(resumingWaiters: self.removeSatisfiedWaiters())
            }
        }

        /// Cancels the sleeper `id`, whatever state it is in.
        /// - Parameter id: The sleeper's id.
        /// - Returns: The sleeper to resume with `CancellationError`, if it was asleep; `nil` if it
        ///   had not arrived yet (it will be resumed on arrival) or was already woken.
        package mutating func cancelSleeper(id: UInt64) -> Sleeper? {
            if let asleep = self.asleep.removeValue(forKey: id) {
                return asleep.sleeper
            }
            if self.arrivingSleepers[id] != nil {
                self.arrivingSleepers[id] = .cancelledWhileArriving
            }
            return nil
        }

        /// Moves the clock to `instant` and removes every sleeper whose deadline has been reached.
        /// - Parameter instant: The new current instant; not before ``now``.
        /// - Returns: The woken sleepers, by deadline, and by registration order for equal deadlines.
        package mutating func advance(to instant: Instant) -> [Sleeper] {
            precondition(instant >= self.now, "TestClock cannot go back in time from \(self.now) to \(instant)")
            self.now = instant
            let due = self.asleep.filter { $0.value.deadline <= instant }
            for id in due.keys {
                self.asleep.removeValue(forKey: id)
            }
            return due.values
                .sorted { ($0.deadline, $0.order) < ($1.deadline, $1.order) }
                .map(\.sleeper)
        }

        // MARK: Waiters

        /// Gives a new waiter its id; it is *arriving* until ``wait(id:forSleepers:waiter:)``.
        /// - Returns: The id.
        package mutating func makeWaiterID() -> UInt64 {
            let id = self.makeID()
            self.arrivingWaiters[id] = .arriving
            return id
        }

        /// Stores the waiter `id` until at least `count` sleepers are suspended.
        /// - Parameters:
        ///   - id: An id from ``makeWaiterID()`` that has not waited yet.
        ///   - count: The number of sleepers to wait for.
        ///   - waiter: What to hand back when it must be resumed.
        /// - Returns: Whether to resume the waiter now or leave it suspended.
        package mutating func wait(id: UInt64, forSleepers count: Int, waiter: Waiter) -> WaitAction {
            guard let arrival = self.arrivingWaiters.removeValue(forKey: id) else {
                preconditionFailure("TestClock waiter \(id) waited without arriving or waited twice: \(self)")
            }
            switch arrival {
            case .cancelledWhileArriving:
                return .resume
            case .arriving:
                guard self.asleep.count < count else { return .resume }
                self.waiting[id] = Waiting(count: count, waiter: waiter)
                return .suspend
            }
        }

        /// Cancels the waiter `id`, whatever state it is in.
        /// - Parameter id: The waiter's id.
        /// - Returns: The waiter to resume, if it was suspended; `nil` if it had not arrived yet (it
        ///   will be resumed on arrival) or was already resumed.
        package mutating func cancelWaiter(id: UInt64) -> Waiter? {
            if let waiting = self.waiting.removeValue(forKey: id) {
                return waiting.waiter
            }
            if self.arrivingWaiters[id] != nil {
                self.arrivingWaiters[id] = .cancelledWhileArriving
            }
            return nil
        }

        // MARK: Helpers

        private mutating func makeID() -> UInt64 {
            defer { self.nextID += 1 }
            return self.nextID
        }

        private mutating func removeSatisfiedWaiters() -> [Waiter] {
            let satisfied = self.waiting.filter { $0.value.count <= self.asleep.count }
            for id in satisfied.keys {
                self.waiting.removeValue(forKey: id)
            }
            return satisfied.sorted { $0.key < $1.key }.map(\.value.waiter)
        }
    }
}

extension TestClock.StateMachine: CustomStringConvertible {
    /// A summary for precondition messages: the instant and how many sleepers and waiters are in
    /// each state.
    package var description: String {
        "StateMachine(now: \(self.now), arriving sleepers: \(self.arrivingSleepers.count), "
            + "asleep: \(self.asleep.count), arriving waiters: \(self.arrivingWaiters.count), "
            + "waiting: \(self.waiting.count))"
    }
}
