/// The pure state of a ``Timeout``'s shared timer: the deadlines of the attempts waiting for it,
/// and the one timer task that sleeps until the earliest of them.
///
/// Times are `Duration`s since the timer's origin on its clock. Every method is synchronous and
/// returns what the caller must do (start or replace the timer task, expire entries) instead of
/// doing it, so that ``TimeoutTimer`` holds its lock only for the state change. The machine is
/// generic over what it stores for an attempt, so it can be tested without tasks.
///
/// The deadlines sit in a binary min-heap keyed by (deadline, id). Removing an entry before it
/// expires (its attempt finished or was cancelled) takes it out of the dictionary of pending
/// entries only; its heap item goes stale and is dropped when it reaches the top, when the last
/// pending entry leaves (the heap is emptied), or when stale items outnumber pending ones (the
/// heap is rebuilt from the pending entries). So the heap never holds more than about twice the
/// pending entries, and an entry costs O(log n) to add and O(1) to remove.
///
/// The timer task is identified by a generation. ``add(_:deadline:)`` asks for a new task when
/// none is sleeping, or when the new deadline is earlier than the one the task sleeps until (the
/// old task is then cancelled). A task that wakes calls ``fire(now:generation:)``: it expires the
/// due entries and, if it is still the current generation, learns the next deadline to sleep
/// until, or that none is pending and it must end. The timer never sleeps on a deadline that is
/// not pending, except the one it was sleeping until when the entry left (it is not woken just to
/// stop: it ends when it wakes).
struct TimeoutSchedule<Entry> {
    /// What the caller of ``add(_:deadline:)`` must do.
    enum AddAction: Equatable {
        /// The running timer task already sleeps until this deadline or an earlier one.
        case none
        /// Start a timer task of `generation` sleeping until `deadline`; none is running.
        case start(generation: UInt64, until: Duration)
        /// Cancel the running timer task and start one of `generation` sleeping until `deadline`,
        /// which is earlier than the one the running task sleeps until.
        case replace(generation: UInt64, until: Duration)
    }

    private struct Item {
        var deadline: Duration
        var id: UInt64

        static func < (lhs: Item, rhs: Item) -> Bool {
            (lhs.deadline, lhs.id) < (rhs.deadline, rhs.id)
        }
    }

    private var heap: [Item] = []
    private var pending: [UInt64: (deadline: Duration, entry: Entry)] = [:]
    private var nextID: UInt64 = 0
    /// The deadline the current timer task sleeps until; `nil` when no task is running.
    private(set) var armedUntil: Duration?
    /// The generation of the current (or last) timer task.
    private(set) var generation: UInt64 = 0
    /// Whether ``shutDown()`` was called; no entry is added after it.
    private(set) var isShutDown = false

    /// The entries waiting for their deadline.
    var pendingCount: Int {
        self.pending.count
    }

    /// The heap's items, pending and stale: at most about twice ``pendingCount``.
    var storedCount: Int {
        self.heap.count
    }

    /// Adds an entry that expires at `deadline`.
    /// - Parameters:
    ///   - entry: What to hand back when it expires.
    ///   - deadline: When it expires.
    /// - Returns: The entry's id, for ``remove(id:)``, and what to do with the timer task; `nil`
    ///   after ``shutDown()``, when nothing was added.
    mutating func add(_ entry: Entry, deadline: Duration) -> (id: UInt64, action: AddAction)? {
        guard !self.isShutDown else { return nil }
        let id = self.nextID
        self.nextID += 1
        self.pending[id] = (deadline, entry)
        self.push(Item(deadline: deadline, id: id))
        switch self.armedUntil {
        case nil:
            self.generation += 1
            self.armedUntil = deadline
            return (id, .start(generation: self.generation, until: deadline))
        case let armed? where deadline < armed:
            self.generation += 1
            self.armedUntil = deadline
            return (id, .replace(generation: self.generation, until: deadline))
        default:
            return (id, .none)
        }
    }

    /// Removes the entry `id` before it expires; nothing if it already expired or was removed.
    /// - Parameter id: The id ``add(_:deadline:)`` returned.
    /// - Returns: The entry, if it was pending.
    @discardableResult
    mutating func remove(id: UInt64) -> Entry? {
        guard let removed = self.pending.removeValue(forKey: id) else { return nil }
        if self.pending.isEmpty {
            self.heap.removeAll(keepingCapacity: self.heap.count <= 1_024)
        } else if self.heap.count > 64 && self.heap.count > 2 * self.pending.count {
            self.rebuild()
        }
        return removed.entry
    }

    /// Expires every entry due at `now`: what a timer task does when it wakes.
    /// - Parameters:
    ///   - now: The current time.
    ///   - generation: The waking task's generation.
    /// - Returns: The expired entries, by deadline; and the deadline the task must sleep until
    ///   next, or `nil` when it must end (nothing is pending, or it is no longer the current task).
    mutating func fire(now: Duration, generation: UInt64) -> (expired: [Entry], next: Duration?) {
        var expired: [Entry] = []
        while let top = self.heap.first, top.deadline <= now {
            self.popTop()
            if let due = self.pending.removeValue(forKey: top.id) {
                expired.append(due.entry)
            }
        }
        if self.pending.isEmpty {
            self.heap.removeAll(keepingCapacity: self.heap.count <= 1_024)
        }
        guard generation == self.generation, !self.isShutDown else { return (expired, nil) }
        // Drop stale items so that the top is the earliest pending deadline.
        while let top = self.heap.first, self.pending[top.id] == nil {
            self.popTop()
        }
        self.armedUntil = self.heap.first?.deadline
        return (expired, self.armedUntil)
    }

    /// Stops the timer for good: no task runs and no entry is added any more.
    /// - Returns: The entries still pending, which nothing will expire now.
    mutating func shutDown() -> [Entry] {
        self.isShutDown = true
        self.generation += 1
        self.armedUntil = nil
        let entries = self.pending.values.sorted { $0.deadline < $1.deadline }.map(\.entry)
        self.pending.removeAll()
        self.heap.removeAll()
        return entries
    }

    // MARK: Heap

    private mutating func push(_ item: Item) {
        self.heap.append(item)
        var child = self.heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard self.heap[child] < self.heap[parent] else { break }
            self.heap.swapAt(child, parent)
            child = parent
        }
    }

    private mutating func popTop() {
        let last = self.heap.removeLast()
        guard !self.heap.isEmpty else { return }
        self.heap[0] = last
        self.siftDown(from: 0)
    }

    private mutating func siftDown(from index: Int) {
        var parent = index
        let count = self.heap.count
        while true {
            let left = 2 * parent + 1
            guard left < count else { return }
            let right = left + 1
            let smaller = right < count && self.heap[right] < self.heap[left] ? right : left
            guard self.heap[smaller] < self.heap[parent] else { return }
            self.heap.swapAt(parent, smaller)
            parent = smaller
        }
    }

    /// Rebuilds the heap from the pending entries, dropping every stale item.
    private mutating func rebuild() {
        self.heap = self.pending.map { Item(deadline: $0.value.deadline, id: $0.key) }
        var index = self.heap.count / 2
        while index > 0 {
            index -= 1
            self.siftDown(from: index)
        }
    }
}
