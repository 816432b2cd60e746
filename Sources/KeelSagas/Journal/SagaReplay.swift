import KeelEventSourcing

/// A saga's journal, read back: its latest run, item by item, as recovery and replay need it.
struct SagaReplay: Sendable {
    /// One recorded item of the run.
    struct Item: Sendable {
        enum Compensation: Sendable {
            case none
            case started(attempts: Int)
            case completed
            case failed(SagaFailure)
        }

        var name: String
        var kind: SagaItemKind
        var isIdempotent: Bool
        /// How many attempts were journaled as started.
        var attempts = 0
        /// The output, once the step completed.
        var output: SagaValue?
        /// The version of the saga that journaled the output.
        var outputVersion = 1
        var isCompleted = false
        /// The failure the step ended with; `nil` when it did not fail, or when an operator's
        /// retry reopened it.
        var failure: SagaFailure?
        /// Whether the failure is that the step was in doubt (its effect unknown).
        var isInDoubt = false
        var compensation = Compensation.none
        /// A timer's due time, in wall-clock nanoseconds.
        var dueTime: Int64?
        var isFired = false
    }

    var saga: String
    var id: String
    var run: Int
    var input: SagaValue?
    /// The version of the saga that journaled the input (and started the run).
    var inputVersion: Int
    /// The newest version of the saga that journaled anything in this run.
    var newestVersion: Int
    var deadline: Int64?
    var startTime: Int64
    var items: [SagaItemRef: Item] = [:]
    var phase = SagaStatus.Phase.running
    var output: SagaValue?
    /// The version of the saga that journaled the output.
    var outputVersion = 1
    var cause: SagaFailure?
    var failedCompensations: [SagaFailure] = []
    /// The stream's last version.
    var version: UInt64
    /// The signals sent to the saga, by name: the first payload of each (JSON text).
    var signals: [String: String] = [:]
    /// Every entry of the latest run, in journal order, for the timeline.
    var entries: [SagaJournalEntry] = []

    var status: SagaStatus {
        SagaStatus(
            saga: self.saga,
            id: self.id,
            run: self.run,
            phase: self.phase,
            cause: self.cause,
            failedCompensations: self.failedCompensations
        )
    }

    /// Reads the journal at `stream`.
    /// - Returns: `nil` when the stream holds nothing.
    static func load(from store: any EventStore, stream: StreamID) async throws(SagaError) -> SagaReplay? {
        var events: [RecordedEvent] = []
        var next: UInt64 = 0
        while true {
            let page: [RecordedEvent]
            do {
                page = try await store.readStream(stream, from: next, direction: .forwards, limit: 512)
            } catch {
                throw SagaError(
                    code: .journalUnavailable,
                    message: "cannot read the journal \(stream)",
                    underlying: error
                )
            }
            events += page
            guard page.count == 512, let last = page.last else { break }
            next = last.version + 1
        }
        guard let last = events.last else { return nil }
        var entries: [SagaJournalEntry] = []
        entries.reserveCapacity(events.count)
        for event in events {
            entries.append(try SagaJournalEntry(event))
        }
        return try SagaReplay(entries: entries, version: last.version, stream: stream)
    }

    /// Folds the entries of the latest run.
    init(entries: [SagaJournalEntry], version: UInt64, stream: StreamID) throws(SagaError) {
        guard let startIndex = entries.lastIndex(where: { $0.kind == .started }) else {
            throw SagaError(code: .journalCorrupt, message: "the journal \(stream) has no start entry")
        }
        let start = entries[startIndex]
        guard let saga = start.saga, let id = start.id else {
            throw SagaError(code: .journalCorrupt, message: "the start entry of \(stream) names no saga or id")
        }
        self.saga = saga
        self.id = id
        self.run = start.run
        self.input = start.payload
        self.inputVersion = start.sagaVersion ?? 1
        self.newestVersion = self.inputVersion
        self.deadline = start.dueTime
        self.startTime = start.time
        self.version = version
        self.entries = Array(entries[startIndex...])
        for entry in entries[(startIndex + 1)...] {
            try self.apply(entry, stream: stream)
        }
    }

    private mutating func apply(_ entry: SagaJournalEntry, stream: StreamID) throws(SagaError) {
        func item() throws(SagaError) -> SagaItemRef {
            guard let ref = entry.item else {
                throw SagaError(code: .journalCorrupt, message: "\(entry.kind) in \(stream) names no item")
            }
            return ref
        }
        func existing() throws(SagaError) -> SagaItemRef {
            let ref = try item()
            guard self.items[ref] != nil else {
                throw SagaError(
                    code: .journalCorrupt,
                    message: "\(entry.kind) in \(stream) for \(ref), which never started"
                )
            }
            return ref
        }
        if let version = entry.sagaVersion { self.newestVersion = max(self.newestVersion, version) }
        switch entry.kind {
        case .started:
            break
        case .stepStarted, .scopeStarted, .timerStarted:
            let ref = try item()
            if var known = self.items[ref] {
                known.attempts = max(known.attempts, entry.attempt ?? known.attempts + 1)
                self.items[ref] = known
            } else {
                guard let name = entry.name, let kind = entry.itemKind else {
                    throw SagaError(
                        code: .journalCorrupt,
                        message: "\(entry.kind) in \(stream) at \(ref) has no name or kind"
                    )
                }
                var new = Item(name: name, kind: kind, isIdempotent: entry.idempotent ?? false)
                new.attempts = entry.attempt ?? 1
                new.dueTime = entry.dueTime
                self.items[ref] = new
            }
        case .stepCompleted:
            let ref = try existing()
            self.items[ref]!.isCompleted = true
            self.items[ref]!.output = entry.payload
            self.items[ref]!.outputVersion = entry.sagaVersion ?? 1
            self.items[ref]!.failure = nil
        case .stepFailed:
            let ref = try existing()
            self.items[ref]!.failure = entry.failure
            self.items[ref]!.isInDoubt = entry.inDoubt ?? false
        case .timerFired:
            let ref = try existing()
            self.items[ref]!.isFired = true
        case .compensationStarted:
            let ref = try existing()
            if case .started(let attempts) = self.items[ref]!.compensation {
                self.items[ref]!.compensation = .started(attempts: max(attempts, entry.attempt ?? attempts + 1))
            } else {
                self.items[ref]!.compensation = .started(attempts: entry.attempt ?? 1)
            }
        case .compensationCompleted:
            let ref = try existing()
            self.items[ref]!.compensation = .completed
        case .compensationFailed:
            let ref = try existing()
            self.items[ref]!.compensation = .failed(
                entry.failure ?? SagaFailure(step: self.items[ref]!.name, errorType: "unknown", message: "")
            )
        case .finished:
            self.phase = entry.outcome ?? .needsIntervention
            self.output = entry.payload
            self.outputVersion = entry.sagaVersion ?? 1
            self.cause = entry.failure
            self.failedCompensations = self.items.keys.sorted { ($0.scope, $0.index) < ($1.scope, $1.index) }
                .compactMap { ref in
                    if case .failed(let failure) = self.items[ref]!.compensation { return failure }
                    return nil
                }
        case .reopened:
            // An operator's retry: failed compensations run again, and steps past the pivot that
            // kept failing are attempted again.
            self.phase = .running
            self.output = nil
            self.cause = nil
            self.failedCompensations = []
            for ref in self.items.keys {
                if case .failed = self.items[ref]!.compensation {
                    self.items[ref]!.compensation = .started(attempts: 0)
                }
                if self.items[ref]!.kind == .retriable, !self.items[ref]!.isCompleted {
                    self.items[ref]!.failure = nil
                }
            }
        case .resolved:
            self.phase = .resolved
        case .signalSent:
            if let name = entry.name, self.signals[name] == nil {
                // A signal's payload is journaled as JSON text (``SagaRunner/signal(_:id:name:payload:)``).
                self.signals[name] = (try? entry.payload?.jsonText(what: "the signal \(name)")) ?? "null"
            }
        }
    }
}
