import KeelCore
import KeelEventSourcing
import Synchronization

/// Where a runner keeps its journals: the streams of an event store (durable, each entry JSON),
/// or an ``InMemorySagaJournal`` (entries kept as values).
enum SagaJournalStore: Sendable {
    case events(any EventStore)
    case memory(InMemorySagaJournal)

    /// The journal `stream`, looked up once for a run: an in-memory journal's entries, made empty
    /// (with room for `capacity` entries) if it has none yet, so that the run's reads and appends
    /// need no second lookup.
    func handle(_ stream: StreamID, capacity: Int = SagaJournalHandle.defaultCapacity) -> SagaJournalHandle {
        switch self {
        case .events:
            return SagaJournalHandle(stream: stream, memory: nil)
        case .memory(let journal):
            return SagaJournalHandle(stream: stream, memory: journal.stream(stream, capacity: capacity))
        }
    }

    /// `value` as this journal records it: JSON text for an event store, the value itself in
    /// memory.
    /// - Throws: ``SagaError`` with ``SagaError/Code-swift.struct/encodingFailed`` when an event
    ///   store's value does not encode.
    func record<T: Codable & Sendable>(_ value: T, what: @autoclosure () -> String) throws(SagaError) -> SagaValue {
        switch self {
        case .events:
            return .json(try SagaPayload.encode(value, what: what()))
        case .memory:
            return .kept(value)
        }
    }

    /// Appends `entry` to the journal `stream`, when its last version satisfies `expected`.
    /// - Parameter memoryStream: The in-memory journal's stream, when the caller holds it.
    /// - Throws: ``SagaJournalAppendFailure``.
    func append(
        _ entry: SagaJournalEntry,
        to stream: StreamID,
        expecting expected: ExpectedVersion,
        random: RandomSource,
        memoryStream: InMemorySagaJournal.Stream? = nil
    ) async throws(SagaJournalAppendFailure) {
        switch self {
        case .events(let store):
            let data: EventData
            do {
                data = try entry.eventData(id: EventID.random(using: random))
            } catch {
                throw .encoding(error)
            }
            do {
                try await store.append([data], to: stream, expecting: expected)
            } catch {
                throw .store(error)
            }
        case .memory(let journal):
            do {
                try journal.append(
                    entry,
                    to: memoryStream ?? journal.stream(stream),
                    id: stream,
                    expecting: expected
                )
            } catch {
                throw .store(error)
            }
        }
    }

    /// Reads the journal at `stream`.
    /// - Returns: `nil` when the stream holds nothing.
    func load(_ stream: StreamID) async throws(SagaError) -> SagaReplay? {
        switch self {
        case .events(let store):
            return try await SagaReplay.load(from: store, stream: stream)
        case .memory(let journal):
            return try Self.replay(journal.entries(of: stream), stream: stream)
        }
    }

    /// Reads the journal `handle` stands for.
    /// - Returns: `nil` when the stream holds nothing.
    func load(_ handle: SagaJournalHandle) async throws(SagaError) -> SagaReplay? {
        guard let memory = handle.memory else { return try await self.load(handle.stream) }
        return try Self.replay(memory.entries.withLock { $0 }, stream: handle.stream)
    }

    private static func replay(_ entries: [SagaJournalEntry], stream: StreamID) throws(SagaError) -> SagaReplay? {
        guard !entries.isEmpty else { return nil }
        return try SagaReplay(entries: entries, version: UInt64(entries.count - 1), stream: stream)
    }

    /// Every saga journal, with its latest phase, from one pass over the store.
    func phases() async throws(SagaError) -> [StreamID: SagaStatus.Phase] {
        var phases: [StreamID: SagaStatus.Phase] = [:]
        switch self {
        case .events(let store):
            var position: UInt64 = 0
            while true {
                let page: [RecordedEvent]
                do {
                    page = try await store.readAll(from: position, limit: 1024)
                } catch {
                    throw SagaError(
                        code: .journalUnavailable,
                        message: "cannot read the saga journals",
                        underlying: error
                    )
                }
                for event in page where event.stream.category == "saga" {
                    switch event.type {
                    case "saga.started", "saga.reopened": phases[event.stream] = .running
                    case "saga.resolved": phases[event.stream] = .resolved
                    case "saga.finished":
                        // An entry that does not decode marks its journal for recovery, which
                        // reports it.
                        phases[event.stream] = (try? SagaJournalEntry(event))?.outcome ?? .running
                    default: break
                    }
                }
                guard let last = page.last, page.count == 1024 else { break }
                position = last.position + 1
            }
        case .memory(let journal):
            for (stream, entries) in journal.all() {
                for entry in entries {
                    switch entry.kind {
                    case .started, .reopened: phases[stream] = .running
                    case .resolved: phases[stream] = .resolved
                    case .finished: phases[stream] = entry.outcome ?? .running
                    default: break
                    }
                }
            }
        }
        return phases
    }
}

/// One saga's journal, as a run holds it: its stream, and for an in-memory journal the entries
/// themselves.
struct SagaJournalHandle: Sendable {
    /// The room a new in-memory journal gets when no run of its saga has finished yet: a short
    /// saga's entries (a start, two per step, a finish).
    static let defaultCapacity = 16

    let stream: StreamID
    let memory: InMemorySagaJournal.Stream?
}

/// Why a journal append failed.
enum SagaJournalAppendFailure: Error {
    /// The entry's payload did not encode.
    case encoding(SagaError)
    /// The store refused or failed the append.
    case store(EventStoreError)

    /// Whether the stream's version did not satisfy the expectation.
    var isConflict: Bool {
        if case .store(let error) = self { return error.code == .wrongExpectedVersion }
        return false
    }

    /// The failure as a runner reports it: an encoding failure as it is, anything else as
    /// ``SagaError/Code-swift.struct/journalUnavailable`` with `message`.
    func sagaError(_ message: @autoclosure () -> String) -> SagaError {
        switch self {
        case .encoding(let error): error
        case .store(let error): SagaError(code: .journalUnavailable, message: message(), underlying: error)
        }
    }
}
