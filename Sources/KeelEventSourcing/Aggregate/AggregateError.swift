/// Why an ``AggregateRepository`` could not load or save an aggregate, or why it ignored or
/// failed to write a snapshot.
///
/// A command's own errors (your domain errors) are not wrapped: they propagate from
/// ``AggregateRepository/execute(_:expecting:retry:_:)`` as the command threw them.
///
/// ```swift
/// do {
///     try await users.execute("42") { user in try user.changeEmail(to: "ada@example.org") }
/// } catch let error as AggregateError where error.code == .conflict {
///     // error.storeError is the store's wrongExpectedVersion, error.attempts the tries made
/// } catch let error as UserError {
///     // the command refused
/// }
/// ```
public struct AggregateError: Error, Sendable, CustomStringConvertible {
    /// What went wrong. The set may grow: match the codes you handle and keep a default.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case conflict
            case alreadyExists = "already exists"
            case notFound = "not found"
            case unknownEvent = "unknown event"
            case incompleteStream = "incomplete stream"
            case eventCoding = "event coding"
            case store
            case snapshotUnreadable = "snapshot unreadable"
            case snapshotWriteFailed = "snapshot write failed"
        }

        private let base: Base

        private init(_ base: Base) {
            self.base = base
        }

        /// Another writer appended to the stream between the load and the append, on every
        /// attempt; ``AggregateError/storeError`` is the store's
        /// ``EventStoreError/Code/wrongExpectedVersion`` error of the last attempt.
        public static let conflict = Code(.conflict)
        /// The command expected a new aggregate (``AggregateExistence/new``), and the stream has
        /// events.
        public static let alreadyExists = Code(.alreadyExists)
        /// The command expected an existing aggregate (``AggregateExistence/existing``), and the
        /// stream has no events.
        public static let notFound = Code(.notFound)
        /// The stream holds an event that is not one of the aggregate's: its type name is not
        /// registered in the serializer (which skips unknown types), or
        /// ``AggregateEvent/init(_:)`` returned `nil` for it. Loading fails rather than build a
        /// state that leaves out an event.
        public static let unknownEvent = Code(.unknownEvent)
        /// The stream's first readable event is not the one the load needs (the stream's
        /// ``StreamMetadata`` hides older events): loading fails rather than build a state from
        /// part of the history.
        public static let incompleteStream = Code(.incompleteStream)
        /// An event could not be encoded, or a stored event could not be upcast or decoded;
        /// ``AggregateError/cause`` is the ``EventCodecError``.
        public static let eventCoding = Code(.eventCoding)
        /// The store failed; ``AggregateError/storeError`` says how.
        public static let store = Code(.store)
        /// The latest snapshot could not be read or decoded (reported in
        /// ``SnapshotLoadOutcome/unreadable(_:)``; a load does not fail for it).
        public static let snapshotUnreadable = Code(.snapshotUnreadable)
        /// A snapshot could not be encoded or written (reported in
        /// ``SnapshotWriteOutcome/failed(_:)``; a save does not fail for it).
        public static let snapshotWriteFailed = Code(.snapshotWriteFailed)

        /// The code in words, such as `conflict`.
        public var description: String {
            self.base.rawValue
        }
    }

    /// What went wrong.
    public var code: Code
    /// The aggregate's stream (or, for snapshot codes, its snapshot stream).
    public var stream: StreamID
    /// For ``Code/conflict``: how many times the command ran.
    public var attempts: Int?
    /// A sentence for people.
    public var message: String
    /// The error behind this one: an ``EventStoreError`` or an ``EventCodecError``.
    public var cause: (any Error)?

    /// Creates an error.
    /// - Parameters:
    ///   - code: What went wrong.
    ///   - stream: The stream concerned.
    ///   - attempts: For a conflict, the attempts made.
    ///   - message: A sentence for people.
    ///   - cause: The error behind this one.
    public init(
        code: Code,
        stream: StreamID,
        attempts: Int? = nil,
        message: String,
        cause: (any Error)? = nil
    ) {
        self.code = code
        self.stream = stream
        self.attempts = attempts
        self.message = message
        self.cause = cause
    }

    /// The store's error behind this one, if the cause is one: for ``Code/conflict`` the
    /// ``EventStoreError/Code/wrongExpectedVersion`` error with the stream's actual version.
    public var storeError: EventStoreError? {
        self.cause as? EventStoreError
    }

    /// The codec's error behind this one, if the cause is one.
    public var codecError: EventCodecError? {
        self.cause as? EventCodecError
    }

    /// `aggregate: code (stream s, n attempts): message (cause: …)`.
    public var description: String {
        var text = "aggregate: \(self.code) (stream \(self.stream)"
        if let attempts = self.attempts {
            text += ", \(attempts) attempt\(attempts == 1 ? "" : "s")"
        }
        text += "): \(self.message)"
        if let cause = self.cause {
            text += " (cause: \(cause))"
        }
        return text
    }
}
