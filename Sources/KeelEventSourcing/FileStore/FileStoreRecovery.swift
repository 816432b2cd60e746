#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Opening a store: verify every segment, cut a torn tail, fail on (or repair) other damage, and
/// rebuild the index.
struct FileStoreRecovery {
    var segments: [FileEventStore.Segment] = []
    var locations: [FileEventStore.Location] = []
    var streams: [StreamID: FileEventStore.CommittedStream] = [:]
    var report = FileEventStore.RecoveryReport()
    /// The format version of the last segment read (0 when there is none).
    var lastSegmentFormatVersion: UInt32 = 0
    /// How far the log had reached when it was last marked; `nil` for a store without a mark.
    var mark: HighWaterMark?
    /// The stream changes (metadata and deletion records) read.
    var changes: UInt64 = 0
    private var removedFiles = false

    static func run(
        directory: String,
        configuration: FileEventStore.Configuration
    ) throws(EventStoreError) -> FileStoreRecovery {
        var recovery = FileStoreRecovery()
        do throws(EventStoreError) {
            try recovery.open(directory: directory, configuration: configuration)
        } catch {
            for segment in recovery.segments { segment.descriptor.close() }
            throw error
        }
        recovery.report.eventCount = UInt64(recovery.locations.count)
        recovery.report.segmentCount = recovery.segments.count
        return recovery
    }

    private mutating func open(directory: String, configuration: FileEventStore.Configuration) throws(EventStoreError) {
        let repair = configuration.recovery.isRepair
        self.mark = try HighWaterMark.read(directory: directory)
        var indexed: [(index: Int, name: String)] = []
        for name in try FileDescriptor.listDirectory(directory).sorted() where name.hasPrefix("segment-") {
            guard let index = SegmentHeader.index(fromFileName: name) else {
                guard repair else {
                    throw EventStoreError(
                        code: .corrupted,
                        message: "\(directory)/\(name)@0: a file that looks like a segment but is not named like one"
                    )
                }
                self.report.cuts.append(
                    .init(
                        file: directory + "/" + name,
                        offset: 0,
                        droppedBytes: 0,
                        removedFile: false,
                        reason: .repaired,
                        detail: "not a segment name; left in place and ignored"
                    )
                )
                continue
            }
            indexed.append((index, name))
        }
        indexed.sort { $0.index < $1.index }
        for (position, entry) in indexed.enumerated() {
            let path = directory + "/" + entry.name
            let isLast = position == indexed.count - 1
            guard entry.index == position else {
                let missing = directory + "/" + SegmentHeader.fileName(index: position)
                let detail = "segment \(position) is missing (the next file is \(entry.name))"
                guard repair else { throw EventStoreError(code: .corrupted, message: "\(missing)@0: \(detail)") }
                try self.remove(indexed[position...].map { directory + "/" + $0.name }, detail: detail)
                break
            }
            let keepGoing = try self.scan(path: path, index: entry.index, isLast: isLast, configuration: configuration)
            if !keepGoing {
                try self.remove(
                    indexed[(position + 1)...].map { directory + "/" + $0.name },
                    detail: "follows a repaired segment"
                )
                break
            }
        }
        try self.checkMark(directory: directory, repair: repair)
        if self.removedFiles { try FileDescriptor.syncDirectory(directory) }
    }

    /// Whether the high-water mark says that `offset` of segment `index` was on disk: damage
    /// there is not a torn tail, whatever it looks like.
    private func isMarked(segment index: Int, offset: Int) -> Bool {
        guard let mark = self.mark else { return false }
        return mark.segment > index || (mark.segment == index && offset < mark.segmentSize)
    }

    /// Reports a log that ends short of its high-water mark: a shortened or removed last segment,
    /// or events missing from it. An error in a strict open; in a repair, a reported cut.
    private mutating func checkMark(directory: String, repair: Bool) throws(EventStoreError) {
        // After a repair dropped bytes the log is knowingly shorter: that cut is already reported.
        // (A stray file ignored by a repair drops nothing.)
        let repairDropped = self.report.cuts.contains {
            $0.reason == .repaired && ($0.droppedBytes > 0 || $0.removedFile)
        }
        guard let mark = self.mark, !repairDropped else { return }
        let lastIndex = self.segments.count - 1
        let lastSize = self.segments.last?.size ?? 0
        let events = UInt64(self.locations.count)
        let isShort =
            mark.segment > lastIndex || (mark.segment == lastIndex && lastSize < mark.segmentSize)
            || events < mark.events || self.changes < mark.changes
        guard isShort else { return }
        let file = directory + "/" + SegmentHeader.fileName(index: mark.segment)
        let offset = mark.segment == lastIndex ? lastSize : 0
        let detail =
            "the log ends in segment \(lastIndex) at \(lastSize) bytes with \(events) events and \(self.changes) "
            + "stream changes, but it had reached segment \(mark.segment) at \(mark.segmentSize) bytes with "
            + "\(mark.events) events and \(mark.changes) stream changes"
        guard repair else { throw EventStoreError(code: .corrupted, message: "\(file)@\(offset): \(detail)") }
        self.report.cuts.append(
            .init(
                file: file,
                offset: offset,
                droppedBytes: 0,
                removedFile: false,
                reason: .repaired,
                detail: "already missing: " + detail
            )
        )
    }

    /// Removes files after damage (repair mode), reporting each.
    private mutating func remove(_ paths: [String], detail: String) throws(EventStoreError) {
        for path in paths {
            let descriptor = try FileDescriptor.open(path, flags: O_RDONLY)
            let size = (try? descriptor.size()) ?? 0
            descriptor.close()
            try FileDescriptor.remove(path)
            self.removedFiles = true
            self.report.cuts.append(
                .init(file: path, offset: 0, droppedBytes: size, removedFile: true, reason: .repaired, detail: detail)
            )
        }
    }

    /// Verifies one segment and indexes its records.
    /// - Returns: Whether later segments may be read (`false` after a repair cut).
    private mutating func scan(
        path: String,
        index: Int,
        isLast: Bool,
        configuration: FileEventStore.Configuration
    ) throws(EventStoreError) -> Bool {
        let repair = configuration.recovery.isRepair
        let descriptor = try FileDescriptor.open(path, flags: O_RDWR)
        var keep = false
        defer { if !keep { descriptor.close() } }
        let size = try descriptor.size()
        let bytes = try descriptor.read(count: size, at: 0)
        guard bytes.count == size else {
            throw EventStoreError(code: .io, message: "\(path): read \(bytes.count) of \(size) bytes")
        }
        let headerProblem = bytes.withUnsafeBytes { SegmentHeader.problem(in: $0, index: index) }
        if let headerProblem {
            // A segment whose header never fully reached the disk is the trace of a crash while
            // creating it: only the last segment, only when it is shorter than a header or zero.
            let isTornCreation = isLast && (size < SegmentHeader.size || bytes.allSatisfy { $0 == 0 })
            guard isTornCreation || repair else {
                throw EventStoreError(code: .corrupted, message: "\(path)@0: \(headerProblem)")
            }
            try FileDescriptor.remove(path)
            self.removedFiles = true
            self.report.cuts.append(
                .init(
                    file: path,
                    offset: 0,
                    droppedBytes: size,
                    removedFile: true,
                    reason: isTornCreation ? .tornTail : .repaired,
                    detail: headerProblem
                )
            )
            return isTornCreation
        }
        self.lastSegmentFormatVersion = bytes.withUnsafeBytes { SegmentHeader.version(in: $0) }
        var offset = SegmentHeader.size
        var damage: (offset: Int, detail: String, isTail: Bool)?
        // Where the records of the last segment end when zeros fill the rest of the file: the
        // writer's fill ahead of its records (see `Writer.zeroAhead`), or bytes a crash never let
        // reach the disk. Either way nothing was written there, so the log ends at the boundary;
        // the high-water mark check still reports it if the log once reached further.
        var zeroFillStart: Int?
        // The records of an append whose last record has not been read yet, with the offset of
        // its first: indexed only once the append is complete.
        var openAppend: [(record: RecordedEvent, offset: Int, size: Int)] = []
        bytes.withUnsafeBytes { buffer in
            while offset < size {
                let rest = UnsafeRawBufferPointer(rebasing: buffer[offset..<size])
                do throws(FileRecord.DecodingFailure) {
                    let (record, frameSize) = try FileRecord.decodeFrame(
                        rest,
                        maxRecordSize: configuration.maxRecordSize
                    )
                    switch record {
                    case .event(let event, moreInAppend: true):
                        openAppend.append((event, offset, frameSize))
                    case .event(let event, moreInAppend: false):
                        openAppend.append((event, offset, frameSize))
                        for entry in openAppend {
                            if let problem = self.index(
                                .event(entry.record),
                                segment: index,
                                offset: entry.offset,
                                size: entry.size
                            ) {
                                damage = (entry.offset, problem, false)
                                return
                            }
                        }
                        openAppend = []
                    case .streamMetadata, .streamDeleted:
                        if let first = openAppend.first {
                            damage = (
                                first.offset, "an append's records are interrupted by another record at \(offset)",
                                false
                            )
                            return
                        }
                        if let problem = self.index(record, segment: index, offset: offset, size: frameSize) {
                            damage = (offset, problem, false)
                            return
                        }
                    }
                    offset += frameSize
                } catch {
                    if isLast && Self.isAllZero(rest) {
                        zeroFillStart = offset
                        return
                    }
                    damage = (
                        offset, "\(error)",
                        isLast && !self.isMarked(segment: index, offset: offset)
                            && !Self.hasValidFrame(after: rest, maxRecordSize: configuration.maxRecordSize)
                    )
                    return
                }
            }
        }
        // An append left without its last record: in the last segment, past the high-water mark,
        // it is what a crash or a failed write leaves behind, and the whole append goes (never a
        // part of it); elsewhere appends never end a segment unfinished, so it is damage. A cut
        // never goes inside an append: it starts at the open append's first record.
        var cut = damage?.offset ?? zeroFillStart ?? size
        if let first = openAppend.first {
            cut = first.offset
            if let found = damage {
                if found.isTail {
                    // A tail only if the whole append is past the mark.
                    let isTail = !self.isMarked(segment: index, offset: first.offset)
                    let detail =
                        isTail
                        ? "an append of \(openAppend.count) or more records cut off before its last (\(found.detail))"
                        : found.detail
                    damage = (isTail ? first.offset : found.offset, detail, isTail)
                }
            } else {
                let detail = "an append of \(openAppend.count) records without its last record"
                damage = (first.offset, detail, isLast && !self.isMarked(segment: index, offset: first.offset))
            }
        }
        if let damage {
            guard damage.isTail || repair else {
                throw EventStoreError(code: .corrupted, message: "\(path)@\(damage.offset): \(damage.detail)")
            }
            try descriptor.truncate(to: cut)
            try descriptor.sync()
            self.report.cuts.append(
                .init(
                    file: path,
                    offset: cut,
                    droppedBytes: size - cut,
                    removedFile: false,
                    reason: damage.isTail ? .tornTail : .repaired,
                    detail: damage.detail
                )
            )
            keep = true
            self.segments.append(FileEventStore.Segment(descriptor: descriptor, size: cut))
            return damage.isTail
        }
        keep = true
        self.segments.append(
            FileEventStore.Segment(descriptor: descriptor, size: zeroFillStart ?? size, fileSize: size)
        )
        return true
    }

    /// Whether every byte of `bytes` is zero; a word at a time (a zero fill is up to 1 MiB).
    static func isAllZero(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let words = bytes.count / 8
        for index in 0..<words where bytes.loadUnaligned(fromByteOffset: index * 8, as: UInt64.self) != 0 {
            return false
        }
        return bytes[(words * 8)...].allSatisfy { $0 == 0 }
    }

    /// Whether a valid frame starts anywhere in `rest` after its first byte (where a bad frame
    /// starts).
    ///
    /// A crash leaves a torn tail only at the end of what was written: a write's bytes reach the
    /// file in order, so nothing valid can follow the point where they stop. A bad frame followed
    /// by a valid one (a checksum-verified frame, found at any later offset) is damage in the
    /// middle of the log, however its own bytes look: its length field may have been damaged to
    /// reach past the end of the file.
    private static func hasValidFrame(after rest: UnsafeRawBufferPointer, maxRecordSize: Int) -> Bool {
        var offset = 1
        while offset + FileRecord.frameHeaderSize + FileRecord.minimumBodySize <= rest.count {
            let candidate = UnsafeRawBufferPointer(rebasing: rest[offset...])
            if FileRecord.startsValidFrame(
                candidate,
                minimumBodySize: FileRecord.minimumBodySize,
                maxRecordSize: maxRecordSize,
                decodingBody: true
            ) {
                return true
            }
            offset += 1
        }
        return false
    }

    /// Counts a stream change; returns what is wrong with its sequence (a change before it is
    /// missing, or it is there twice), if anything. Records written before format version 2 carry
    /// no sequence and are only counted.
    private mutating func countChange(_ sequence: UInt64?) -> String? {
        if let sequence, sequence != self.changes {
            return "stream change \(sequence), expected \(self.changes)"
        }
        self.changes += 1
        return nil
    }

    /// Adds a verified record to the index; returns what is inconsistent about it, if anything.
    private mutating func index(_ record: FileRecord, segment: Int, offset: Int, size: Int) -> String? {
        switch record {
        case .event(let event, _):
            let expectedPosition = UInt64(self.locations.count)
            guard event.position == expectedPosition else {
                return "event at position \(event.position), expected \(expectedPosition)"
            }
            var stream = self.streams[event.stream] ?? FileEventStore.CommittedStream()
            let expectedVersion = UInt64(stream.positions.count)
            guard event.version == expectedVersion else {
                return "\(event.stream) event at version \(event.version), expected \(expectedVersion)"
            }
            stream.positions.append(event.position)
            stream.isDeleted = false
            self.streams[event.stream] = stream
            self.locations.append(FileEventStore.Location(segment: segment, offset: offset, size: size))
        case .streamMetadata(let stream, let metadata, let sequence):
            if let problem = self.countChange(sequence) { return problem }
            self.streams[stream, default: FileEventStore.CommittedStream()].metadata = metadata
        case .streamDeleted(let stream, let truncateBefore, let sequence):
            if let problem = self.countChange(sequence) { return problem }
            var entry = self.streams[stream] ?? FileEventStore.CommittedStream()
            entry.isDeleted = true
            entry.metadata.truncateBefore = truncateBefore
            self.streams[stream] = entry
        }
        return nil
    }
}
