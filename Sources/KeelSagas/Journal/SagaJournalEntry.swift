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
    /// The run this entry belongs to: 1 for a saga's first run, more after a run allowed by
    /// ``SagaReusePolicy/allowAfterFailure``.
    var run: Int
    /// The wall-clock time of the transition, in nanoseconds since the Unix epoch.
    var time: Int64
    /// `started`: the saga's type name and id.
    var saga: String?
    var id: String?
    /// `started`: the input; `stepCompleted`: the output; `finished` (completed): the saga's
    /// output; `signalSent`: the signal's payload. JSON text in a durable journal, the value itself
    /// in an ``InMemorySagaJournal``.
    var payload: SagaValue?
    /// `started`: the saga's deadline; `timerStarted`: when the timer fires (wall clock, ns).
    var dueTime: Int64?
    /// Step, scope and timer entries: which item of which scope.
    var item: SagaItemRef?
    var name: String?
    var itemKind: SagaItemKind?
    var idempotent: Bool?
    /// `stepStarted`, `compensationStarted`: the attempt about to run.
    var attempt: Int?
    /// `stepFailed`, `compensationFailed`, `finished`: the cause.
    var failure: SagaFailure?
    /// `stepFailed`: the step was found started and not completed, and was not run again; its
    /// effect is unknown.
    var inDoubt: Bool?
    /// `finished`: how the run ended.
    var outcome: SagaStatus.Phase?
    /// `resolved`, `reopened`: the operator's note.
    var note: String?

    init(kind: Kind, run: Int, time: Int64) {
        self.kind = kind
        self.run = run
        self.time = time
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
