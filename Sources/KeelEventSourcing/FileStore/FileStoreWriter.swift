/// The file store's writer thread: takes queued appends, writes them in queue order (which is
/// position order), syncs per the durability policy, publishes them to readers, and resumes the
/// appenders.
struct Writer: Sendable {
    typealias State = FileEventStore.State

    let state: ConditionLock<State>
    let configuration: FileEventStore.Configuration
    let directory: String
    /// The open `HIGHWATER` file, and the sequence of the mark written on open.
    let markFile: FileDescriptor
    let firstMarkSequence: UInt64

    /// How many bytes of log the writer appends between two high-water marks; a mark is also
    /// written after every batch that starts a segment, and when the store closes.
    static let markInterval = 1 << 20

    /// How far ahead of its records the writer keeps the last segment filled with zeros, when
    /// appends are synced. Overwriting blocks that are already on disk lets an `fsync` flush the
    /// data alone; appending past the end of the file makes each one also commit the file's new
    /// size and blocks to the file system's journal (on ext4 about 95 µs against 125 µs per
    /// 2 KiB append on the project's machine). The fill is written, and synced with the batch,
    /// once per this many bytes of records.
    static let zeroAhead = 1 << 20

    /// How long the writer waits for stragglers before a group commit (see ``run()``).
    static let gatherTimeout = Duration.microseconds(200)

    /// Writes batches until the store closes and the queue is drained.
    ///
    /// Group commit gathers: when fewer appends are queued than the last batch held, the appenders
    /// of that batch are most likely about to queue their next append (their tasks were resumed a
    /// moment ago), so the writer waits up to ``gatherTimeout`` — a fraction of one `fsync` — for
    /// the queue to reach the last batch's size. A lone appender never waits (its batches hold
    /// one append); sixteen concurrent ones share one `fsync` instead of trickling in two by two.
    func run() {
        var lastBatch = 0
        var markSequence = self.firstMarkSequence
        var markedSegment = self.state.withLock { $0.segments.count - 1 }
        var bytesSinceMark = 0
        var buffer: [UInt8] = []
        defer {
            if bytesSinceMark > 0 { _ = self.writeMark(sequence: markSequence + 1, syncingFrom: markedSegment) }
        }
        while true {
            let queued = self.waitForAppends()
            if self.configuration.durability == .groupCommit, queued > 0, queued < lastBatch {
                self.gather(lastBatch, timeout: Self.gatherTimeout)
            }
            let batch = self.state.withLock { state -> [FileEventStore.Pending]? in
                // A gather that timed out leaves its count behind.
                state.writerWaitsFor = 0
                guard !state.queue.isEmpty else { return nil }  // closing, and drained
                if self.configuration.durability == .fsyncEachAppend {
                    return [state.queue.removeFirst()]
                }
                defer { state.queue.removeAll(keepingCapacity: true) }
                return state.queue
            }
            guard let batch else { return }
            lastBatch = batch.count
            guard let written = self.write(batch, buffer: &buffer) else { continue }
            bytesSinceMark += written.bytes
            if written.startedSegment || bytesSinceMark >= Self.markInterval {
                markSequence += 1
                bytesSinceMark = 0
                markedSegment = self.writeMark(sequence: markSequence, syncingFrom: markedSegment)
            }
        }
    }

    /// Sleeps until an append is queued or the store is closing.
    /// - Returns: How many appends are queued.
    private func waitForAppends() -> Int {
        let isReady = { (state: State) in !state.queue.isEmpty || state.isClosing }
        if let queued = self.queued(ifReady: isReady, elseWaitingFor: 1) { return queued }
        return self.state.wait(until: isReady) { $0.queue.count }
    }

    /// Sleeps until `count` appends are queued, the store is closing, or `timeout` has passed.
    private func gather(_ count: Int, timeout: Duration) {
        let isReady = { (state: State) in state.queue.count >= count || state.isClosing }
        guard self.queued(ifReady: isReady, elseWaitingFor: count) == nil else { return }
        self.state.wait(until: isReady, timeout: timeout)
    }

    /// The number of queued appends if `isReady`; otherwise `nil`, and the writer is about to sleep
    /// until `count` appends are queued: only the append that reaches that count signals it (see
    /// `State.enqueue(_:)`), so that the appends of a batch do not wake it one by one.
    private func queued(ifReady isReady: (State) -> Bool, elseWaitingFor count: Int) -> Int? {
        self.state.withLock { state in
            guard !isReady(state) else { return state.queue.count }
            state.writerWaitsFor = count
            return nil
        }
    }

    /// Records how far the log reaches. When appends are not synced anyway
    /// (``FileEventStore/Durability/none``), the segments written since the last mark (from
    /// `first` on) are synced first, so that a mark never claims more than is on disk. A failure
    /// here fails the store as a failed append would.
    /// - Returns: The last segment's index, where the next mark's syncing starts.
    private func writeMark(sequence: UInt64, syncingFrom first: Int) -> Int {
        let (segments, events, changes, failed) = self.state.withLock {
            ($0.segments, $0.committedHead, $0.committedChanges, $0.failure != nil)
        }
        guard let last = segments.last, !failed else { return first }
        let mark = HighWaterMark(
            sequence: sequence,
            segment: segments.count - 1,
            segmentSize: last.size,
            events: events,
            changes: changes
        )
        do throws(EventStoreError) {
            if self.configuration.durability == .none {
                for segment in segments[max(0, first)...] { try segment.descriptor.sync() }
            }
            try mark.write(to: self.markFile)
        } catch {
            self.fail([], with: error, segments: segments)
        }
        return segments.count - 1
    }

    /// Writes a batch; returns the bytes written and whether a segment was started, or `nil` when
    /// the batch failed. `buffer` is empty on return; it is the writer's, kept with its capacity
    /// from batch to batch.
    private func write(
        _ batch: [FileEventStore.Pending],
        buffer: inout [UInt8]
    ) -> (bytes: Int, startedSegment: Bool)? {
        var segments = self.state.withLock { $0.segments }
        // Where the log ended before this batch: a failed batch is cut back to it.
        let committedSegments = segments.count
        let committedSize = segments.last?.size ?? 0
        // Every record's location, in batch order.
        var locations: [FileEventStore.Location] = []
        locations.reserveCapacity(batch.reduce(0) { $0 + $1.bodies.count })
        do throws(EventStoreError) {
            guard !segments.isEmpty else { throw FileEventStore.closedError }
            let sync = self.configuration.durability != .none
            for pending in batch {
                // An append never spans two segments: when it does not fit in what is left of the
                // current one, it starts a new one (alone, if it is larger than a segment), so that
                // recovery finds every append whole in one file.
                let appendSize = pending.bodies.reduce(0) { $0 + FileRecord.frameHeaderSize + $1.count }
                let used = segments[segments.count - 1].size + buffer.count
                if used + appendSize > self.configuration.segmentSize && used > SegmentHeader.size {
                    // Synced even when appends are not: a segment is whole on disk before the
                    // next one exists, so that a power loss can only tear the last segment. Its
                    // zero fill goes first: only the last segment has one.
                    try self.flush(&buffer, into: &segments[segments.count - 1], sync: sync, fillAhead: false)
                    try Self.seal(&segments[segments.count - 1], synced: sync)
                    segments.append(try SegmentHeader.create(index: segments.count, directory: self.directory))
                }
                let segment = segments.count - 1
                for body in pending.bodies {
                    let frameSize = FileRecord.frameHeaderSize + body.count
                    locations.append(
                        .init(segment: segment, offset: segments[segment].size + buffer.count, size: frameSize)
                    )
                    FileRecord.appendFrame(of: body, to: &buffer)
                }
            }
            try self.flush(&buffer, into: &segments[segments.count - 1], sync: sync)
        } catch {
            buffer.removeAll(keepingCapacity: true)
            Self.cutBack(&segments, toSegments: committedSegments, size: committedSize)
            self.fail(batch, with: error, segments: segments)
            return nil
        }
        let waiters = self.state.withLock { state in
            state.segments = segments
            var next = 0
            for pending in batch {
                Self.apply(pending.change, locations[next..<next + pending.bodies.count], to: &state)
                next += pending.bodies.count
            }
            return state.takeSatisfiedWaiters()
        }
        for pending in batch { pending.continuation.resume(returning: .success(pending.result)) }
        for waiter in waiters { waiter.resume() }
        let bytes = segments.count > committedSegments ? segments.last!.size : segments.last!.size - committedSize
        return (bytes, segments.count > committedSegments)
    }

    private func flush(
        _ buffer: inout [UInt8],
        into segment: inout FileEventStore.Segment,
        sync: Bool,
        fillAhead: Bool = true
    ) throws(EventStoreError) {
        guard !buffer.isEmpty else { return }
        let descriptor = segment.descriptor
        let offset = segment.size
        if let fault = self.configuration.faults?.nextWrite(count: buffer.count) {
            if fault.keepingBytes > 0 { try descriptor.write(Array(buffer.prefix(fault.keepingBytes)), at: offset) }
            throw FileDescriptor.failure("pwrite (injected)", descriptor.path, errno: fault.code)
        }
        try descriptor.write(buffer, at: offset)
        segment.size += buffer.count
        segment.fileSize = max(segment.fileSize, segment.size)
        buffer.removeAll(keepingCapacity: true)
        if sync {
            if fillAhead { try self.fillAhead(&segment) }
            if let code = self.configuration.faults?.nextSync() {
                throw FileDescriptor.failure("fsync (injected)", descriptor.path, errno: code)
            }
            try descriptor.sync()
        }
    }

    /// Keeps the segment's file filled with zeros at least ``zeroAhead`` / 2 bytes past its
    /// records, up to the segment size (see ``zeroAhead``). The zeros are synced with the batch
    /// just written.
    private func fillAhead(_ segment: inout FileEventStore.Segment) throws(EventStoreError) {
        let limit = self.configuration.segmentSize
        guard segment.fileSize - segment.size < Self.zeroAhead / 2, segment.fileSize < limit else { return }
        let end = min(limit, segment.size + Self.zeroAhead)
        guard end > segment.fileSize else { return }
        let zeros = [UInt8](repeating: 0, count: end - segment.fileSize)
        try segment.descriptor.write(zeros, at: segment.fileSize)
        segment.fileSize = end
    }

    /// Before the next segment is created: cuts a full segment's zero fill off, and syncs what
    /// `flush` did not (`synced`: its records are synced already).
    private static func seal(_ segment: inout FileEventStore.Segment, synced: Bool) throws(EventStoreError) {
        if segment.fileSize > segment.size {
            try segment.descriptor.truncate(to: segment.size)
            segment.fileSize = segment.size
        } else if synced {
            return
        }
        try segment.descriptor.sync()
    }

    /// After a failed batch, cuts the log back to where it ended before the batch, so that no
    /// part of a failed append stays on disk: the segment the batch started in is truncated to
    /// its old size, and segments the batch created are emptied to their header. Best effort: if
    /// the disk refuses this too, recovery on the next open drops any append left without its last
    /// record, and an append that reached the disk whole stays, although its caller was told it
    /// failed.
    private static func cutBack(_ segments: inout [FileEventStore.Segment], toSegments count: Int, size: Int) {
        guard count > 0 else { return }
        for index in (count - 1)..<segments.count {
            let keep = index == count - 1 ? size : SegmentHeader.size
            // Always truncate: a write that failed part-way left bytes past the size recorded.
            let descriptor = segments[index].descriptor
            if (try? descriptor.truncate(to: keep)) != nil { _ = try? descriptor.sync() }
            segments[index].size = keep
            segments[index].fileSize = keep
        }
    }

    /// A write or a sync failed: what reached the disk is unknown until the store is reopened, so
    /// the store refuses every further append with the same error.
    private func fail(
        _ batch: [FileEventStore.Pending],
        with error: EventStoreError,
        segments: [FileEventStore.Segment]
    ) {
        let (stranded, waiters) = self.state.withLock { state in
            state.failure = error
            state.segments = segments
            defer {
                state.queue.removeAll()
                state.headWaiters.removeAll()
            }
            return (state.queue, state.headWaiters.values.map(\.continuation))
        }
        for pending in batch + stranded { pending.continuation.resume(returning: .failure(error)) }
        for waiter in waiters { waiter.resume() }
    }

    private static func apply(
        _ change: FileEventStore.Pending.Change,
        _ placed: ArraySlice<FileEventStore.Location>,
        to state: inout State
    ) {
        switch change {
        case .events(let stream, let firstVersion, let firstPosition):
            precondition(state.committedHead == firstPosition, "records committed out of position order")
            // Changed in place: a copy of the entry would share its positions with the dictionary,
            // and appending to them would copy all of the stream's positions on every append.
            state.streams[stream, default: FileEventStore.CommittedStream()].commit(
                firstVersion: firstVersion,
                positions: firstPosition..<firstPosition + UInt64(placed.count)
            )
            state.locations.append(contentsOf: placed)
        case .metadata(let stream, let metadata):
            state.streams[stream, default: FileEventStore.CommittedStream()].metadata = metadata
            state.committedChanges += 1
        case .deleted(let stream, let truncateBefore):
            state.streams[stream, default: FileEventStore.CommittedStream()].delete(truncateBefore: truncateBefore)
            state.committedChanges += 1
        }
    }
}
