import Foundation

/// One step of a saga's schema evolution: turns one journaled payload written by version `n` of
/// the saga into its shape at version `n + 1`.
///
/// A durable journal keeps a saga's input, its steps' outputs and its output as JSON, and its
/// start entry records the saga's ``Saga/version``. When a saga's code changes the shape of one
/// of them while runs are in flight (a deploy in the middle of a saga), raise the version and
/// give ``Saga/migrations`` a migration from the version before; recovery then reads what the
/// older version journaled through the migrations, one version after the other, before decoding
/// it as the current type. A payload that no migration of a version names passes that version
/// unchanged, so a version bump that reshapes one step's output needs one migration.
///
/// ```swift
/// struct PlaceOrder: Saga {
///     static let name = "order.place"
///     // Version 2: a payment records its currency.
///     static let version = 2
///     static let migrations = [
///         SagaMigration.typed(.step("pay"), from: 1, decoding: PaymentV1.self) { old in
///             Payment(id: old.id, amount: old.amount, currency: "EUR")
///         }
///     ]
///     ...
/// }
/// ```
///
/// Journals are never rewritten: a migration runs on every read, as an event upcaster does. A
/// journal written by a *newer* version of the saga than the running code is not guessed at:
/// reading it fails with ``SagaError/Code-swift.struct/journalFromNewerVersion``.
///
/// Signals are read as they were sent, whichever version sent them: keep a signal's payload type
/// readable by every version that may receive it.
public struct SagaMigration: Sendable {
    /// The payload a migration reshapes.
    public enum Payload: Sendable, Hashable, CustomStringConvertible {
        /// The saga's input.
        case input
        /// The output of the step with this full name (a nested saga's step as
        /// `<nested saga's name>/<step>`, a branch's as the branch names it).
        case step(String)
        /// The saga's output.
        case output

        /// The payload in words, as the errors of a migration name it: `the input`,
        /// `the output of pay`, `the output`.
        public var description: String {
            switch self {
            case .input: "the input"
            case .step(let name): "the output of \(name)"
            case .output: "the output"
            }
        }
    }

    /// The payload it reshapes.
    public let payload: Payload
    /// The saga version it reads, at least 1; it writes `sourceVersion + 1`.
    public let sourceVersion: Int

    private let transform: @Sendable (String) throws -> String

    private init(payload: Payload, sourceVersion: Int, transform: @escaping @Sendable (String) throws -> String) {
        precondition(sourceVersion >= 1, "a saga migration of \(payload) reads version \(sourceVersion), below 1")
        self.payload = payload
        self.sourceVersion = sourceVersion
        self.transform = transform
    }

    /// A migration that decodes the payload as `Old`, transforms it, and encodes the result, as JSON.
    ///
    /// `Old` and `New` describe the payload's shape at `version` and `version + 1`; `New` may be
    /// the current type itself.
    /// - Parameters:
    ///   - payload: The payload it reshapes.
    ///   - version: The saga version it reads, at least 1.
    ///   - old: The type that decodes the payload as `version` wrote it.
    ///   - transform: Makes the `version + 1` value from the old one; it may throw to reject a
    ///     payload it cannot migrate (the saga then cannot be resumed, and recovery says why).
    /// - Returns: The migration.
    /// - Precondition: `version` is at least 1.
    public static func typed<Old: Decodable & SendableMetatype, New: Encodable & SendableMetatype>(
        _ payload: Payload,
        from version: Int,
        decoding old: Old.Type,
        _ transform: @escaping @Sendable (Old) throws -> New
    ) -> SagaMigration {
        SagaMigration(payload: payload, sourceVersion: version) { text in
            let value = try transform(JSONDecoder().decode(old, from: Data(text.utf8)))
            return String(decoding: try JSONEncoder().encode(value), as: UTF8.self)
        }
    }

    /// A migration that rewrites the payload's JSON text.
    /// - Parameters:
    ///   - payload: The payload it reshapes.
    ///   - version: The saga version it reads, at least 1.
    ///   - transform: Makes the `version + 1` JSON text from the old one; it may throw to reject a
    ///     payload it cannot migrate.
    /// - Returns: The migration.
    /// - Precondition: `version` is at least 1.
    public static func raw(
        _ payload: Payload,
        from version: Int,
        _ transform: @escaping @Sendable (String) throws -> String
    ) -> SagaMigration {
        SagaMigration(payload: payload, sourceVersion: version, transform: transform)
    }

    /// Runs this one migration on `json`: useful to test a migration on its own.
    /// - Parameter json: The payload's JSON text as ``sourceVersion`` wrote it.
    /// - Returns: The JSON text at `sourceVersion + 1`.
    /// - Throws: What the transform, or decoding and encoding, throws.
    public func migrate(_ json: String) throws -> String {
        try self.transform(json)
    }
}

/// How a run reads the payloads of its journal: through the saga's migrations when an earlier
/// version of the saga wrote them.
struct SagaPayloadReader: Sendable {
    let saga: String
    /// The running code's version of the saga.
    let current: Int
    let migrations: [SagaMigration.Payload: [Int: SagaMigration]]

    /// A reader for the journals of sagas of type `S`.
    /// - Precondition: `S.version` is at least 1, every migration reads a version below it, and no
    ///   two read the same payload at the same version.
    init<S: Saga>(_ type: S.Type) {
        precondition(S.version >= 1, "\(S.name) has version \(S.version), below 1")
        self.saga = S.name
        self.current = S.version
        var index: [SagaMigration.Payload: [Int: SagaMigration]] = [:]
        for migration in S.migrations {
            precondition(
                migration.sourceVersion < S.version,
                "\(S.name) is at version \(S.version), but a migration of \(migration.payload) reads version \(migration.sourceVersion)"
            )
            precondition(
                index[migration.payload]?[migration.sourceVersion] == nil,
                "\(S.name) has two migrations of \(migration.payload) from version \(migration.sourceVersion)"
            )
            index[migration.payload, default: [:]][migration.sourceVersion] = migration
        }
        self.migrations = index
    }

    /// Throws unless the running code can resume `replay`: a run that a newer version of the saga
    /// journaled cannot be.
    func check(_ replay: SagaReplay) throws(SagaError) {
        guard replay.newestVersion > self.current else { return }
        throw SagaError(
            code: .journalFromNewerVersion,
            message:
                "\(self.saga) \(replay.id) was journaled by version \(replay.newestVersion) of the saga; this code has version \(self.current)"
        )
    }

    /// Decodes `value`, the journaled `payload` written by version `written` of the saga, as
    /// `type`: migrated first when `written` is an earlier version.
    /// - Throws: ``SagaError``: `journalCorrupt` when the value is missing,
    ///   `journalFromNewerVersion` when a newer version wrote it, `encodingFailed` when a
    ///   migration or the decoding fails.
    func decode<T: Decodable>(
        _ type: T.Type,
        _ payload: SagaMigration.Payload,
        from value: SagaValue?,
        writtenBy written: Int,
        what: @autoclosure () -> String
    ) throws(SagaError) -> T {
        guard written != self.current else {
            return try SagaPayload.decode(T.self, from: value, what: what())
        }
        guard written < self.current else {
            throw SagaError(
                code: .journalFromNewerVersion,
                message:
                    "\(what()) was journaled by version \(written) of \(self.saga); this code has version \(self.current)"
            )
        }
        guard let value else {
            throw SagaError(code: .journalCorrupt, message: "\(what()) is missing from the journal")
        }
        var text = try value.jsonText(what: what())
        let steps = self.migrations[payload] ?? [:]
        for version in written..<self.current {
            guard let migration = steps[version] else { continue }
            do {
                text = try migration.migrate(text)
            } catch {
                throw SagaError(
                    code: .encodingFailed,
                    message: "cannot migrate \(what()) from version \(version) of \(self.saga) to \(version + 1)",
                    underlying: error
                )
            }
        }
        return try SagaPayload.decode(T.self, from: text, what: what())
    }
}
