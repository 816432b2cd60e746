import KeelCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A ``StateStore`` in a directory of its own: service state kept beside the event log, not in it.
///
/// **Format.** The directory holds `state-<generation>.log` files, a `STATEMARK` file and a
/// `LOCK` file. A generation file begins with a snapshot of every entry (in chunks of about
/// 1 MiB, then an end record that counts them) and goes on with one record per commit, each
/// checksummed like the event log's records and numbered with the next commit sequence. A commit
/// is one record written with one `pwrite`, so it is on disk whole or not at all.
///
/// **Compaction.** When the current file is larger than
/// ``Configuration/compactionRatio`` times the live entries (and at least
/// ``Configuration/compactionMinimumBytes``), or when ``compact()`` asks, the store writes the next
/// generation — a snapshot of the live entries, copied from the current file, synced, with its
/// directory entry synced — records it in `STATEMARK`, and removes the previous generation's file,
/// which frees its disk space. Commits wait while a compaction writes; reads do not: a read that
/// began on the previous file finishes on it (its descriptor closes when the last such read ends).
///
/// **Crashes and damage.** Opening finds the newest generation whose snapshot is whole (a newer
/// one that a crash cut short is a compaction that did not finish: it is removed and reported),
/// replays its commits and checks their sequence, so that a commit removed from the middle is
/// reported, not skipped. A damaged record is a torn tail, cut and reported in
/// ``recoveryReport``, only when no valid record follows it and it lies past the high-water mark
/// in `STATEMARK` (written, like ``FileEventStore``'s `HIGHWATER`, on open, after each compaction,
/// every MiB of commits and on close, each time after the bytes it covers were synced); anything
/// else fails the open with ``KeyValueStoreError/Code/corrupted``, naming the file and offset,
/// unless ``Configuration/recovery`` is ``FileEventStore/Recovery/repair``. A file that ends short
/// of the mark is reported the same way.
///
/// **Memory.** Values stay on disk. Memory holds an index with, per entry, its namespace and key
/// and 16 bytes: the value's offset in the current generation's file (8 bytes), its CRC-32C (4)
/// and its length (4). A value of at most 12 bytes is held in those 16 bytes instead
/// (``Statistics/inMemoryValueBytes`` counts them); a larger value is read with one `pread` and
/// checked against its checksum each time it is read. So the keys bound what fits, not the
/// values. Opening reads the current generation's file through a 4 MiB window, and compaction
/// copies values from the old file to the new one through the same window (it holds the old and
/// the new index while it writes); one commit may be up to ``Configuration/maxRecordSize`` and is
/// encoded in memory.
///
/// **Concurrency.** Commits from many tasks are written by one thread in queue order; with
/// ``FileEventStore/Durability/groupCommit`` the commits queued together share one `fsync`. A
/// second opener of the directory, in this process or another, fails with
/// ``KeyValueStoreError/Code/storeFailed`` (its cause: ``EventStoreError/Code/locked``).
///
/// ```swift
/// let state = try FileStateStore(directory: ".keel/data/state")
/// let checkpoints = state.namespace("checkpoints")
/// try await checkpoints.put([1, 0, 0, 0, 0, 0, 0, 0], forKey: "users-by-domain")
/// await state.close()
/// ```
public final class FileStateStore: StateStore {
    /// The name of the high-water mark's file.
    static let markFileName = "STATEMARK"

    /// The directory.
    public let directory: String
    /// The configuration the store was opened with.
    public let configuration: Configuration
    /// What opening found and cut.
    public let recoveryReport: RecoveryReport

    let state: ConditionLock<State>

    struct Pending {
        /// The batch record's body, its sequence left for the writer to fill in.
        var body: [UInt8]
        /// The body's writes, their entries' offsets counted from the body's first byte.
        var operations: [(namespace: String, operations: [StateIndex.Operation])]
        var continuation: CheckedContinuation<Result<Void, KeyValueStoreError>, Never>
    }

    struct State {
        var index: StateIndex
        var generation: UInt64
        /// The current generation's file: `nil` only once the store is released. Reads hold a
        /// reference while they read it; the last reference closes it.
        var file: StateFileHandle?
        /// The directory, `LOCK` and `STATEMARK`, held until the store is released; `nil` from then
        /// on (see ``FileStateStore/release()``).
        var files: StoreFiles?
        var fileSize: Int
        var sequence: UInt64
        var compactions = 0
        var queue: [Pending] = []
        var compactionRequests: [CheckedContinuation<Result<Void, KeyValueStoreError>, Never>] = []
        var failure: KeyValueStoreError?
        var isClosing = false
        /// The writer thread; taken (to be joined) by the first close.
        var writerThread: JoinableThread?
        /// Closes that found another close stopping the writer: resumed once it has released the
        /// store's files.
        var closeWaiters: [CheckedContinuation<Void, Never>] = []
    }

    /// Opens the store in `directory`, creating the directory and the first generation if
    /// needed, and recovers it (see the type's documentation).
    /// - Parameters:
    ///   - directory: The store's directory. Not the directory of a ``FileEventStore``: give each
    ///     its own (a host keeps its state in the `state` directory inside its event store's).
    ///   - configuration: Durability, recovery, compaction.
    ///   - telemetry: Where each cut that recovery makes is logged (source `keel.store`): a torn
    ///     tail at ``/KeelCore/LogLevel/warning``, damage cut by a repair at
    ///     ``/KeelCore/LogLevel/error``. By default nothing is logged; ``recoveryReport`` has the
    ///     cuts either way.
    /// - Throws: ``KeyValueStoreError``: ``KeyValueStoreError/Code/corrupted`` for damage that
    ///   strict recovery does not cut, ``KeyValueStoreError/Code/storeFailed`` when the directory
    ///   is locked by another opener or the system refuses.
    public init(
        directory: String,
        configuration: Configuration = Configuration(),
        telemetry: any Telemetry = NoOpTelemetry()
    ) throws(KeyValueStoreError) {
        guard configuration.maxRecordSize >= 64, configuration.maxRecordSize <= Int(UInt32.max),
            configuration.compactionRatio >= 1, configuration.compactionMinimumBytes >= 0
        else {
            throw KeyValueStoreError(
                code: .storeFailed,
                namespace: "",
                message: "maxRecordSize must be 64...\(UInt32.max) and compactionRatio at least 1"
            )
        }
        self.directory = directory
        self.configuration = configuration
        var opened: [FileDescriptor] = []
        do throws(EventStoreError) {
            try FileDescriptor.makeDirectory(directory)
            let directoryLock = try FileDescriptor.open(directory, flags: O_RDONLY | O_DIRECTORY)
            opened.append(directoryLock)
            let lockFile = try FileDescriptor.open(directory + "/LOCK", flags: O_RDWR | O_CREAT)
            opened.append(lockFile)
            guard try directoryLock.tryLock(), try lockFile.tryLock() else {
                throw EventStoreError(code: .locked, message: "\(directory) is open in another state store")
            }
            let recovery = try StateRecovery.run(directory: directory, configuration: configuration)
            guard let descriptor = recovery.descriptor else {
                preconditionFailure("recovery left no state file open")
            }
            let file = StateFileHandle(descriptor)
            let markFile = try FileDescriptor.open(directory + "/" + Self.markFileName, flags: O_RDWR | O_CREAT)
            opened.append(markFile)
            let markSequence = (recovery.mark?.sequence ?? 0) + 1
            try Self.mark(
                sequence: markSequence,
                generation: recovery.generation,
                size: recovery.size,
                batches: recovery.sequence
            ).write(to: markFile)
            if recovery.mark == nil { try FileDescriptor.syncDirectory(directory) }
            for cut in recovery.cuts { cut.log(to: telemetry, store: "state store", directory: directory) }
            self.recoveryReport = RecoveryReport(
                cuts: recovery.cuts,
                generation: recovery.generation,
                batches: recovery.sequence,
                entries: recovery.index.count
            )
            self.state = ConditionLock(
                State(
                    index: recovery.index,
                    generation: recovery.generation,
                    file: file,
                    files: StoreFiles(directory: directoryLock, lock: lockFile, mark: markFile),
                    fileSize: recovery.size,
                    sequence: recovery.sequence
                )
            )
            let writer = StateWriter(
                state: self.state,
                configuration: configuration,
                directory: directory,
                markFile: markFile,
                firstMarkSequence: markSequence
            )
            self.state.withLock { $0.writerThread = JoinableThread { writer.run() } }
        } catch {
            for descriptor in opened { descriptor.close() }
            throw Self.error(error, namespace: "")
        }
    }

    deinit {
        // A store that was closed has nothing left to release; one that was not is closed here.
        self.stopWriter()?.join()
        self.release()
    }

    /// Closes the store: finishes the commits (and compactions) queued before it, writes a last
    /// high-water mark, stops the writer thread, and closes every file descriptor the store holds
    /// — the current generation's file, `STATEMARK`, and the `LOCK` file and the directory, whose
    /// locks go with them, so that the directory can be opened again at once.
    ///
    /// When it returns, the store holds no descriptor, even while the object lives on (a service
    /// or a projection may keep a reference to it), with one exception: a read of a value on disk
    /// that is in flight at that moment keeps the generation's file open until it ends (the last
    /// such read closes it), so that no read uses a descriptor that was closed (or reused by
    /// another file) under it. Once it has been called, commits, compactions and
    /// ``value(forKey:in:)`` fail with ``KeyValueStoreError/Code/closed``; ``keys(withPrefix:in:)``,
    /// ``namespaces()`` and ``statistics``, which need no file, answer from the index as it was
    /// when the store closed.
    ///
    /// It blocks its thread while the writer finishes the queued commits (it does not suspend
    /// for them), and it is not cancellable. Calling it again, or concurrently, does nothing but
    /// wait until the first call has released the store's descriptors.
    public func close() async {
        guard let writer = self.stopWriter() else {
            await self.waitUntilReleased()
            return
        }
        writer.join()
        self.release()
    }

    /// Marks the store closing and wakes the writer, which drains its queue and returns.
    /// - Returns: The writer thread, for the first caller only, who joins it.
    private func stopWriter() -> JoinableThread? {
        let thread = self.state.withLock { state in
            state.isClosing = true
            defer { state.writerThread = nil }
            return state.writerThread
        }
        self.state.signal()
        return thread
    }

    /// Once the writer has stopped: refuses later commits, drops the store's reference to the
    /// current generation's file (which closes it, unless reads in flight hold it: then the last of
    /// them does), closes the files in ``State/files``, and resumes the closes waiting for this
    /// one. Runs once with effect: it takes what it closes out of the state, and a second run finds
    /// nothing.
    private func release() {
        let (files, waiters) = self.state.withLock { state in
            if state.failure == nil { state.failure = Self.closedError(namespace: "") }
            // As when compaction replaces the file: if no read holds it, the handle closes it here.
            state.file = nil
            defer {
                state.files = nil
                state.closeWaiters = []
            }
            return (state.files, state.closeWaiters)
        }
        files?.close()
        for waiter in waiters { waiter.resume() }
    }

    /// Waits until the close that stopped the writer has released the store's files (at once if
    /// it has). Not cancellable: that close only finishes the commits queued before it.
    private func waitUntilReleased() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let isReleased = self.state.withLock { state -> Bool in
                guard state.files == nil else {
                    state.closeWaiters.append(continuation)
                    return false
                }
                return true
            }
            if isReleased { continuation.resume() }
        }
    }

    static func closedError(namespace: String) -> KeyValueStoreError {
        KeyValueStoreError(code: .closed, namespace: namespace, message: "the state store is closed")
    }

    // MARK: StateStore

    /// The value under `key` in `namespace`; see ``StateStore/value(forKey:in:)``.
    ///
    /// A value of at most 12 bytes is answered from memory. A larger one is read from the current
    /// generation's file with one `pread`, on the calling thread and without the store's lock
    /// (it does not suspend), and checked against the CRC-32C the index holds for it: a value
    /// whose bytes changed on disk is never returned. Reads run concurrently with each other, with
    /// commits, with compaction and with ``close()``: a read that took the file before the store
    /// closed finishes on it (the file closes when the last such read ends); a read that comes
    /// after ``close()`` was called fails with ``KeyValueStoreError/Code/closed``.
    /// - Parameters:
    ///   - key: The key.
    ///   - namespace: The namespace.
    /// - Returns: The value, or `nil`.
    /// - Throws: ``KeyValueStoreError``: ``KeyValueStoreError/Code/corrupted`` when the value's
    ///   bytes on disk fail their checksum or the file ends before them (the message names the
    ///   file and offset; reopening reports the damaged record), ``KeyValueStoreError/Code/storeFailed``
    ///   when the system refuses the read, ``KeyValueStoreError/Code/closed`` once ``close()`` was
    ///   called.
    public func value(forKey key: String, in namespace: String) throws(KeyValueStoreError) -> [UInt8]? {
        let (entry, file) = try self.state.withLock { state throws(KeyValueStoreError) in
            guard !state.isClosing else { throw Self.closedError(namespace: namespace) }
            return (state.index.entry(forKey: key, in: namespace), state.file)
        }
        guard let entry else { return nil }
        if entry.isInline { return entry.inlineValue }
        guard let file else { preconditionFailure("a state store read without a file") }
        self.configuration.faults?.beforeRead()
        return try file.value(of: entry, namespace: namespace, key: key)
    }

    /// The keys of `namespace` starting with `prefix`, sorted; see
    /// ``StateStore/keys(withPrefix:in:)``.
    /// - Parameters:
    ///   - prefix: The prefix.
    ///   - namespace: The namespace.
    /// - Returns: The keys.
    public func keys(withPrefix prefix: String, in namespace: String) -> [String] {
        let keys = self.state.withLock { $0.index.keys(in: namespace) }
        return keys.filter { $0.hasPrefix(prefix) }.sorted()
    }

    /// The namespaces that hold a key, sorted.
    /// - Returns: The namespaces.
    public func namespaces() -> [String] {
        self.state.withLock { Array($0.index.namespaces.keys) }.sorted()
    }

    /// Writes `changes` as one record and returns once it is durable per
    /// ``Configuration/durability``; see ``StateStore/commit(_:)``.
    ///
    /// Once queued, a commit completes even if the calling task is cancelled. After a write or
    /// an `fsync` fails, the store cuts its file back to the last commit and refuses every later
    /// commit with the same error: reopen it.
    /// - Parameter changes: The writes.
    /// - Throws: ``KeyValueStoreError``.
    public func commit(_ changes: StateChanges) async throws(KeyValueStoreError) {
        if changes.isEmpty { return }
        let namespace = changes.batches.first?.namespace ?? ""
        let body = StateFile.batchBody(sequence: 0, changes: changes)
        guard body.count <= self.configuration.maxRecordSize else {
            throw KeyValueStoreError(
                code: .tooLarge,
                namespace: namespace,
                message:
                    "a commit of \(body.count) bytes is larger than maxRecordSize (\(self.configuration.maxRecordSize))"
            )
        }
        let operations: [(namespace: String, operations: [StateIndex.Operation])]
        do {
            guard case .batch(_, let changes) = try body.withUnsafeBytes({ try StateFile.index($0, at: 0) }) else {
                preconditionFailure("a batch body that does not decode as a batch")
            }
            operations = changes
        } catch {
            preconditionFailure("a batch body that does not decode: \(error)")
        }
        let result = await withCheckedContinuation { continuation in
            let refused = self.state.withLock { state -> KeyValueStoreError? in
                if let failure = state.failure { return failure }
                if state.isClosing { return Self.closedError(namespace: namespace) }
                state.queue.append(Pending(body: body, operations: operations, continuation: continuation))
                return nil
            }
            if let refused {
                continuation.resume(returning: .failure(refused))
            } else {
                self.state.signal()
            }
        }
        try result.get()
    }

    /// Writes the next generation now — a snapshot of the live entries — and removes the current
    /// one, whatever ``Configuration/compactionRatio`` says.
    ///
    /// Commits queued before it are written first; commits that arrive meanwhile wait for it.
    /// Like ``commit(_:)``, it completes once called.
    /// - Throws: ``KeyValueStoreError``: ``KeyValueStoreError/Code/closed``, or
    ///   ``KeyValueStoreError/Code/storeFailed`` when the disk refuses (the current generation
    ///   stays whole and in use).
    public func compact() async throws(KeyValueStoreError) {
        let result = await withCheckedContinuation { continuation in
            let refused = self.state.withLock { state -> KeyValueStoreError? in
                if let failure = state.failure { return failure }
                if state.isClosing { return Self.closedError(namespace: "") }
                state.compactionRequests.append(continuation)
                return nil
            }
            if let refused {
                continuation.resume(returning: .failure(refused))
            } else {
                self.state.signal()
            }
        }
        try result.get()
    }

    /// The store's size on disk and in memory, for monitoring and benchmarks.
    public var statistics: Statistics {
        self.state.withLock { state in
            Statistics(
                generation: state.generation,
                fileBytes: state.fileSize,
                liveBytes: state.index.liveBytes,
                inMemoryValueBytes: state.index.inlineValueBytes,
                entries: state.index.count,
                commits: state.sequence,
                compactions: state.compactions
            )
        }
    }

    static func mark(sequence: UInt64, generation: UInt64, size: Int, batches: UInt64) -> HighWaterMark {
        HighWaterMark(sequence: sequence, segment: Int(generation), segmentSize: size, events: batches, changes: 0)
    }

    static func error(_ error: EventStoreError, namespace: String) -> KeyValueStoreError {
        if error.code == .corrupted {
            return KeyValueStoreError(code: .corrupted, namespace: namespace, message: error.message)
        }
        return KeyValueStoreError(code: .storeFailed, namespace: namespace, message: error.message, cause: error)
    }
}
