/// Why a ``KeyValueStore`` failed to open or to commit.
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
        /// The store was closed: no commit is accepted any more.
        public static let closed = Code(.closed)
        /// A commit larger than the largest record the store writes
        /// (``FileStateStore/Configuration/maxRecordSize``).
        public static let tooLarge = Code(.tooLarge)
        /// A namespace name that is empty or reserved.
        public static let invalidNamespace = Code(.invalidNamespace)

        /// The code in words.
        public var description: String { self.base.rawValue }
    }

    /// What went wrong.
    public var code: Code
    /// The namespace concerned.
    public var namespace: String
    /// A sentence for people.
    public var message: String
    /// The error behind this one, such as the ``EventStoreError``.
    public var cause: (any Error)?

    /// Creates an error.
    /// - Parameters:
    ///   - code: What went wrong.
    ///   - namespace: The namespace.
    ///   - message: A sentence for people.
    ///   - cause: The error behind this one.
    public init(code: Code, namespace: String, message: String, cause: (any Error)? = nil) {
        self.code = code
        self.namespace = namespace
        self.message = message
        self.cause = cause
    }

    /// `key-value store (namespace): code: message` and the cause, if any.
    public var description: String {
        var text = "key-value store (\(self.namespace)): \(self.code): \(self.message)"
        if let cause = self.cause {
            text += " (cause: \(cause))"
        }
        return text
    }
}
