import Foundation

/// A value a journal records (a saga's input, a step's output, the saga's output): JSON text, as
/// a durable journal stores it, or the value itself, as an ``InMemorySagaJournal`` keeps it.
///
/// A kept value is encoded only when someone reads it as text (an entry written out as JSON); a
/// replay that asks for it as its own type gets it back as it was, without a round trip through
/// JSON.
struct SagaValue: Sendable, Hashable, Codable {
    private enum Storage: Sendable {
        case json(String)
        /// Kept as `any Sendable`, not `any Codable & Sendable`: a smaller existential, and
        /// every journal entry holds one. Only values of `Codable` types are kept
        /// (``kept(_:)``), so the cast back to `Encodable` does not fail.
        case value(any Sendable)
    }

    private let storage: Storage

    private init(storage: Storage) {
        self.storage = storage
    }

    /// A value recorded as JSON text.
    static func json(_ text: String) -> SagaValue {
        SagaValue(storage: .json(text))
    }

    /// A value kept as it is.
    static func kept<T: Codable & Sendable>(_ value: T) -> SagaValue {
        SagaValue(storage: .value(value))
    }

    /// The value as JSON text: what a durable journal stores.
    /// - Throws: ``SagaError`` with ``SagaError/Code-swift.struct/encodingFailed`` when a kept value
    ///   does not encode.
    func jsonText(what: @autoclosure () -> String) throws(SagaError) -> String {
        switch self.storage {
        case .json(let text):
            return text
        case .value(let value):
            guard let encodable = value as? any Encodable else {
                throw SagaError(
                    code: .encodingFailed,
                    message: "cannot encode \(what()): \(type(of: value)) is not Encodable"
                )
            }
            return try SagaPayload.encode(encodable, what: what())
        }
    }

    /// The value as `type`: a kept value of that type as it is, anything else decoded from its
    /// JSON text.
    /// - Throws: ``SagaError`` with ``SagaError/Code-swift.struct/encodingFailed`` when it does not
    ///   decode as `type`.
    func decode<T: Decodable>(_ type: T.Type, what: @autoclosure () -> String) throws(SagaError) -> T {
        if case .value(let value) = self.storage, let typed = value as? T {
            return typed
        }
        return try SagaPayload.decode(T.self, from: try self.jsonText(what: what()), what: what())
    }

    static func == (lhs: SagaValue, rhs: SagaValue) -> Bool {
        (try? lhs.jsonText(what: "")) == (try? rhs.jsonText(what: ""))
    }

    func hash(into hasher: inout Hasher) {
        hasher.combine(try? self.jsonText(what: ""))
    }

    /// Decodes JSON text, stored as a string.
    init(from decoder: any Decoder) throws {
        self.storage = .json(try decoder.singleValueContainer().decode(String.self))
    }

    /// Encodes the JSON text, as a string.
    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(try self.jsonText(what: "a journaled value"))
    }
}
