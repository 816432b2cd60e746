import KeelEventSourcing

extension PostgresEventStore {
    /// An append waiting for the writer: what to write, and whom to tell how it went.
    struct PendingAppend: Sendable {
        let events: [EventData]
        let stream: StreamID
        let expected: ExpectedVersion
        let continuation: CheckedContinuation<Result<AppendResult, EventStoreError>, Never>
    }

    /// Counts of what the store's writer has done, for tests and diagnostics.
    package struct Statistics: Sendable, Hashable {
        /// Appends handed to the writer's queue.
        package var enqueuedAppends = 0
        /// Appends the writer has taken into a batch.
        package var takenAppends = 0
        /// Batches the writer has taken.
        package var takenBatches = 0
        /// Batches whose transaction has asked for the head's lock (sent its `FOR UPDATE`).
        package var lockRequests = 0
        /// Batches whose transaction has locked the head (each batch does, first thing): a batch
        /// taken but not yet locked is waiting for another transaction that holds the head.
        package var lockedBatches = 0
        /// Transactions the writer has committed (one per batch that wrote something).
        package var committedTransactions = 0
        /// Appends acknowledged as written, empty ones included.
        package var committedAppends = 0
        /// Batches that failed as a whole (a connection error, a server error, an unknown commit).
        package var failedBatches = 0
        /// Batches written in a transaction that locks the head first, because another writer
        /// moved the head between their unlocked read and their write.
        package var lockedRetries = 0
        /// Batches planned from the writer's cache of the head and their streams, with no read
        /// before their write (one round trip).
        package var cachedBatches = 0
    }

    /// The store's hot state, behind one lock: the writer's queue, the highest head known to be
    /// committed, the parked ``waitForHead(beyond:)`` callers, and whether the store is closed.
    ///
    /// Every method is a synchronous transition that returns what the caller must do after
    /// releasing the lock (resume continuations); nothing here suspends.
    struct State: Sendable {
        typealias Waiter = CheckedContinuation<Void, Never>

        private(set) var isClosed = false
        private(set) var knownHead: UInt64 = 0
        private var queue: [PendingAppend] = []
        private var writer: Waiter?
        private var headWaiters: [UInt64: (head: UInt64, continuation: Waiter)] = [:]
        private var nextWaiterID: UInt64 = 0
        private(set) var statistics = Statistics()
        private var statisticsWaiters: [(condition: @Sendable (Statistics) -> Bool, continuation: Waiter)] = []

        // MARK: Appends and the writer

        /// Queues `pending` unless the store is closed; returns the parked writer to wake, if any.
        mutating func enqueue(_ pending: PendingAppend) -> EnqueueAction {
            guard !self.isClosed else { return .closed }
            self.queue.append(pending)
            self.statistics.enqueuedAppends += 1
            let waiters = self.takeSatisfiedStatisticsWaiters()
            defer { self.writer = nil }
            return .enqueued(wakingWriter: self.writer, statisticsWaiters: waiters)
        }

        enum EnqueueAction {
            case closed
            case enqueued(wakingWriter: Waiter?, statisticsWaiters: [Waiter])
        }

        /// The writer's next step: a batch of queued appends holding at most `maxEvents` events
        /// (always at least one append), `finished` once the store is closed and the queue is
        /// empty, or `wait` when there is nothing to do yet.
        mutating func takeBatch(maxEvents: Int) -> BatchAction {
            guard !self.queue.isEmpty else { return self.isClosed ? .finished : .wait }
            var count = 0
            var events = 0
            for pending in self.queue {
                if count > 0 && events + pending.events.count > maxEvents { break }
                count += 1
                events += pending.events.count
            }
            let batch = Array(self.queue.prefix(count))
            self.queue.removeFirst(count)
            self.statistics.takenAppends += count
            self.statistics.takenBatches += 1
            return .batch(batch, statisticsWaiters: self.takeSatisfiedStatisticsWaiters())
        }

        enum BatchAction {
            case batch([PendingAppend], statisticsWaiters: [Waiter])
            case finished
            case wait
        }

        /// Parks the writer until an append is queued or the store closes; returns `false` when
        /// there is already something to do (the caller resumes `writer` at once).
        mutating func parkWriter(_ writer: Waiter) -> Bool {
            guard self.queue.isEmpty && !self.isClosed else { return false }
            precondition(self.writer == nil, "two writers parked in one store")
            self.writer = writer
            return true
        }

        /// Records that the batch in flight was planned from the writer's cache.
        mutating func batchPlannedFromCache() {
            self.statistics.cachedBatches += 1
        }

        /// Records that the batch in flight asks for the head's lock; returns the waiters to resume.
        mutating func batchRequestsHeadLock() -> [Waiter] {
            self.statistics.lockRequests += 1
            return self.takeSatisfiedStatisticsWaiters()
        }

        /// Records that the batch in flight locked the head; returns the waiters to resume.
        mutating func batchLockedHead() -> [Waiter] {
            self.statistics.lockedBatches += 1
            return self.takeSatisfiedStatisticsWaiters()
        }

        /// Records that the batch in flight found the head moved and goes again under its lock;
        /// returns the waiters to resume.
        mutating func batchRetriesLocked() -> [Waiter] {
            self.statistics.lockedRetries += 1
            return self.takeSatisfiedStatisticsWaiters()
        }

        /// Records a finished batch; returns the waiters to resume.
        mutating func batchFinished(appends: Int, committed: Bool, failed: Bool) -> [Waiter] {
            self.statistics.committedAppends += appends
            if committed { self.statistics.committedTransactions += 1 }
            if failed { self.statistics.failedBatches += 1 }
            return self.takeSatisfiedStatisticsWaiters()
        }

        // MARK: Head

        /// Raises the known head to `head` (a commit of ours, a notification, a read); returns
        /// the waiters it satisfies.
        mutating func observe(head: UInt64) -> [Waiter] {
            guard head > self.knownHead else { return [] }
            self.knownHead = head
            var ready: [Waiter] = []
            for (id, waiter) in self.headWaiters where head > waiter.head {
                ready.append(waiter.continuation)
                self.headWaiters[id] = nil
            }
            return ready
        }

        /// A fresh id for a head waiter.
        mutating func makeWaiterID() -> UInt64 {
            defer { self.nextWaiterID += 1 }
            return self.nextWaiterID
        }

        /// Parks a head waiter; returns `false` when it must be resumed at once: the head is
        /// already beyond `head`, the store is closed, or the task was cancelled.
        mutating func parkHeadWaiter(id: UInt64, beyond head: UInt64, _ continuation: Waiter, isCancelled: Bool) -> Bool
        {
            guard self.knownHead <= head && !self.isClosed && !isCancelled else { return false }
            self.headWaiters[id] = (head, continuation)
            return true
        }

        /// Removes the head waiter `id` (its task was cancelled); returns it to resume.
        mutating func removeHeadWaiter(id: UInt64) -> Waiter? {
            self.headWaiters.removeValue(forKey: id)?.continuation
        }

        // MARK: Statistics

        /// Parks a statistics waiter; returns `false` when `condition` already holds.
        mutating func parkStatisticsWaiter(
            _ condition: @escaping @Sendable (Statistics) -> Bool,
            _ continuation: Waiter
        ) -> Bool {
            guard !condition(self.statistics) else { return false }
            self.statisticsWaiters.append((condition, continuation))
            return true
        }

        private mutating func takeSatisfiedStatisticsWaiters() -> [Waiter] {
            guard !self.statisticsWaiters.isEmpty else { return [] }
            var ready: [Waiter] = []
            self.statisticsWaiters.removeAll { waiter in
                guard waiter.condition(self.statistics) else { return false }
                ready.append(waiter.continuation)
                return true
            }
            return ready
        }

        // MARK: Closing

        /// Closes the store: every later call fails with ``EventStoreError/Code/closed``. Returns
        /// the queued appends to fail and every continuation to resume (the writer, so that it
        /// finishes, and every head waiter). Closing twice returns nothing the second time.
        mutating func close() -> (failed: [PendingAppend], resumed: [Waiter]) {
            guard !self.isClosed else { return ([], []) }
            self.isClosed = true
            let failed = self.queue
            self.queue = []
            var resumed = self.headWaiters.values.map(\.continuation)
            self.headWaiters = [:]
            if let writer = self.writer {
                resumed.append(writer)
                self.writer = nil
            }
            return (failed, resumed)
        }
    }
}
