extension FileEventStore {
    /// How a ``FileEventStore`` writes, syncs and recovers.
    public struct Configuration: Sendable {
        /// The size a segment file grows to: an append that does not fit in what is left of the
        /// current segment starts a new one, so that an append never spans two files; an append
        /// larger than a segment gets one to itself. Default 64 MiB.
        public var segmentSize: Int = 64 << 20
        /// The largest record body accepted, on append and on read; a length field above it is
        /// rejected before anything is allocated. Default 16 MiB.
        public var maxRecordSize: Int = 16 << 20
        /// When an append counts as written. Default ``Durability/groupCommit``.
        public var durability: Durability = .groupCommit
        /// What opening does with damage that is not a torn tail. Default ``Recovery/strict``.
        public var recovery: Recovery = .strict
        /// Faults to inject into writes and syncs, for the package's own tests; `nil` (always,
        /// outside them) writes for real.
        package var faults: FileStoreFaults?

        /// The defaults.
        public init() {}
    }

    /// When an append counts as written.
    public struct Durability: Sendable, Hashable, CustomStringConvertible {
        enum Base: Hashable {
            case fsyncEachAppend
            case groupCommit
            case none
        }

        let base: Base

        /// Every append is written and `fsync`ed on its own before it returns. Survives power
        /// loss; one `fsync` per append.
        public static let fsyncEachAppend = Durability(base: .fsyncEachAppend)
        /// Appends that arrive while a write is in progress are written together with one
        /// `write` and one `fsync`; each append returns only after its data is synced. Survives
        /// power loss, with throughput that grows with concurrency.
        public static let groupCommit = Durability(base: .groupCommit)
        /// Appends are written (to the operating system's cache) but never `fsync`ed. Survives a
        /// process crash, not a power loss. For tests and caches.
        public static let none = Durability(base: .none)

        /// The policy's name.
        public var description: String {
            switch self.base {
            case .fsyncEachAppend: "fsyncEachAppend"
            case .groupCommit: "groupCommit"
            case .none: "none"
            }
        }
    }

    /// What opening a store does with damage that is not a torn tail.
    public struct Recovery: Sendable, Hashable {
        let isRepair: Bool

        /// Damage anywhere but the tail of the last segment fails the open with
        /// ``EventStoreError/Code/corrupted``, naming the file and the offset. Nothing is changed
        /// on disk except cutting a torn tail.
        public static let strict = Recovery(isRepair: false)
        /// Damage is cut off: the damaged segment is truncated at the first bad record, and every
        /// later segment is removed. ``FileEventStore/recoveryReport`` says exactly what was
        /// dropped. Use it only after a strict open has failed and you accept losing what follows
        /// the damage.
        public static let repair = Recovery(isRepair: true)
    }

    /// What opening the store found and changed.
    public struct RecoveryReport: Sendable, Hashable {
        /// One cut made on open.
        public struct Cut: Sendable, Hashable, CustomStringConvertible {
            /// Why the bytes were dropped.
            public enum Reason: Sendable, Hashable {
                /// An incomplete or bad record at the end of the last segment: the trace of a
                /// write that a crash interrupted. Always cut, in both recovery modes.
                case tornTail
                /// Damage before the tail, dropped because the store was opened with
                /// ``Recovery/repair``.
                case repaired
            }

            /// The segment file.
            public var file: String
            /// Where the dropped bytes started.
            public var offset: Int
            /// How many bytes were dropped from this file (its whole size when it was removed).
            public var droppedBytes: Int
            /// Whether the file was removed rather than truncated.
            public var removedFile: Bool
            /// Why.
            public var reason: Reason
            /// What was wrong at `offset`.
            public var detail: String

            /// `file@offset: dropped n bytes (reason: detail)`.
            public var description: String {
                let action =
                    self.removedFile ? "removed (\(self.droppedBytes) bytes)" : "dropped \(self.droppedBytes) bytes"
                return "\(self.file)@\(self.offset): \(action) (\(self.reason): \(self.detail))"
            }
        }

        /// Every cut, in file order; empty when the store was intact.
        public var cuts: [Cut] = []
        /// The events found and indexed.
        public var eventCount: UInt64 = 0
        /// The segment files in use after the open.
        public var segmentCount = 0

        /// Whether nothing was cut.
        public var isClean: Bool { self.cuts.isEmpty }
    }
}
