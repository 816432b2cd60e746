/// Why a ``KeyValueStore`` failed to open, to read or to commit, or why a typed value did not encode
/// or decode.
public struct KeyValueStoreError: Error, Sendable, CustomStringConvertible {
    /// What went wrong. The set may grow: match the codes you handle and keep a default.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case conflict
            case corrupted
            case storeFailed = "store failed"
            case closed
            case tooLarge = "too large"
            case invalidNamespace = "invalid namespace"
            case encodingFailed = "encoding failed"
            case decodingFailed = "decoding failed"
        }

        private let base: Base

        private init(_ base: Base) {
            self.base = base
        }

        /// Another writer appended to the namespace's stream since this store read it: this
        /// instance is stale and every later commit fails too. Open the namespace again (one
        /// writer per namespace).
        public static let conflict = Code(.conflict)
        /// The stored state is damaged: a record of the namespace's stream is not a valid batch or
        /// snapshot, or a ``FileStateStore`` file fails its checks (the message names the file and
        /// offset).
        public static let corrupted = Code(.corrupted)
        /// The underlying store failed (an I/O error, a locked directory); the cause says how.
        public static let storeFailed = Code(.storeFailed)
        /// The store was closed: no commit is accepted any more, and a state store reads no value.
        public static let closed = Code(.closed)
        /// A commit larger than the largest record the store writes
        /// (``FileStateStore/Configuration/maxRecordSize``).
        public static let tooLarge = Code(.tooLarge)
        /// A namespace name that is empty or reserved.
        public static let invalidNamespace = Code(.invalidNamespace)
        /// A typed value did not encode (a non-finite number under the default JSON strategy, an
        /// `encode(to:)` that threw); nothing was written. ``KeyValueStoreError/key`` names the
        /// key and ``KeyValueStoreError/cause`` is the `EncodingError`.
        public static let encodingFailed = Code(.encodingFailed)
        /// The bytes stored under a key do not decode as the type asked for: they were written as
        /// another type, by the byte API, or by an earlier shape of the type.
        /// ``KeyValueStoreError/key`` names the key and ``KeyValueStoreError/cause`` is the
        /// `DecodingError`. The stored bytes are left as they are.
        public static let decodingFailed = Code(.decodingFailed)

        /// The code in words.
        public var description: String { self.base.rawValue }
    }

    /// What went wrong.
    public var code: Code
    /// The namespace concerned.
    public var namespace: String
    /// The key concerned, when one key is: the key whose value did not encode or decode.
    public var key: String?
    /// A sentence for people.
    public var message: String
    /// The error behind this one, such as the ``EventStoreError``.
    public var cause: (any Error)?

    /// Creates an error.
    /// - Parameters:
    ///   - code: What went wrong.
    ///   - namespace: The namespace.
    ///   - key: The key concerned, if one is.
    ///   - message: A sentence for people.
    ///   - cause: The error behind this one.
    public init(code: Code, namespace: String, key: String? = nil, message: String, cause: (any Error)? = nil) {
        self.code = code
        self.namespace = namespace
        self.key = key
        self.message = message
        self.cause = cause
    }

    /// `key-value store (namespace): code: message`, with the key and the cause when there are.
    public var description: String {
        var text = "key-value store (\(self.namespace)): \(self.code)"
        if let key = self.key {
            text += " (key \(key))"
        }
        text += ": \(self.message)"
        if let cause = self.cause {
            text += " (cause: \(cause))"
        }
        return text
    }
}
