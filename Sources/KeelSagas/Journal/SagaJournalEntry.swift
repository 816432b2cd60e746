import Foundation
import KeelCore
import KeelEventSourcing

/// One transition of a saga, as its journal stores it: one event of the saga's stream.
///
/// Every entry is written before the transition it records counts: a step's start before its
/// action runs, its output before the body sees it, a compensation's completion before the next
/// one starts. The entries of one run rebuild everything recovery needs (``SagaReplay``).
struct SagaJournalEntry: Codable, Sendable, Hashable {
    /// The schema version of the entries this version of Keel writes and reads.
    static let schemaVersion = 1

    enum Kind: String, Codable, Sendable, CaseIterable {
        case started, stepStarted, stepCompleted, stepFailed
        case compensationStarted, compensationCompleted, compensationFailed
        case scopeStarted, timerStarted, timerFired
        case finished, reopened, resolved
        /// A signal sent to the saga from outside (``SagaRunner/signal(_:id:name:payload:)``).
        case signalSent
    }

    var kind: Kind
    /// Step, scope and timer entries: what the item is.
    var itemKind: SagaItemKind?
    var idempotent: Bool?
    /// The run this entry belongs to: 1 for a saga's first run, more after a run allowed by
    /// ``SagaReusePolicy/allowAfterFailure``.
    var run: Int
    /// The wall-clock time of the transition, in nanoseconds since the Unix epoch.
    var time: Int64
    /// `stepStarted`, `compensationStarted`: the attempt about to run.
    var attempt: Int?
    /// Step, scope and timer entries: which item of which scope.
    var item: SagaItemRef?
    var name: String?
    /// `started`: the input; `stepCompleted`: the output; `finished` (completed): the saga's
    /// output; `signalSent`: the signal's payload. JSON text in a durable journal, the value itself
    /// in an ``InMemorySagaJournal``.
    var payload: SagaValue?
    /// The fields few entries carry, out of line: a step's entries, most of a journal, stay
    /// small (an in-memory journal keeps every entry of every saga).
    private var details: DetailsBox?

    /// The fields few entries carry.
    struct Details: Sendable, Hashable {
        var saga: String?
        var id: String?
        var dueTime: Int64?
        var failure: SagaFailure?
        var inDoubt: Bool?
        var outcome: SagaStatus.Phase?
        var note: String?
        var sagaVersion: Int?
    }

    /// ``Details`` behind one reference, copied on write. An entry is a value: a box is changed in
    /// place only while a single entry refers to it, and copied first otherwise.
    final class DetailsBox: @unchecked Sendable {
        var value: Details

        init(_ value: Details) {
            self.value = value
        }
    }

    init(kind: Kind, run: Int, time: Int64) {
        self.kind = kind
        self.run = run
        self.time = time
    }

    private var detailsValue: Details {
        self.details?.value ?? Details()
    }

    private mutating func updateDetails(_ update: (inout Details) -> Void) {
        // Checked before anything else holds the box: a `let` bound to it would count as a
        // second reference, and every change would copy.
        if isKnownUniquelyReferenced(&self.details) {
            update(&self.details!.value)
        } else {
            var value = self.detailsValue
            update(&value)
            self.details = DetailsBox(value)
        }
    }

    /// `started`: the saga's type name and id.
    var saga: String? {
        get { self.details?.value.saga }
        set { self.updateDetails { $0.saga = newValue } }
    }
    var id: String? {
        get { self.details?.value.id }
        set { self.updateDetails { $0.id = newValue } }
    }
    /// `started`: the saga's deadline; `timerStarted`: when the timer fires (wall clock, ns).
    var dueTime: Int64? {
        get { self.details?.value.dueTime }
        set { self.updateDetails { $0.dueTime = newValue } }
    }
    /// `stepFailed`, `compensationFailed`, `finished`: the cause.
    var failure: SagaFailure? {
        get { self.details?.value.failure }
        set { self.updateDetails { $0.failure = newValue } }
    }
    /// `stepFailed`: the step was found started and not completed, and was not run again; its
    /// effect is unknown.
    var inDoubt: Bool? {
        get { self.details?.value.inDoubt }
        set { self.updateDetails { $0.inDoubt = newValue } }
    }
    /// `finished`: how the run ended.
    var outcome: SagaStatus.Phase? {
        get { self.details?.value.outcome }
        set { self.updateDetails { $0.outcome = newValue } }
    }
    /// `resolved`, `reopened`: the operator's note.
    var note: String? {
        get { self.details?.value.note }
        set { self.updateDetails { $0.note = newValue } }
    }
    /// An entry with a payload: the ``Saga/version`` of the saga that wrote it, when not 1.
    var sagaVersion: Int? {
        get { self.details?.value.sagaVersion }
        set { self.updateDetails { $0.sagaVersion = newValue } }
    }

    static func == (lhs: SagaJournalEntry, rhs: SagaJournalEntry) -> Bool {
        lhs.kind == rhs.kind && lhs.itemKind == rhs.itemKind && lhs.idempotent == rhs.idempotent
            && lhs.run == rhs.run && lhs.time == rhs.time && lhs.attempt == rhs.attempt && lhs.item == rhs.item
            && lhs.name == rhs.name && lhs.payload == rhs.payload && lhs.detailsValue == rhs.detailsValue
    }

    func hash(into hasher: inout Hasher) {
        hasher.combine(self.kind)
        hasher.combine(self.itemKind)
        hasher.combine(self.idempotent)
        hasher.combine(self.run)
        hasher.combine(self.time)
        hasher.combine(self.attempt)
        hasher.combine(self.item)
        hasher.combine(self.name)
        hasher.combine(self.payload)
        hasher.combine(self.detailsValue)
    }

    enum CodingKeys: String, CodingKey {
        case kind, run, time, saga, id, payload, dueTime, item, name, itemKind, idempotent, attempt, failure
        case inDoubt, outcome, note, sagaVersion
    }

    /// Decodes an entry from the JSON document ``jsonBytes()`` writes.
    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.kind = try container.decode(Kind.self, forKey: .kind)
        self.run = try container.decode(Int.self, forKey: .run)
        self.time = try container.decode(Int64.self, forKey: .time)
        self.payload = try container.decodeIfPresent(SagaValue.self, forKey: .payload)
        self.item = try container.decodeIfPresent(SagaItemRef.self, forKey: .item)
        self.name = try container.decodeIfPresent(String.self, forKey: .name)
        self.itemKind = try container.decodeIfPresent(SagaItemKind.self, forKey: .itemKind)
        self.idempotent = try container.decodeIfPresent(Bool.self, forKey: .idempotent)
        self.attempt = try container.decodeIfPresent(Int.self, forKey: .attempt)
        let details = Details(
            saga: try container.decodeIfPresent(String.self, forKey: .saga),
            id: try container.decodeIfPresent(String.self, forKey: .id),
            dueTime: try container.decodeIfPresent(Int64.self, forKey: .dueTime),
            failure: try container.decodeIfPresent(SagaFailure.self, forKey: .failure),
            inDoubt: try container.decodeIfPresent(Bool.self, forKey: .inDoubt),
            outcome: try container.decodeIfPresent(SagaStatus.Phase.self, forKey: .outcome),
            note: try container.decodeIfPresent(String.self, forKey: .note),
            sagaVersion: try container.decodeIfPresent(Int.self, forKey: .sagaVersion)
        )
        if details != Details() { self.details = DetailsBox(details) }
    }

    /// Encodes the entry as ``jsonBytes()`` does (tests compare the two).
    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(self.kind, forKey: .kind)
        try container.encode(self.run, forKey: .run)
        try container.encode(self.time, forKey: .time)
        try container.encodeIfPresent(self.saga, forKey: .saga)
        try container.encodeIfPresent(self.id, forKey: .id)
        try container.encodeIfPresent(self.payload, forKey: .payload)
        try container.encodeIfPresent(self.dueTime, forKey: .dueTime)
        try container.encodeIfPresent(self.item, forKey: .item)
        try container.encodeIfPresent(self.name, forKey: .name)
        try container.encodeIfPresent(self.itemKind, forKey: .itemKind)
        try container.encodeIfPresent(self.idempotent, forKey: .idempotent)
        try container.encodeIfPresent(self.attempt, forKey: .attempt)
        try container.encodeIfPresent(self.failure, forKey: .failure)
        try container.encodeIfPresent(self.inDoubt, forKey: .inDoubt)
        try container.encodeIfPresent(self.outcome, forKey: .outcome)
        try container.encodeIfPresent(self.note, forKey: .note)
        try container.encodeIfPresent(self.sagaVersion, forKey: .sagaVersion)
    }

    /// The stored event type of this entry: `saga.<kind>`.
    var eventType: String { "saga." + self.kind.rawValue }

    /// The entry as the event a durable journal appends.
    /// - Throws: ``SagaError`` with ``SagaError/Code-swift.struct/encodingFailed`` when a kept
    ///   payload does not encode.
    func eventData(id: EventID) throws(SagaError) -> EventData {
        EventData(
            type: self.eventType,
            schemaVersion: Self.schemaVersion,
            metadata: .current(id: id, time: self.time),
            payload: try self.jsonBytes()
        )
    }

    /// Decodes a recorded journal event.
    /// - Throws: ``SagaError`` with `journalFromNewerVersion` for a schema version above
    ///   ``schemaVersion``, with `journalCorrupt` for an unknown type or a payload that does not
    ///   decode.
    init(_ event: RecordedEvent) throws(SagaError) {
        guard event.schemaVersion <= Self.schemaVersion else {
            throw SagaError(
                code: .journalFromNewerVersion,
                message:
                    "\(event.stream) version \(event.version) is \(event.type) of schema version \(event.schemaVersion); this version of Keel reads up to \(Self.schemaVersion)"
            )
        }
        guard event.type.hasPrefix("saga."), Kind(rawValue: String(event.type.dropFirst(5))) != nil else {
            throw SagaError(
                code: .journalCorrupt,
                message: "\(event.stream) version \(event.version) has the unknown type \(event.type)"
            )
        }
        do {
            self = try JSONDecoder().decode(SagaJournalEntry.self, from: Data(event.payload))
        } catch {
            throw SagaError(
                code: .journalCorrupt,
                message: "\(event.stream) version \(event.version) (\(event.type)) does not decode",
                underlying: error
            )
        }
        guard self.eventType == event.type else {
            throw SagaError(
                code: .journalCorrupt,
                message: "\(event.stream) version \(event.version) is stored as \(event.type) but holds \(self.kind)"
            )
        }
    }
}

/// Where an item (a step, a timer, a branch group or a nested saga) sits in a run: its scope
/// and its index there. The root scope's path is empty; a parallel group at index `i` of scope `s`
/// gives its branch `b` the path `s/i.b`, a nested saga at index `i` the path `s/i`.
struct SagaItemRef: Codable, Sendable, Hashable, CustomStringConvertible {
    var scope: String
    var index: Int

    var description: String { self.scope.isEmpty ? "#\(self.index)" : "\(self.scope)#\(self.index)" }
}

/// What an item is; replay checks that the body asks for the same kind at the same place.
enum SagaItemKind: String, Codable, Sendable, Hashable {
    case step, pivot, retriable, parallel, nested, timer, signal
}

/// JSON text of a value, for journal payloads.
enum SagaPayload {
    static func encode<T: Encodable>(_ value: T, what: @autoclosure () -> String) throws(SagaError) -> String {
        do {
            return String(decoding: try JSONEncoder().encode(value), as: UTF8.self)
        } catch {
            throw SagaError(code: .encodingFailed, message: "cannot encode \(what())", underlying: error)
        }
    }

    static func decode<T: Decodable>(
        _ type: T.Type,
        from value: SagaValue?,
        what: @autoclosure () -> String
    )
        throws(SagaError) -> T
    {
        guard let value else {
            throw SagaError(code: .journalCorrupt, message: "\(what()) is missing from the journal")
        }
        return try value.decode(T.self, what: what())
    }

    static func decode<T: Decodable>(
        _ type: T.Type,
        from text: String?,
        what: @autoclosure () -> String
    )
        throws(SagaError) -> T
    {
        guard let text else {
            throw SagaError(code: .journalCorrupt, message: "\(what()) is missing from the journal")
        }
        do {
            return try JSONDecoder().decode(T.self, from: Data(text.utf8))
        } catch {
            throw SagaError(code: .encodingFailed, message: "cannot decode \(what()) as \(T.self)", underlying: error)
        }
    }
}
