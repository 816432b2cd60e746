extension EventSerializer {
    /// How an ``EventSerializer`` treats what its registry does not know.
    public struct Configuration: Sendable {
        /// What ``EventSerializer/decode(_:)`` does with an event whose type name is not
        /// registered; ``UnknownTypePolicy/fail`` by default.
        ///
        /// Skip in a reader that deliberately follows only some types, such as a projection over
        /// ``EventStore/subscribe(from:pageSize:)``; fail where every event must be understood,
        /// such as when loading an aggregate's own stream.
        public var unknownEventTypes: UnknownTypePolicy

        /// Makes a configuration.
        /// - Parameter unknownEventTypes: What to do with unknown type names.
        public init(unknownEventTypes: UnknownTypePolicy = .fail) {
            self.unknownEventTypes = unknownEventTypes
        }
    }
}
