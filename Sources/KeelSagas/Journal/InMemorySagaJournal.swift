import KeelCore
import KeelEventSourcing
import Synchronization

/// Saga journals kept in this process's memory, for sagas that need not outlive it: tests, and
/// in-process workflows whose compensation matters but whose recovery after a crash does not.
///
/// ```swift
/// let runner = SagaRunner(journal: InMemorySagaJournal())
/// let outcome = try await runner.run(PlaceOrder(requests: requests), id: order.id, input: order)
/// ```
///
/// A runner over an in-memory journal does everything a runner over an event store does — the
/// same entries, in the same order, before the same transitions; the reuse policies; the
/// timeline, history, interventions, operator retries and signals; recovery by a new runner over
/// the same journal — except survive the process. It keeps the entries as values: a saga's input
/// and its steps' outputs are not encoded when they are journaled, and a replay gets them back as
/// they were. They are encoded only when an entry is read as text; so, unlike a durable journal,
/// an output whose encoding fails does not fail its step here.
///
/// The journal keeps every saga it has recorded, as ``/KeelEventSourcing/InMemoryEventStore``
/// keeps every event: give a long-lived runner a durable store, or a fresh journal now and then.
/// Its methods are safe to call from any task.
public final class InMemorySagaJournal: Sendable {
    /// One saga's journal: its entries, in order.
    final class Stream: Sendable {
        let entries: Lock<[SagaJournalEntry]>

        /// - Parameter capacity: Room for this many entries at once, so that the journal does not
        ///   grow by copying on the way: what the last run of the same saga took.
        init(capacity: Int) {
            var entries: [SagaJournalEntry] = []
            entries.reserveCapacity(capacity)
            self.entries = Lock(entries)
        }
    }

    private let streams = Lock<[StreamID: Stream]>([:])

    /// Creates an empty journal.
    public init() {}

    /// How many sagas the journal holds, finished or not.
    public var count: Int {
        self.streams.withLock { streams in streams.values.count { stream in stream.entries.withLock { !$0.isEmpty } } }
    }

    /// The journal of `id`, made empty, with room for `capacity` entries, if there is none yet.
    func stream(_ id: StreamID, capacity: Int = SagaJournalHandle.defaultCapacity) -> Stream {
        self.streams.withLock { streams in
            if let stream = streams[id] { return stream }
            let stream = Stream(capacity: capacity)
            streams[id] = stream
            return stream
        }
    }

    /// The entries of `id`, in order (none when it has no journal).
    func entries(of id: StreamID) -> [SagaJournalEntry] {
        guard let stream = self.streams.withLock({ $0[id] }) else { return [] }
        return stream.entries.withLock { $0 }
    }

    /// Every journal that holds entries, with its entries.
    func all() -> [(StreamID, [SagaJournalEntry])] {
        let streams = self.streams.withLock { Array($0) }
        return streams.compactMap { id, stream in
            let entries = stream.entries.withLock { $0 }
            return entries.isEmpty ? nil : (id, entries)
        }
    }

    /// Appends `entry` to `stream` (the journal of `id`), when its last version satisfies
    /// `expected`.
    /// - Throws: `EventStoreError` with `wrongExpectedVersion` when it does not.
    func append(
        _ entry: SagaJournalEntry,
        to stream: Stream,
        id: StreamID,
        expecting expected: ExpectedVersion
    ) throws(EventStoreError) {
        let conflict = stream.entries.withLock { entries -> UInt64?? in
            let current = entries.isEmpty ? nil : UInt64(entries.count - 1)
            guard expected.isSatisfied(by: current) else { return .some(current) }
            entries.append(entry)
            return .none
        }
        if let actual = conflict {
            throw EventStoreError.wrongExpectedVersion(id, expected: expected, actual: actual)
        }
    }
}
