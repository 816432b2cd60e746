/// A ``FileStateStore``'s writer thread: writes queued commits in queue order, syncs per the
/// durability policy, applies them to the entries readers see, resumes the committers, and
/// compacts when the file has grown past its live entries.
struct StateWriter: Sendable {
    typealias State = FileStateStore.State

    let state: ConditionLock<State>
    let configuration: FileStateStore.Configuration
    let directory: String
    let markFile: FileDescriptor
    let firstMarkSequence: UInt64

    /// How many bytes of commits the writer appends between two high-water marks.
    static let markInterval = 1 << 20
    /// How long the writer waits for stragglers before a group commit (see ``FileEventStore``'s).
    static let gatherTimeout = Duration.microseconds(200)

    private final class Progress {
        var markSequence: UInt64
        var bytesSinceMark = 0
        /// No automatic compaction before the file reaches this size (after one failed).
        var compactionFloor = 0

        init(markSequence: UInt64) {
            self.markSequence = markSequence
        }
    }

    func run() {
        let progress = Progress(markSequence: self.firstMarkSequence)
        var lastBatch = 0
        defer { if progress.bytesSinceMark > 0 { self.writeMark(progress) } }
        while true {
            let queued = self.state.wait(until: Self.hasWork) { $0.queue.count }
            if self.configuration.durability == .groupCommit, queued > 0, queued < lastBatch {
                self.state.wait(until: { $0.queue.count >= lastBatch || $0.isClosing }, timeout: Self.gatherTimeout)
            }
            let (batch, requests) = self.state.wait(until: Self.hasWork) { state in
                var batch: [FileStateStore.Pending] = []
                if self.configuration.durability == .fsyncEachAppend, !state.queue.isEmpty {
                    batch = [state.queue.removeFirst()]
                } else {
                    batch = state.queue
                    state.queue.removeAll(keepingCapacity: true)
                }
                // Requests wait for the commits queued before them, then compact.
                let requests = batch.isEmpty || state.queue.isEmpty ? state.compactionRequests : []
                if !requests.isEmpty { state.compactionRequests.removeAll() }
                return (batch, requests)
            }
            if batch.isEmpty && requests.isEmpty {
                return  // closing, and drained
            }
            lastBatch = batch.count
            if !batch.isEmpty { self.write(batch, progress) }
            let due = self.state.withLock { state in
                state.failure == nil
                    && state.fileSize >= max(progress.compactionFloor, self.configuration.compactionMinimumBytes)
                    && Double(state.fileSize) > self.configuration.compactionRatio
                        * Double(state.index.liveBytes + StateFile.headerSize)
            }
            if due || !requests.isEmpty {
                let result = self.compact(progress)
                if case .failure = result, due {
                    let size = self.state.withLock { $0.fileSize }
                    progress.compactionFloor = size * 2
                }
                for request in requests { request.resume(returning: result) }
            }
        }
    }

    private static func hasWork(_ state: State) -> Bool {
        !state.queue.isEmpty || !state.compactionRequests.isEmpty || state.isClosing
    }

    /// Writes `batch` as one `pwrite` and syncs it; applies it and resumes its committers, or cuts
    /// the file back and fails the store.
    private func write(_ batch: [FileStateStore.Pending], _ progress: Progress) {
        let (file, size, sequence, failure) = self.state.withLock { ($0.file, $0.fileSize, $0.sequence, $0.failure) }
        if let failure {
            for pending in batch { pending.continuation.resume(returning: .failure(failure)) }
            return
        }
        guard let file else { preconditionFailure("the state store's writer runs without a file") }
        var buffer: [UInt8] = []
        var next = sequence
        /// Where each body starts in the file.
        var bodyOffsets: [Int] = []
        bodyOffsets.reserveCapacity(batch.count)
        for pending in batch {
            next += 1
            var body = pending.body
            withUnsafeBytes(of: next.littleEndian) { bytes in
                for index in 0..<8 { body[1 + index] = bytes[index] }
            }
            bodyOffsets.append(size + buffer.count + FileRecord.frameHeaderSize)
            FileRecord.appendFrame(of: body, to: &buffer)
        }
        do throws(EventStoreError) {
            try self.write(buffer, to: file.descriptor, at: size)
            if self.configuration.durability != .none { try self.sync(file.descriptor) }
        } catch {
            // Nothing of a failed batch may stay: cut back to the last commit (best effort; if
            // this fails too, the next open cuts the torn record).
            if (try? file.descriptor.truncate(to: size)) != nil { _ = try? file.descriptor.sync() }
            let failure = FileStateStore.error(error, namespace: batch.first?.operations.first?.namespace ?? "")
            let stranded = self.state.withLock { state in
                state.failure = failure
                defer {
                    state.queue.removeAll()
                    state.compactionRequests.removeAll()
                }
                return (state.queue.map(\.continuation), state.compactionRequests)
            }
            for pending in batch { pending.continuation.resume(returning: .failure(failure)) }
            for continuation in stranded.0 + stranded.1 { continuation.resume(returning: .failure(failure)) }
            return
        }
        self.state.withLock { state in
            for (pending, bodyOffset) in zip(batch, bodyOffsets) {
                for (namespace, operations) in pending.operations {
                    state.index.apply(operations.map { Self.moved($0, by: bodyOffset) }, in: namespace)
                }
            }
            state.fileSize = size + buffer.count
            state.sequence = next
        }
        for pending in batch { pending.continuation.resume(returning: .success(())) }
        progress.bytesSinceMark += buffer.count
        if progress.bytesSinceMark >= Self.markInterval {
            self.writeMark(progress)
        }
    }

    /// Records how far the current file reaches, after syncing it when commits are not synced
    /// anyway. A failure here fails the store, as a failed commit would.
    private func writeMark(_ progress: Progress) {
        let (file, generation, size, sequence, failed) = self.state.withLock {
            ($0.file, $0.generation, $0.fileSize, $0.sequence, $0.failure != nil)
        }
        guard let file = file?.descriptor, !failed else { return }
        progress.markSequence += 1
        progress.bytesSinceMark = 0
        let mark = FileStateStore.mark(
            sequence: progress.markSequence,
            generation: generation,
            size: size,
            batches: sequence
        )
        do throws(EventStoreError) {
            if self.configuration.durability == .none { try self.sync(file) }
            try mark.write(to: self.markFile)
        } catch {
            let failure = FileStateStore.error(error, namespace: "")
            self.state.withLock { $0.failure = failure }
        }
    }

    /// Writes the next generation from the live entries, marks it, and removes the current one.
    /// On failure the current generation stays in use and the partial new file is removed.
    ///
    /// The values are copied from the current file, namespace by namespace in the order of their
    /// offsets, through a window of ``StateFileReader/windowSize`` bytes; the next generation's
    /// index is built from the chunks as they are written and replaces the current one, with the
    /// file, in one step under the lock. Reads that took the current file before go on with it:
    /// it is closed when the last of them lets it go.
    private func compact(_ progress: Progress) -> Result<Void, KeyValueStoreError> {
        let (old, generation, index, sequence, oldSize, failure) = self.state.withLock {
            ($0.file, $0.generation, $0.index, $0.sequence, $0.fileSize, $0.failure)
        }
        if let failure { return .failure(failure) }
        guard let old else { preconditionFailure("the state store's writer runs without a file") }
        let next = generation + 1
        let path = self.directory + "/" + StateFile.name(generation: next)
        var created: FileDescriptor?
        do throws(EventStoreError) {
            let file = try StateFile.create(generation: next, directory: self.directory)
            created = file
            var size = StateFile.headerSize
            var buffer: [UInt8] = []
            var nextIndex = StateIndex()
            /// The current entries of the chunk being filled, in order.
            var copied: [StateIndex.Entry] = []
            func emit(_ body: [UInt8]) throws(EventStoreError) {
                let bodyOffset = size + buffer.count + FileRecord.frameHeaderSize
                let record = body.withUnsafeBytes { try? StateFile.index($0, at: bodyOffset) }
                switch record {
                case .snapshot(_, _, let entries):
                    precondition(entries.count == copied.count, "a snapshot chunk of other entries than were copied")
                    for ((namespace, key, entry), current) in zip(entries, copied) {
                        // The checksum of the copy is the one the index held: the bytes read are
                        // those that were written.
                        guard current.isInline || entry.checksum == current.checksum else {
                            throw EventStoreError(
                                code: .corrupted,
                                message:
                                    "\(old.descriptor.path)@\(current.offset): the \(current.length)-byte value of \(key) in \(namespace) fails its checksum"
                            )
                        }
                        nextIndex.apply([.put(key: key, entry: entry)], in: namespace)
                    }
                    copied.removeAll(keepingCapacity: true)
                case .snapshotEnd:
                    break
                case .batch, nil:
                    preconditionFailure("a snapshot body that does not decode as a snapshot")
                }
                FileRecord.appendFrame(of: body, to: &buffer)
                if buffer.count >= 4 * StateFile.snapshotChunkSize {
                    try self.write(buffer, to: file, at: size)
                    size += buffer.count
                    buffer.removeAll(keepingCapacity: true)
                }
            }
            let reader = StateFileReader(old.descriptor, size: oldSize)
            var snapshot = StateFile.SnapshotWriter(sequence: sequence)
            for namespace in index.namespaces.keys.sorted() {
                let entries = index.namespaces[namespace]!.sorted {
                    ($0.value.isInline ? -1 : $0.value.offset) < ($1.value.isInline ? -1 : $1.value.offset)
                }
                for (key, entry) in entries {
                    let value: [UInt8]
                    if entry.isInline {
                        value = entry.inlineValue
                    } else {
                        value = Array(try reader.bytes(at: entry.offset, count: entry.length))
                        guard value.count == entry.length else {
                            throw EventStoreError(
                                code: .corrupted,
                                message:
                                    "\(old.descriptor.path)@\(entry.offset): the file ends before the \(entry.length)-byte value of \(key) in \(namespace)"
                            )
                        }
                    }
                    copied.append(entry)
                    try snapshot.append(namespace: namespace, key: key, value: value, emit)
                }
            }
            try snapshot.finish(emit)
            try self.write(buffer, to: file, at: size)
            size += buffer.count
            try self.sync(file)
            try FileDescriptor.syncDirectory(self.directory)
            // From the mark on, recovery expects the new generation whole.
            progress.markSequence += 1
            progress.bytesSinceMark = 0
            do throws(EventStoreError) {
                try FileStateStore.mark(
                    sequence: progress.markSequence,
                    generation: next,
                    size: size,
                    batches: sequence
                )
                .write(to: self.markFile)
            } catch {
                // The mark naming the new generation may be on disk although its write failed:
                // keep that generation (it is whole, and recovery prefers it) and fail the store,
                // as a failed mark does.
                file.close()
                created = nil
                let failure = FileStateStore.error(error, namespace: "")
                self.state.withLock { $0.failure = failure }
                return .failure(failure)
            }
            let handle = StateFileHandle(file)
            self.state.withLock { state in
                state.file = handle
                state.index = nextIndex
                state.generation = next
                state.fileSize = size
                state.compactions += 1
            }
            created = nil
            // The old generation is a whole copy from here on; recovery removes it if this fails.
            // Its descriptor closes when the last read using it is done.
            try? FileDescriptor.remove(self.directory + "/" + StateFile.name(generation: generation))
            try? FileDescriptor.syncDirectory(self.directory)
            return .success(())
        } catch {
            if let created {
                created.close()
                try? FileDescriptor.remove(path)
            }
            return .failure(FileStateStore.error(error, namespace: ""))
        }
    }

    private static func moved(_ operation: StateIndex.Operation, by distance: Int) -> StateIndex.Operation {
        switch operation {
        case .put(let key, let entry): .put(key: key, entry: entry.moved(by: distance))
        case .delete, .deleteAll: operation
        }
    }

    private func write(_ buffer: [UInt8], to file: FileDescriptor, at offset: Int) throws(EventStoreError) {
        guard !buffer.isEmpty else { return }
        if let fault = self.configuration.faults?.nextWrite(count: buffer.count) {
            if fault.keepingBytes > 0 { try file.write(Array(buffer.prefix(fault.keepingBytes)), at: offset) }
            throw FileDescriptor.failure("pwrite (injected)", file.path, errno: fault.code)
        }
        try file.write(buffer, at: offset)
    }

    private func sync(_ file: FileDescriptor) throws(EventStoreError) {
        if let code = self.configuration.faults?.nextSync() {
            throw FileDescriptor.failure("fsync (injected)", file.path, errno: code)
        }
        try file.sync()
    }
}
