extension FileStateStore {
    /// How a ``FileStateStore`` syncs, recovers and compacts.
    public struct Configuration: Sendable {
        /// When a commit returns: after its `fsync`, shared by the commits queued together
        /// (``FileEventStore/Durability/groupCommit``, the default); after an `fsync` of its own
        /// (``FileEventStore/Durability/fsyncEachAppend``); or once written, unsynced
        /// (``FileEventStore/Durability/none``: a machine crash may lose the last commits, never
        /// a part of one).
        public var durability: FileEventStore.Durability = .groupCommit
        /// What opening does with damage: ``FileEventStore/Recovery/strict`` (the default) fails
        /// with ``KeyValueStoreError/Code/corrupted``; ``FileEventStore/Recovery/repair`` cuts the
        /// file at the damage and reports what it dropped.
        public var recovery: FileEventStore.Recovery = .strict
        /// The largest commit, in encoded bytes: 64 MiB by default, at most 4 GiB − 1.
        public var maxRecordSize: Int = 64 << 20
        /// Compact when the current file holds more than this many times the live entries' bytes;
        /// at least 1, default 2.
        public var compactionRatio: Double = 2
        /// Never compact on its own a file smaller than this; default 4 MiB.
        public var compactionMinimumBytes: Int = 4 << 20
        /// Faults to inject into writes and syncs, and a hook in reads (tests only).
        package var faults: FileStoreFaults?

        /// The default configuration.
        public init() {}
    }

    /// What opening a ``FileStateStore`` found.
    public struct RecoveryReport: Sendable, Hashable {
        /// What was cut or removed, in the order recovery met it.
        public var cuts: [FileEventStore.RecoveryReport.Cut]
        /// The generation in use.
        public var generation: UInt64
        /// The commits in the store's life, as far as recovered.
        public var batches: UInt64
        /// The entries, over every namespace.
        public var entries: Int

        /// Whether nothing was cut.
        public var isClean: Bool { self.cuts.isEmpty }
    }

    /// A ``FileStateStore``'s size on disk and in memory.
    public struct Statistics: Sendable, Hashable {
        /// The generation in use.
        public var generation: UInt64
        /// The bytes of the current generation's file: what the store holds on disk, but for the
        /// small `STATEMARK` and `LOCK` files.
        public var fileBytes: Int
        /// The bytes the live entries take in a snapshot (namespace, key and value, with their
        /// lengths).
        public var liveBytes: Int
        /// The bytes of values held in memory: only values of at most 12 bytes are, inside their
        /// index entry; a larger value is read from the file each time. (What memory holds per
        /// entry is described under "Memory" in ``FileStateStore``.)
        public var inMemoryValueBytes: Int
        /// The entries, over every namespace.
        public var entries: Int
        /// The commits in the store's life.
        public var commits: UInt64
        /// The compactions since the store was opened.
        public var compactions: Int
    }
}
