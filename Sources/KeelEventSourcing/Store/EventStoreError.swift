/// Why an event store refused or failed an operation.
///
/// Every error names its code and, where there is one, the stream; a version conflict carries
/// the stream's actual version, so that the caller can reload and retry.
///
/// ```swift
/// do {
///     try await store.append(events, to: stream, expecting: .exactly(loadedVersion))
/// } catch let error where error.code == .wrongExpectedVersion {
///     // someone else appended: reload from error.actualVersion and decide again
/// }
/// ```
public struct EventStoreError: Error, Sendable, CustomStringConvertible {
    /// What went wrong. The set may grow: match the codes you handle and keep a default.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case wrongExpectedVersion = "wrong expected version"
            case streamDeleted = "stream deleted"
            case invalidArgument = "invalid argument"
            case closed = "closed"
            case corrupted = "corrupted"
            case io = "i/o error"
            case locked = "locked"
            case recordTooLarge = "record too large"
        }

        private let base: Base

        private init(_ base: Base) {
            self.base = base
        }

        /// The stream's version did not match the append's ``ExpectedVersion``;
        /// ``EventStoreError/actualVersion`` says what it was.
        public static let wrongExpectedVersion = Code(.wrongExpectedVersion)
        /// The stream was deleted; reading it fails until it is written again.
        public static let streamDeleted = Code(.streamDeleted)
        /// An argument was out of range (an empty stream name or type, a limit below 1, a schema
        /// version below 1).
        public static let invalidArgument = Code(.invalidArgument)
        /// The store was closed.
        public static let closed = Code(.closed)
        /// Stored data failed verification (a checksum, a header, a length); the message names
        /// the file and the offset.
        public static let corrupted = Code(.corrupted)
        /// The operating system refused a read, a write or a sync.
        public static let io = Code(.io)
        /// Another process (or another store in this one) holds the store's lock.
        public static let locked = Code(.locked)
        /// A record is larger than the store's configured maximum.
        public static let recordTooLarge = Code(.recordTooLarge)

        /// The code in words, such as `wrong expected version`.
        public var description: String {
            self.base.rawValue
        }
    }

    /// What went wrong.
    public var code: Code
    /// The stream concerned, if any.
    public var stream: StreamID?
    /// For ``Code/wrongExpectedVersion``: what the append expected.
    public var expected: ExpectedVersion?
    /// For ``Code/wrongExpectedVersion``: the stream's last version at the time (`nil`: the stream
    /// held no events).
    public var actualVersion: UInt64?
    /// A sentence for people.
    public var message: String
    /// The error behind this one, if any.
    public var cause: (any Error)?

    /// Creates an error.
    /// - Parameters:
    ///   - code: What went wrong.
    ///   - stream: The stream concerned.
    ///   - expected: What an append expected.
    ///   - actualVersion: The stream's actual last version.
    ///   - message: A sentence for people.
    ///   - cause: The error behind this one.
    public init(
        code: Code,
        stream: StreamID? = nil,
        expected: ExpectedVersion? = nil,
        actualVersion: UInt64? = nil,
        message: String,
        cause: (any Error)? = nil
    ) {
        self.code = code
        self.stream = stream
        self.expected = expected
        self.actualVersion = actualVersion
        self.message = message
        self.cause = cause
    }

    /// A version conflict on `stream`.
    /// - Parameters:
    ///   - stream: The stream.
    ///   - expected: What the append expected.
    ///   - actual: The stream's last version.
    /// - Returns: The error.
    public static func wrongExpectedVersion(
        _ stream: StreamID,
        expected: ExpectedVersion,
        actual: UInt64?
    ) -> EventStoreError {
        let actualText = actual.map { "version \($0)" } ?? "no stream"
        return EventStoreError(
            code: .wrongExpectedVersion,
            stream: stream,
            expected: expected,
            actualVersion: actual,
            message: "expected \(expected), found \(actualText)"
        )
    }

    /// `event store: code: message` (with the stream and the cause when there are).
    public var description: String {
        var text = "event store: \(self.code)"
        if let stream = self.stream {
            text += " (stream \(stream))"
        }
        text += ": \(self.message)"
        if let cause = self.cause {
            text += " (cause: \(cause))"
        }
        return text
    }
}
