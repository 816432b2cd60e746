/// Why an event or a snapshot could not be encoded, upcast or decoded.
///
/// Every error names its code and what is known of the event: its type name, the schema version
/// of its payload and, when it came from the store, its stream, version and position, so that a
/// log line leads to the record. The error of the codec or the upcaster behind it is the
/// ``cause``.
///
/// ```swift
/// do {
///     let event = try serializer.decode(recorded, as: UserRegistered.self)
/// } catch let error where error.code == .missingUpcaster {
///     // error.eventType is "user.registered", error.missingUpcasters the versions with no step
/// }
/// ```
public struct EventCodecError: Error, Sendable, CustomStringConvertible {
    /// What went wrong. The set may grow: match the codes you handle and keep a default.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case unknownEventType = "unknown event type"
            case typeMismatch = "type mismatch"
            case missingUpcaster = "missing upcaster"
            case schemaVersionTooNew = "schema version too new"
            case upcastingFailed = "upcasting failed"
            case decodingFailed = "decoding failed"
            case encodingFailed = "encoding failed"
        }

        private let base: Base

        private init(_ base: Base) {
            self.base = base
        }

        /// No type is registered under the event's type name, and the serializer's
        /// ``EventSerializer/UnknownTypePolicy`` is ``EventSerializer/UnknownTypePolicy/fail``.
        public static let unknownEventType = Code(.unknownEventType)
        /// The event's type name is not the one the caller asked for, or the Swift type being
        /// encoded is not the one registered under its type name.
        public static let typeMismatch = Code(.typeMismatch)
        /// The payload is at an older schema version and the chain of upcasters to the current
        /// version has a gap; ``EventCodecError/missingUpcasters`` lists the versions with no
        /// upcaster from them.
        public static let missingUpcaster = Code(.missingUpcaster)
        /// The payload's schema version is newer than the current version of the type reading it:
        /// written by a newer release of the application, which this one cannot read.
        public static let schemaVersionTooNew = Code(.schemaVersionTooNew)
        /// An upcaster threw (including a typed upcaster that could not decode the old payload);
        /// the message names the step and ``EventCodecError/cause`` is what it threw.
        public static let upcastingFailed = Code(.upcastingFailed)
        /// The codec could not decode the payload: it is corrupt, or does not match the type at
        /// its schema version. ``EventCodecError/cause`` is the codec's error.
        public static let decodingFailed = Code(.decodingFailed)
        /// The codec could not encode the value. ``EventCodecError/cause`` is the codec's error.
        public static let encodingFailed = Code(.encodingFailed)

        /// The code in words, such as `missing upcaster`.
        public var description: String {
            self.base.rawValue
        }
    }

    /// What went wrong.
    public var code: Code
    /// The event's type name, if known (snapshots have none).
    public var eventType: String?
    /// The schema version of the payload as stored (or, when encoding, as written).
    public var schemaVersion: Int?
    /// The schema version the reader expects: the current version of the Swift type.
    public var currentSchemaVersion: Int?
    /// For ``Code/missingUpcaster``: every version from which the chain lacks an upcaster (an
    /// upcaster from version `n` produces version `n + 1`), in ascending order; otherwise empty.
    public var missingUpcasters: [Int]
    /// The stream the event was read from, if it was.
    public var stream: StreamID?
    /// The event's version in its stream, if it was read from one.
    public var streamVersion: UInt64?
    /// The event's position in the store's global log, if it was read from a store.
    public var position: UInt64?
    /// A sentence for people.
    public var message: String
    /// The error behind this one: the codec's or the upcaster's.
    public var cause: (any Error)?

    /// Creates an error.
    /// - Parameters:
    ///   - code: What went wrong.
    ///   - eventType: The event's type name.
    ///   - schemaVersion: The payload's schema version.
    ///   - currentSchemaVersion: The version the reader expects.
    ///   - missingUpcasters: The versions with no upcaster from them.
    ///   - stream: The stream.
    ///   - streamVersion: The version in the stream.
    ///   - position: The global position.
    ///   - message: A sentence for people.
    ///   - cause: The error behind this one.
    public init(
        code: Code,
        eventType: String? = nil,
        schemaVersion: Int? = nil,
        currentSchemaVersion: Int? = nil,
        missingUpcasters: [Int] = [],
        stream: StreamID? = nil,
        streamVersion: UInt64? = nil,
        position: UInt64? = nil,
        message: String,
        cause: (any Error)? = nil
    ) {
        self.code = code
        self.eventType = eventType
        self.schemaVersion = schemaVersion
        self.currentSchemaVersion = currentSchemaVersion
        self.missingUpcasters = missingUpcasters
        self.stream = stream
        self.streamVersion = streamVersion
        self.position = position
        self.message = message
        self.cause = cause
    }

    /// `event codec: code (type t v2, stream s@3, position 17): message (cause: …)`, with what is
    /// known.
    public var description: String {
        var text = "event codec: \(self.code)"
        var context: [String] = []
        if let eventType = self.eventType {
            context.append("type \(eventType)" + (self.schemaVersion.map { " v\($0)" } ?? ""))
        } else if let schemaVersion = self.schemaVersion {
            context.append("schema version \(schemaVersion)")
        }
        if let stream = self.stream {
            context.append("stream \(stream)" + (self.streamVersion.map { "@\($0)" } ?? ""))
        }
        if let position = self.position {
            context.append("position \(position)")
        }
        if !context.isEmpty {
            text += " (\(context.joined(separator: ", ")))"
        }
        text += ": \(self.message)"
        if let cause = self.cause {
            text += " (cause: \(cause))"
        }
        return text
    }
}
