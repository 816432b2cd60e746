extension EventSerializer {
    /// What decoding to `any DomainEvent` does with an event whose type name the registry does not
    /// know. The set may grow: match the policies you handle and keep a default.
    public struct UnknownTypePolicy: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case fail
            case skip
        }

        private let base: Base

        private init(_ base: Base) {
            self.base = base
        }

        /// Throw ``EventCodecError`` with ``EventCodecError/Code/unknownEventType``.
        public static let fail = UnknownTypePolicy(.fail)
        /// Return `nil`: the reader ignores the event.
        public static let skip = UnknownTypePolicy(.skip)

        /// `fail` or `skip`.
        public var description: String {
            self.base.rawValue
        }
    }
}
