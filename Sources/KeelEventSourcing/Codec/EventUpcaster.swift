/// One step of schema evolution: turns a payload of one event type at schema version `n` into a
/// payload at version `n + 1`.
///
/// An ``EventSerializer`` that reads an event written at an older version runs the upcasters of
/// its ``EventTypeRegistry`` one after the other (v1 → v2, v2 → v3, …) until the payload is at
/// the current version of the Swift type, then decodes it. Events in the store are never
/// rewritten: upcasting happens on every read.
///
/// There are two kinds:
/// - A **typed** upcaster (``typed(_:from:decoding:_:)``) decodes the old payload into a Swift
///   type that describes the old schema, transforms it, and encodes the result, all with the
///   serializer's ``EventCodec``. Prefer it while the old shape is easy to keep as a small
///   private struct: the compiler checks the transformation, and it works with any codec.
/// - A **raw** upcaster (``raw(_:from:_:)``) gets the payload's bytes and returns new bytes. Use
///   it when no Swift type describes the old schema any more, or to rewrite many versions of a
///   large payload without decoding it; it depends on the codec's format.
///
/// ```swift
/// // v1 had `fullName`; v2 splits it.
/// private struct UserRegisteredV1: Decodable {
///     var email: String
///     var fullName: String
/// }
/// private struct UserRegisteredV2: Encodable {
///     var email: String
///     var givenName: String
///     var familyName: String
/// }
///
/// let v1ToV2 = EventUpcaster.typed("user.registered", from: 1, decoding: UserRegisteredV1.self) { old in
///     let parts = old.fullName.split(separator: " ", maxSplits: 1).map(String.init)
///     let familyName = parts.count == 2 ? parts[1] : ""
///     return UserRegisteredV2(email: old.email, givenName: parts.first ?? "", familyName: familyName)
/// }
/// ```
///
/// An upcaster is a value: it may be used from any number of tasks at once, and its transform
/// must not depend on mutable shared state. It runs synchronously on the decoding task.
public struct EventUpcaster: Sendable {
    /// The type name of the events it upcasts.
    public let eventType: String
    /// The schema version it reads, at least 1; it writes ``targetVersion``.
    public let sourceVersion: Int

    private let step: @Sendable ([UInt8], any EventCodec) throws -> [UInt8]

    private init(
        eventType: String,
        sourceVersion: Int,
        step: @escaping @Sendable ([UInt8], any EventCodec) throws -> [UInt8]
    ) {
        precondition(!eventType.isEmpty, "an upcaster's event type must not be empty")
        precondition(
            sourceVersion >= 1,
            "an upcaster of \(eventType) reads schema version \(sourceVersion), below 1"
        )
        self.eventType = eventType
        self.sourceVersion = sourceVersion
        self.step = step
    }

    /// The schema version it writes: ``sourceVersion`` + 1.
    public var targetVersion: Int { self.sourceVersion + 1 }

    /// An upcaster that decodes the payload as `Old`, transforms it, and encodes the result, with
    /// the serializer's codec.
    ///
    /// `Old` and `New` describe the schemas at `version` and `version + 1`; they need not be
    /// ``DomainEvent``s (an old shape is usually a small private struct kept only for this).
    /// `New` may be the current event type itself when `version + 1` is the current version.
    /// (Every ordinary type is a `SendableMetatype`; the constraint only rules out types whose
    /// `Codable` conformance is isolated to an actor, which cannot run on the decoding task.)
    /// - Parameters:
    ///   - eventType: The type name of the events it upcasts.
    ///   - version: The schema version it reads, at least 1.
    ///   - old: The type that decodes a payload at `version`.
    ///   - transform: Makes the `version + 1` value from the old one; it may throw to reject a
    ///     payload it cannot migrate.
    /// - Returns: The upcaster.
    /// - Precondition: `eventType` is not empty and `version` is at least 1.
    public static func typed<Old: Decodable & SendableMetatype, New: Encodable & SendableMetatype>(
        _ eventType: String,
        from version: Int,
        decoding old: Old.Type,
        _ transform: @escaping @Sendable (Old) throws -> New
    ) -> EventUpcaster {
        EventUpcaster(eventType: eventType, sourceVersion: version) { bytes, codec in
            try codec.encode(transform(codec.decode(old, from: bytes)))
        }
    }

    /// An upcaster that rewrites the payload's bytes.
    ///
    /// The bytes are in the serializer's codec format (JSON with ``JSONEventCodec``), and the
    /// returned bytes must be too.
    /// - Parameters:
    ///   - eventType: The type name of the events it upcasts.
    ///   - version: The schema version it reads, at least 1.
    ///   - transform: Makes the `version + 1` payload from the old one; it may throw to reject a
    ///     payload it cannot migrate.
    /// - Returns: The upcaster.
    /// - Precondition: `eventType` is not empty and `version` is at least 1.
    public static func raw(
        _ eventType: String,
        from version: Int,
        _ transform: @escaping @Sendable ([UInt8]) throws -> [UInt8]
    ) -> EventUpcaster {
        EventUpcaster(eventType: eventType, sourceVersion: version) { bytes, _ in
            try transform(bytes)
        }
    }

    /// Runs this one step on `payload`: useful to test an upcaster on its own.
    /// - Parameters:
    ///   - payload: A payload at ``sourceVersion``.
    ///   - codec: The codec a typed upcaster decodes and encodes with.
    /// - Returns: The payload at ``targetVersion``.
    /// - Throws: Whatever the transform or the codec throws.
    public func upcast(_ payload: [UInt8], using codec: any EventCodec) throws -> [UInt8] {
        try self.step(payload, codec)
    }
}
