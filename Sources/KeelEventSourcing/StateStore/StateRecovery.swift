#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Opening a ``FileStateStore``: finds the newest complete generation, replays it, cuts a torn
/// tail, checks the high-water mark, and removes what a compaction left behind.
struct StateRecovery {
    typealias Cut = FileEventStore.RecoveryReport.Cut

    var generation: UInt64 = 0
    var descriptor: FileDescriptor?
    var size = StateFile.headerSize
    var index = StateIndex()
    /// The last batch's sequence.
    var sequence: UInt64 = 0
    var mark: HighWaterMark?
    var cuts: [Cut] = []

    /// What a generation file holds.
    private enum Outcome {
        /// A whole snapshot and the batches after it.
        case complete
        /// The snapshot is cut short (a compaction a crash interrupted, if a generation before
        /// it is whole).
        case incompleteSnapshot(offset: Int, detail: String)
    }

    static func run(
        directory: String,
        configuration: FileStateStore.Configuration
    ) throws(EventStoreError) -> StateRecovery {
        var recovery = StateRecovery()
        recovery.mark = try HighWaterMark.read(directory: directory, fileName: FileStateStore.markFileName)
        let repair = configuration.recovery == .repair
        var generations: [UInt64] = []
        for name in try FileDescriptor.listDirectory(directory).sorted() where name.hasPrefix("state-") {
            guard let generation = StateFile.generation(of: name) else {
                guard repair else {
                    throw EventStoreError(
                        code: .corrupted,
                        message: "\(directory)/\(name)@0: not a state file name (state-<16 hex digits>.log)"
                    )
                }
                recovery.cuts.append(
                    Cut(
                        file: name,
                        offset: 0,
                        droppedBytes: 0,
                        removedFile: false,
                        reason: .repaired,
                        detail: "ignored a misnamed file"
                    )
                )
                continue
            }
            generations.append(generation)
        }
        generations.sort()
        var index = generations.count - 1
        while index >= 0 {
            let generation = generations[index]
            let path = directory + "/" + StateFile.name(generation: generation)
            let outcome = try recovery.replay(path: path, generation: generation, repair: repair)
            switch outcome {
            case .complete:
                // Generations before it are whole copies a finished compaction had yet to remove.
                for older in generations[..<index] {
                    try FileDescriptor.remove(directory + "/" + StateFile.name(generation: older))
                }
                if index > 0 { try FileDescriptor.syncDirectory(directory) }
                try recovery.checkMark(path: path, repair: repair)
                return recovery
            case .incompleteSnapshot(let offset, let detail):
                let vouched = recovery.mark.map { UInt64($0.segment) >= generation } ?? false
                if index > 0 && !vouched {
                    // A compaction a crash interrupted: its generation before is whole.
                    let size = (try? Self.fileSize(path)) ?? 0
                    try FileDescriptor.remove(path)
                    try FileDescriptor.syncDirectory(directory)
                    recovery.cuts.append(
                        Cut(
                            file: StateFile.name(generation: generation),
                            offset: 0,
                            droppedBytes: size,
                            removedFile: true,
                            reason: .tornTail,
                            detail: "a compaction cut short (\(detail) at \(offset))"
                        )
                    )
                    index -= 1
                    continue
                }
                if index == 0 && generation == 0 && recovery.mark == nil && offset == 0 {
                    // A new store whose first file a crash cut short: nothing was ever committed.
                    try FileDescriptor.remove(path)
                    break
                }
                throw EventStoreError(code: .corrupted, message: "\(path)@\(offset): \(detail)")
            }
            break
        }
        // No generation yet (or only a first file that never got its header): a new store.
        if let mark = recovery.mark {
            let detail =
                "no state file is left, but the high-water mark names generation \(mark.segment) of \(mark.segmentSize) bytes"
            guard repair else { throw EventStoreError(code: .corrupted, message: "\(directory): \(detail)") }
            recovery.cuts.append(
                Cut(
                    file: FileStateStore.markFileName,
                    offset: 0,
                    droppedBytes: 0,
                    removedFile: false,
                    reason: .repaired,
                    detail: detail
                )
            )
        }
        recovery.generation = recovery.mark.map { UInt64($0.segment) + 1 } ?? 0
        let descriptor = try StateFile.create(generation: recovery.generation, directory: directory)
        do throws(EventStoreError) {
            var buffer: [UInt8] = []
            try StateFile.snapshotBodies(sequence: 0, entries: StateEntries()) { body throws(EventStoreError) in
                FileRecord.appendFrame(of: body, to: &buffer)
            }
            try descriptor.write(buffer, at: StateFile.headerSize)
            try descriptor.sync()
            try FileDescriptor.syncDirectory(directory)
            recovery.size = StateFile.headerSize + buffer.count
        } catch {
            descriptor.close()
            throw error
        }
        recovery.descriptor = descriptor
        return recovery
    }

    private static func fileSize(_ path: String) throws(EventStoreError) -> Int {
        let descriptor = try FileDescriptor.open(path, flags: O_RDONLY)
        defer { descriptor.close() }
        return try descriptor.size()
    }

    /// Reads generation `generation`'s file, a window at a time, into `index`; on `.complete`,
    /// keeps it open in `descriptor`, cut after its last whole batch.
    private mutating func replay(path: String, generation: UInt64, repair: Bool) throws(EventStoreError) -> Outcome {
        let descriptor = try FileDescriptor.open(path, flags: O_RDWR)
        var keep = false
        defer { if !keep { descriptor.close() } }
        let reader = StateFileReader(descriptor, size: try descriptor.size())
        var index = StateIndex()
        var snapshot: SnapshotProgress?
        var sequence: UInt64 = 0
        var damage: (offset: Int, detail: String, isTail: Bool)?
        var offset = StateFile.headerSize
        if let problem = StateFile.checkHeader(
            try reader.bytes(at: 0, count: StateFile.headerSize),
            generation: generation
        ) {
            damage = (0, problem, true)
        }
        while damage == nil, offset < reader.size {
            let frame: (body: UnsafeRawBufferPointer, size: Int)
            switch try reader.frame(
                at: offset,
                minimumBodySize: StateFile.minimumBodySize,
                maxRecordSize: Int(UInt32.max)
            ) {
            case .success(let found):
                frame = found
            case .failure(let error):
                // What can follow the last write: nothing valid after it, and past the mark.
                let isTail = !(try reader.hasValidFrame(after: offset, minimumBodySize: StateFile.minimumBodySize))
                damage = (offset, "\(error)", isTail)
                continue
            }
            let record: StateFile.IndexedRecord
            do {
                record = try StateFile.index(frame.body, at: offset + FileRecord.frameHeaderSize)
            } catch {
                damage = (offset, "\(error)", false)
                continue
            }
            if let problem = Self.apply(record, to: &index, snapshot: &snapshot, sequence: &sequence) {
                damage = (offset, problem, false)
                continue
            }
            offset += frame.size
        }
        guard snapshot?.isComplete == true else {
            // The snapshot never ended: a generation file whose compaction did not finish.
            let detail = damage.map { "\($0.detail)" } ?? "the snapshot has no end record"
            if let damage, !damage.isTail {
                throw EventStoreError(code: .corrupted, message: "\(path)@\(damage.offset): \(damage.detail)")
            }
            return .incompleteSnapshot(offset: damage?.offset ?? offset, detail: detail)
        }
        if var damage {
            if let mark = self.mark, UInt64(mark.segment) == generation, damage.offset < mark.segmentSize {
                damage.isTail = false
            }
            guard damage.isTail || repair else {
                throw EventStoreError(code: .corrupted, message: "\(path)@\(damage.offset): \(damage.detail)")
            }
            try descriptor.truncate(to: damage.offset)
            try descriptor.sync()
            self.cuts.append(
                Cut(
                    file: StateFile.name(generation: generation),
                    offset: damage.offset,
                    droppedBytes: reader.size - damage.offset,
                    removedFile: false,
                    reason: damage.isTail ? .tornTail : .repaired,
                    detail: damage.detail
                )
            )
            offset = damage.offset
        }
        keep = true
        self.generation = generation
        self.descriptor = descriptor
        self.size = offset
        self.index = index
        self.sequence = sequence
        return .complete
    }

    /// How far a generation's snapshot has been read.
    private struct SnapshotProgress {
        /// The last batch the snapshot holds.
        var sequence: UInt64
        var chunks: UInt64 = 0
        var entries: UInt64 = 0
        /// Whether its end record was read.
        var isComplete = false
    }

    /// Applies one record; returns what is wrong with its place in the file, if anything.
    private static func apply(
        _ record: StateFile.IndexedRecord,
        to index: inout StateIndex,
        snapshot: inout SnapshotProgress?,
        sequence: inout UInt64
    ) -> String? {
        switch record {
        case .snapshot(let snapshotSequence, let chunk, let chunkEntries):
            var seen = snapshot ?? SnapshotProgress(sequence: snapshotSequence)
            guard !seen.isComplete else { return "a snapshot chunk after the snapshot's end" }
            guard seen.sequence == snapshotSequence else {
                return "a chunk of the snapshot at batch \(snapshotSequence) in that at batch \(seen.sequence)"
            }
            guard chunk == seen.chunks else { return "snapshot chunk \(chunk) where chunk \(seen.chunks) belongs" }
            for (namespace, key, entry) in chunkEntries {
                index.apply([.put(key: key, entry: entry)], in: namespace)
            }
            seen.chunks += 1
            seen.entries += UInt64(chunkEntries.count)
            snapshot = seen
        case .snapshotEnd(let snapshotSequence, let chunks, let count):
            var seen = snapshot ?? SnapshotProgress(sequence: snapshotSequence)
            guard !seen.isComplete else { return "a second snapshot end" }
            guard seen.sequence == snapshotSequence else {
                return "the end of the snapshot at batch \(snapshotSequence) in that at batch \(seen.sequence)"
            }
            guard seen.chunks == chunks, seen.entries == count else {
                return
                    "the snapshot's end counts \(chunks) chunks and \(count) entries, but \(seen.chunks) and \(seen.entries) came before it"
            }
            seen.isComplete = true
            snapshot = seen
            sequence = snapshotSequence
        case .batch(let batchSequence, let changes):
            guard snapshot?.isComplete == true else { return "a batch before the snapshot's end" }
            guard batchSequence == sequence + 1 else {
                return batchSequence > sequence
                    ? "batch \(batchSequence) follows batch \(sequence): a batch is missing"
                    : "batch \(batchSequence) follows batch \(sequence): a batch is there twice"
            }
            sequence = batchSequence
            for (namespace, operations) in changes {
                index.apply(operations, in: namespace)
            }
        }
        return nil
    }

    /// Reports a log that ends short of the high-water mark: batches removed from the end of the
    /// file, or the file the mark names gone.
    private mutating func checkMark(path: String, repair: Bool) throws(EventStoreError) {
        guard let mark = self.mark else { return }
        let detail: String
        if UInt64(mark.segment) > self.generation {
            detail =
                "the high-water mark names generation \(mark.segment), but the newest whole one is \(self.generation)"
        } else if UInt64(mark.segment) == self.generation
            && (self.size < mark.segmentSize || self.sequence < mark.events)
        {
            detail =
                "the file ends at \(self.size) bytes (batch \(self.sequence)), short of the high-water mark's \(mark.segmentSize) bytes (batch \(mark.events))"
        } else {
            return
        }
        guard repair else { throw EventStoreError(code: .corrupted, message: "\(path)@\(self.size): \(detail)") }
        self.cuts.append(
            Cut(
                file: StateFile.name(generation: self.generation),
                offset: self.size,
                droppedBytes: max(0, mark.segmentSize - self.size),
                removedFile: false,
                reason: .repaired,
                detail: detail
            )
        )
    }
}
