import KeelCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A durable ``EventStore`` in a directory of checksummed, append-only segment files.
///
/// ```swift
/// let store = try FileEventStore(directory: "data/events")
/// try await store.append(events, to: "user-42", expecting: .noStream)   // durable when it returns
/// …
/// await store.close()
/// ```
///
/// ## Files
///
/// The directory holds `segment-<n>.log` files (`n` = 0, 1, 2, … in 16 digits), a `LOCK` file
/// and a `HIGHWATER` file (how far the log is known to have reached on disk, which recovery checks
/// the log against).
/// Each segment starts with a 32-byte versioned header and holds records framed as
/// `[length][CRC-32C][body]`; a record is an event (stream, version, global position, type,
/// schema version, metadata, payload) or a stream change (metadata, deletion). Every event record
/// but the last of its append is marked as followed by more of the same append, and recovery
/// drops an append whose last record is missing, so an append is on disk whole or not at all,
/// across crashes, short writes, `ENOSPC` and `EIO` (see <doc:FileStoreDurability>). An append
/// that does not fit in what is left of the current segment starts a new one (it never spans two
/// files; see ``Configuration/segmentSize``); a new segment's file and the directory are synced
/// before any record goes into it. When appends are synced, the last segment is kept filled with
/// zeros up to 1 MiB past its last record, so that each `fsync` overwrites blocks already on disk;
/// recovery reads zeros from a record boundary on as the end of the log.
///
/// ## Durability
///
/// Appends go to one writer thread (blocking `write` and `fsync` never occupy the Swift
/// cooperative pool). With ``Durability/groupCommit`` (the default) the appends that queue up
/// while a sync is in progress are written with one `write` and synced with one `fsync`; every
/// append returns only after its records are synced. Records are encoded by the appending task
/// before it takes the store's lock; under the lock it only checks the expected version and
/// assigns versions and positions. Readers and subscriptions see an event only once it is
/// durable; an append that conflicts with appends still being synced gets its
/// ``EventStoreError/Code/wrongExpectedVersion`` once they are durable, so that reloading after
/// the error sees the version that caused it. If a write or a sync fails, the store stops accepting appends (every later append
/// fails with the same ``EventStoreError/Code/io`` error): reopen it, and recovery finds what
/// reached the disk.
///
/// ## Recovery
///
/// Opening verifies every header and record checksum and rebuilds the index (stream → versions →
/// file offsets), so that reading one stream never scans the log. An incomplete or bad record at
/// the end of the last segment — a write interrupted by a crash — is cut off and reported in
/// ``recoveryReport``. Damage anywhere else fails the open with ``EventStoreError/Code/corrupted``
/// naming the file and the offset, unless the store is opened with ``Recovery/repair``, which
/// truncates there, removes later segments and reports exactly what it dropped. A length field
/// above ``Configuration/maxRecordSize`` or past the end of the file is rejected before anything
/// is allocated for it.
///
/// ## Exclusivity
///
/// Advisory locks on the directory itself and on its `LOCK` file make a second opener of the same
/// directory (in this process or another) fail with ``EventStoreError/Code/locked``; deleting the
/// `LOCK` file under an open store does not let a second writer in, since the directory stays
/// locked. ``close()`` releases both, with every other descriptor of the store.
public final class FileEventStore: EventStore {
    /// The directory the store lives in.
    public let directory: String
    /// The configuration the store was opened with.
    public let configuration: Configuration
    /// What opening found and changed: torn tails cut, damage repaired.
    public let recoveryReport: RecoveryReport

    let state: ConditionLock<State>

    /// Where a record is.
    struct Location: Sendable {
        var segment: Int
        var offset: Int
        var size: Int
    }

    /// A stream as readers see it: durable events only.
    struct CommittedStream: Sendable {
        var positions: [UInt64] = []
        var isDeleted = false
        var metadata = StreamMetadata()

        var lastVersion: UInt64? { self.positions.isEmpty ? nil : UInt64(self.positions.count - 1) }
        var currentVersion: UInt64? { self.isDeleted ? nil : self.lastVersion }

        /// Records that the events at `positions` were committed as versions from `firstVersion` on.
        mutating func commit(firstVersion: UInt64, positions: Range<UInt64>) {
            precondition(UInt64(self.positions.count) == firstVersion, "records committed out of version order")
            self.positions.append(contentsOf: positions)
            self.isDeleted = false
        }

        /// Records a committed soft deletion.
        mutating func delete(truncateBefore: UInt64) {
            self.isDeleted = true
            self.metadata.truncateBefore = truncateBefore
        }
    }

    /// A stream as writers see it: including appends that are queued but not yet durable.
    struct AssignedStream: Sendable {
        var nextVersion: UInt64 = 0
        var isDeleted = false

        var currentVersion: UInt64? { self.isDeleted || self.nextVersion == 0 ? nil : self.nextVersion - 1 }
    }

    /// One append (or stream change) waiting for the writer.
    struct Pending: Sendable {
        enum Change: Sendable {
            case events(StreamID, firstVersion: UInt64, firstPosition: UInt64)
            case metadata(StreamID, StreamMetadata)
            case deleted(StreamID, truncateBefore: UInt64)
        }

        var bodies: [[UInt8]]
        var change: Change
        var result: AppendResult
        var continuation: CheckedContinuation<Result<AppendResult, EventStoreError>, Never>
    }

    struct Segment: Sendable {
        var descriptor: FileDescriptor
        /// Where the segment's records end: the offset of the next record.
        var size: Int
        /// Where the file ends. Past `size` it holds only zeros: the writer fills the last
        /// segment ahead of its records (see `Writer.zeroAhead`), and recovery reads zeros from a
        /// record boundary to the end of the last segment as that fill, not as a torn tail.
        var fileSize: Int

        init(descriptor: FileDescriptor, size: Int, fileSize: Int? = nil) {
            self.descriptor = descriptor
            self.size = size
            self.fileSize = max(size, fileSize ?? size)
        }
    }

    struct State: Sendable {
        var segments: [Segment]
        /// The directory, `LOCK` and `HIGHWATER`, held until the store is released; `nil` from then
        /// on (see ``FileEventStore/release()``).
        var files: StoreFiles?
        var locations: [Location]
        var streams: [StreamID: CommittedStream]
        var assigned: [StreamID: AssignedStream]
        var assignedHead: UInt64
        var queue: [Pending] = []
        var failure: EventStoreError?
        var isClosing = false
        /// Reads between taking their descriptors and finishing with them.
        var readers = 0
        /// Segments that ``FileEventStore/close()`` took while reads were in flight: the last read
        /// to finish closes them, so that no read uses a descriptor that was closed (or reused by
        /// another file) under it.
        var closedWhileReading: [Segment] = []
        var headWaiters: [UInt64: (head: UInt64, continuation: CheckedContinuation<Void, Never>)] = [:]
        var nextWaiterID: UInt64 = 0
        /// How many queued appends the sleeping writer waits for; 0 while it is not asleep waiting
        /// for appends. Only the append that reaches it signals the writer: while the writer
        /// gathers a batch, the appends before the last one do not wake it for nothing.
        var writerWaitsFor = 0
        /// The writer thread; taken (to be joined) by the first close.
        var writerThread: JoinableThread?
        /// Closes that found another close stopping the writer: resumed once it has released the
        /// store's files.
        var closeWaiters: [CheckedContinuation<Void, Never>] = []

        /// Stream changes (metadata and deletion records) numbered so far, and written so far.
        var assignedChanges: UInt64 = 0
        var committedChanges: UInt64 = 0

        var committedHead: UInt64 { UInt64(self.locations.count) }

        /// The sequence of the next stream change record.
        mutating func takeChangeSequence() -> UInt64 {
            defer { self.assignedChanges += 1 }
            return self.assignedChanges
        }

        /// Queues an append for the writer.
        /// - Returns: Whether the writer sleeps until this append: the caller signals it after
        ///   releasing the lock.
        mutating func enqueue(_ pending: Pending) -> Bool {
            self.queue.append(pending)
            guard self.writerWaitsFor > 0, self.queue.count >= self.writerWaitsFor else { return false }
            self.writerWaitsFor = 0
            return true
        }

        mutating func takeSatisfiedWaiters() -> [CheckedContinuation<Void, Never>] {
            let head = self.committedHead
            var ready: [CheckedContinuation<Void, Never>] = []
            for (id, waiter) in self.headWaiters where head > waiter.head || self.isClosing {
                ready.append(waiter.continuation)
                self.headWaiters[id] = nil
            }
            return ready
        }
    }

    /// Opens the store in `directory`, creating the directory and the first segment if needed,
    /// and recovers it (see the type's documentation).
    ///
    /// Opening reads every segment once, synchronously: call it at startup, not on a hot path.
    /// - Parameters:
    ///   - directory: The store's directory.
    ///   - configuration: Segment size, maximum record size, durability and recovery mode.
    ///   - telemetry: Where each cut that recovery makes is logged (source `keel.store`): a torn
    ///     tail at ``/KeelCore/LogLevel/warning``, damage cut by ``Recovery/repair`` at
    ///     ``/KeelCore/LogLevel/error``. By default nothing is logged; ``recoveryReport`` has the
    ///     cuts either way.
    /// - Throws: ``EventStoreError`` with ``EventStoreError/Code/locked`` when another opener
    ///   holds the directory, ``EventStoreError/Code/corrupted`` for damage that strict recovery
    ///   does not cut, ``EventStoreError/Code/io`` when the system refuses, and
    ///   ``EventStoreError/Code/invalidArgument`` for a configuration out of range.
    public init(
        directory: String,
        configuration: Configuration = Configuration(),
        telemetry: any Telemetry = NoOpTelemetry()
    ) throws(EventStoreError) {
        guard configuration.segmentSize >= SegmentHeader.size + FileRecord.frameHeaderSize,
            configuration.maxRecordSize >= 64
        else {
            throw EventStoreError(
                code: .invalidArgument,
                message:
                    "segmentSize \(configuration.segmentSize) or maxRecordSize \(configuration.maxRecordSize) too small"
            )
        }
        self.directory = directory
        self.configuration = configuration
        try FileDescriptor.makeDirectory(directory)
        let directoryLock = try FileDescriptor.open(directory, flags: O_RDONLY | O_DIRECTORY)
        let lockFile: FileDescriptor
        let markFile: FileDescriptor
        let markSequence: UInt64
        do throws(EventStoreError) {
            lockFile = try FileDescriptor.open(directory + "/LOCK", flags: O_RDWR | O_CREAT)
        } catch {
            directoryLock.close()
            throw error
        }
        do throws(EventStoreError) {
            guard try directoryLock.tryLock(), try lockFile.tryLock() else {
                throw EventStoreError(code: .locked, message: "\(directory) is open in another store")
            }
            var recovery = try FileStoreRecovery.run(directory: directory, configuration: configuration)
            do throws(EventStoreError) {
                // A new store starts segment 0; a store whose last segment is of an older format
                // version goes on in a new segment of the current one.
                if recovery.lastSegmentFormatVersion < SegmentHeader.formatVersion {
                    recovery.segments.append(
                        try SegmentHeader.create(index: recovery.segments.count, directory: directory)
                    )
                }
                // The log as recovered is the new high-water mark (after a repair, the old one
                // would report the dropped part again on every open).
                markFile = try FileDescriptor.open(directory + "/" + HighWaterMark.fileName, flags: O_RDWR | O_CREAT)
                markSequence = (recovery.mark?.sequence ?? 0) + 1
                let mark = HighWaterMark(
                    sequence: markSequence,
                    segment: recovery.segments.count - 1,
                    segmentSize: recovery.segments[recovery.segments.count - 1].size,
                    events: UInt64(recovery.locations.count),
                    changes: recovery.changes
                )
                do throws(EventStoreError) {
                    try mark.write(to: markFile)
                    if recovery.mark == nil { try FileDescriptor.syncDirectory(directory) }
                } catch {
                    markFile.close()
                    throw error
                }
            } catch {
                for segment in recovery.segments { segment.descriptor.close() }
                throw error
            }
            self.recoveryReport = recovery.report
            for cut in recovery.report.cuts { cut.log(to: telemetry, store: "event store", directory: directory) }
            self.state = ConditionLock(
                State(
                    segments: recovery.segments,
                    files: StoreFiles(directory: directoryLock, lock: lockFile, mark: markFile),
                    locations: recovery.locations,
                    streams: recovery.streams,
                    assigned: recovery.streams.mapValues {
                        AssignedStream(nextVersion: UInt64($0.positions.count), isDeleted: $0.isDeleted)
                    },
                    assignedHead: UInt64(recovery.locations.count),
                    assignedChanges: recovery.changes,
                    committedChanges: recovery.changes
                )
            )
        } catch {
            lockFile.close()
            directoryLock.close()
            throw error
        }
        let state = self.state
        let writer = Writer(
            state: state,
            configuration: configuration,
            directory: directory,
            markFile: markFile,
            firstMarkSequence: markSequence
        )
        state.withLock { $0.writerThread = JoinableThread { writer.run() } }
    }

    deinit {
        // A store that was closed has nothing left to release; one that was not is closed here.
        self.stopWriter()?.join()
        self.release()
    }

    /// Closes the store: finishes the appends queued before it, stops the writer thread, and
    /// closes every file descriptor the store holds — the segments, `HIGHWATER`, and the `LOCK`
    /// file and the directory, whose locks go with them, so that the directory can be opened
    /// again at once.
    ///
    /// When it returns, the store holds no descriptor, even while the object lives on (a
    /// projection runner or a service's ``NamespacedEventStore`` may keep a reference to it),
    /// with one exception: the segments that reads in flight at that moment are reading stay open
    /// until the last of those reads ends, so that no read uses a descriptor that was closed (or
    /// reused by another file) under it. Appends, reads and other calls made once it has been
    /// called fail with ``EventStoreError/Code/closed``; subscriptions waiting for new events end.
    ///
    /// It blocks its thread while the writer finishes the queued appends (it does not suspend
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

    /// Once the writer has stopped: closes the segments — those that reads in flight took are
    /// left to the last of them (see ``read(_:)``) — and the files in ``State/files``; then resumes
    /// the callers waiting for new events and the closes waiting for this one. Runs once with
    /// effect: it takes what it closes out of the state, and a second run finds nothing.
    private func release() {
        let (segments, files, headWaiters, closeWaiters) = self.state.withLock { state in
            defer {
                state.segments = []
                state.files = nil
                state.headWaiters = [:]
                state.closeWaiters = []
            }
            var segments = state.segments
            if state.readers > 0 {
                state.closedWhileReading += segments
                segments = []
            }
            return (segments, state.files, state.headWaiters.values.map(\.continuation), state.closeWaiters)
        }
        for segment in segments { segment.descriptor.close() }
        files?.close()
        for waiter in headWaiters { waiter.resume() }
        for waiter in closeWaiters { waiter.resume() }
    }

    /// Waits until the close that stopped the writer has released the store's files (at once if
    /// it has). Not cancellable: that close only finishes the appends queued before it.
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

    // MARK: EventStore

    /// Appends `events` to `stream` if it satisfies `expected`, and returns once they are durable
    /// per ``Configuration/durability``; see ``EventStore/append(_:to:expecting:)``.
    ///
    /// Once queued, an append completes even if the calling task is cancelled, so that the caller
    /// learns whether it was written.
    /// - Parameters:
    ///   - events: The events.
    ///   - stream: The stream.
    ///   - expected: What the stream's last version must be.
    /// - Returns: Where the events landed.
    /// - Throws: ``EventStoreError``.
    @discardableResult
    public func append(
        _ events: [EventData],
        to stream: StreamID,
        expecting expected: ExpectedVersion
    ) async throws(EventStoreError) -> AppendResult {
        try EventStoreRules.validate(events, stream: stream)
        var bodies = events.map { FileRecord.encodeEventBody($0, stream: stream) }
        for (body, event) in zip(bodies, events) where body.count > self.configuration.maxRecordSize {
            throw EventStoreError(
                code: .recordTooLarge,
                stream: stream,
                message:
                    "a \(event.type) record of \(body.count) bytes exceeds maxRecordSize \(self.configuration.maxRecordSize)"
            )
        }
        return try await self.enqueue { state throws(EventStoreError) in
            let head = state.assigned[stream] ?? AssignedStream()
            guard expected.isSatisfied(by: head.currentVersion) else {
                throw EventStoreError.wrongExpectedVersion(stream, expected: expected, actual: head.currentVersion)
            }
            guard !bodies.isEmpty else {
                return .done(
                    AppendResult(streamVersion: head.currentVersion, positions: state.assignedHead..<state.assignedHead)
                )
            }
            let firstVersion = head.nextVersion
            let firstPosition = state.assignedHead
            for index in bodies.indices {
                FileRecord.patch(
                    &bodies[index],
                    position: firstPosition + UInt64(index),
                    version: firstVersion + UInt64(index)
                )
                if index < bodies.count - 1 { FileRecord.markMoreInAppend(&bodies[index]) }
            }
            let count = UInt64(bodies.count)
            state.assigned[stream] = AssignedStream(nextVersion: firstVersion + count, isDeleted: false)
            state.assignedHead += count
            return .queue(
                bodies,
                .events(stream, firstVersion: firstVersion, firstPosition: firstPosition),
                AppendResult(streamVersion: firstVersion + count - 1, positions: firstPosition..<firstPosition + count)
            )
        }
    }

    /// Reads `stream`; see ``EventStore/readStream(_:from:direction:limit:)``.
    /// - Parameters:
    ///   - stream: The stream.
    ///   - version: The first version to return.
    ///   - direction: Forwards or backwards.
    ///   - limit: The most events to return.
    /// - Returns: The events in reading order.
    /// - Throws: ``EventStoreError``.
    public func readStream(
        _ stream: StreamID,
        from version: UInt64,
        direction: ReadDirection,
        limit: Int
    ) async throws(EventStoreError) -> [RecordedEvent] {
        guard limit >= 1 else {
            throw EventStoreError(code: .invalidArgument, stream: stream, message: "limit \(limit) is below 1")
        }
        return try self.read { state throws(EventStoreError) -> [Location] in
            guard let entry = state.streams[stream] else { return [] }
            guard !entry.isDeleted else {
                throw EventStoreError(code: .streamDeleted, stream: stream, message: "the stream was deleted")
            }
            guard let last = entry.lastVersion else { return [] }
            let versions = EventStoreRules.visibleVersions(
                first: entry.metadata.firstVisibleVersion(last: last),
                last: last,
                from: version,
                direction: direction,
                limit: limit
            )
            return versions.map { state.locations[Int(entry.positions[Int($0)])] }
        }
    }

    /// Reads the global log; see ``EventStore/readAll(from:limit:)``.
    /// - Parameters:
    ///   - position: The first position to return.
    ///   - limit: The most events to return.
    /// - Returns: The events in position order.
    /// - Throws: ``EventStoreError``.
    public func readAll(from position: UInt64, limit: Int) async throws(EventStoreError) -> [RecordedEvent] {
        guard limit >= 1 else {
            throw EventStoreError(code: .invalidArgument, message: "limit \(limit) is below 1")
        }
        return try self.read { state -> [Location] in
            let head = state.committedHead
            guard position < head else { return [] }
            let end = position + min(UInt64(limit), head - position)
            return Array(state.locations[Int(position)..<Int(end)])
        }
    }

    /// The last durable version of `stream`; see ``EventStore/streamVersion(_:)``.
    /// - Parameter stream: The stream.
    /// - Returns: The version, or `nil`.
    public func streamVersion(_ stream: StreamID) async throws(EventStoreError) -> UInt64? {
        try self.state.withLock { state throws(EventStoreError) in
            guard !state.isClosing else { throw Self.closedError }
            return state.streams[stream]?.currentVersion
        }
    }

    /// The number of durable events.
    /// - Returns: The next position.
    public func headPosition() async throws(EventStoreError) -> UInt64 {
        try self.state.withLock { state throws(EventStoreError) in
            guard !state.isClosing else { throw Self.closedError }
            // After a failed write the head cannot move again: a subscription ends with the error
            // instead of waiting for it.
            if let failure = state.failure { throw failure }
            return state.committedHead
        }
    }

    /// Soft-deletes `stream`, durably; see ``EventStore/deleteStream(_:expecting:)``.
    /// - Parameters:
    ///   - stream: The stream.
    ///   - expected: What the stream's last version must be.
    /// - Throws: ``EventStoreError``.
    public func deleteStream(_ stream: StreamID, expecting expected: ExpectedVersion) async throws(EventStoreError) {
        _ = try await self.enqueue { state throws(EventStoreError) in
            let head = state.assigned[stream] ?? AssignedStream()
            guard expected.isSatisfied(by: head.currentVersion) else {
                throw EventStoreError.wrongExpectedVersion(stream, expected: expected, actual: head.currentVersion)
            }
            let result = AppendResult(streamVersion: nil, positions: state.assignedHead..<state.assignedHead)
            guard head.currentVersion != nil else { return .done(result) }
            state.assigned[stream]?.isDeleted = true
            let record = FileRecord.streamDeleted(
                stream,
                truncateBefore: head.nextVersion,
                sequence: state.takeChangeSequence()
            )
            return .queue([record.encodeBody()], .deleted(stream, truncateBefore: head.nextVersion), result)
        }
    }

    /// Replaces the metadata of `stream`, durably; see ``EventStore/setStreamMetadata(_:for:)``.
    /// - Parameters:
    ///   - metadata: The new metadata.
    ///   - stream: The stream.
    /// - Throws: ``EventStoreError``.
    public func setStreamMetadata(_ metadata: StreamMetadata, for stream: StreamID) async throws(EventStoreError) {
        try EventStoreRules.validate(metadata, stream: stream)
        _ = try await self.enqueue { state throws(EventStoreError) in
            let result = AppendResult(streamVersion: state.assigned[stream]?.currentVersion, positions: 0..<0)
            let body = FileRecord.streamMetadata(stream, metadata, sequence: state.takeChangeSequence()).encodeBody()
            return .queue([body], .metadata(stream, metadata), result)
        }
    }

    /// The durable metadata of `stream`; see ``EventStore/streamMetadata(for:)``.
    /// - Parameter stream: The stream.
    /// - Returns: The metadata.
    public func streamMetadata(for stream: StreamID) async throws(EventStoreError) -> StreamMetadata {
        try self.state.withLock { state throws(EventStoreError) in
            guard !state.isClosing else { throw Self.closedError }
            return state.streams[stream]?.metadata ?? StreamMetadata()
        }
    }

    /// Waits until more than `head` events are durable, the task is cancelled, or the store is
    /// closed; see ``EventStore/waitForHead(beyond:)``.
    /// - Parameter head: The head position to wait beyond.
    public func waitForHead(beyond head: UInt64) async {
        let id = self.state.withLock { state in
            defer { state.nextWaiterID += 1 }
            return state.nextWaiterID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = self.state.withLock { state -> Bool in
                    if state.committedHead > head || state.isClosing || state.failure != nil || Task.isCancelled {
                        return true
                    }
                    state.headWaiters[id] = (head, continuation)
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = self.state.withLock { $0.headWaiters.removeValue(forKey: id) }
            waiter?.continuation.resume()
        }
    }

    // MARK: Internals

    static let closedError = EventStoreError(code: .closed, message: "the store is closed")

    enum Admission {
        case done(AppendResult)
        case queue([[UInt8]], Pending.Change, AppendResult)
    }

    /// Runs `admit` under the lock; queues what it returns for the writer and waits for it to be
    /// durable.
    private func enqueue(
        _ admit: (inout State) throws(EventStoreError) -> Admission
    ) async throws(EventStoreError) -> AppendResult {
        let barrier = ConflictBarrier()
        let result = await withCheckedContinuation {
            (continuation: CheckedContinuation<Result<AppendResult, EventStoreError>, Never>) in
            let outcome = self.state.withLock { state -> Enqueued in
                if let failure = state.failure { return .failure(failure) }
                guard !state.isClosing else { return .failure(Self.closedError) }
                do throws(EventStoreError) {
                    switch try admit(&state) {
                    case .done(let result):
                        return .done(.success(result))
                    case .queue(let bodies, let change, let result):
                        let wakesWriter = state.enqueue(
                            Pending(bodies: bodies, change: change, result: result, continuation: continuation)
                        )
                        return wakesWriter ? .queuedWakingWriter : .queued
                    }
                } catch {
                    // A conflict with appends that are queued but not yet durable is reported once
                    // they are durable, so that a reload after the error sees the version that
                    // caused it (otherwise a retry loop would spin until the sync ends).
                    if error.code == .wrongExpectedVersion, state.assignedHead > state.committedHead {
                        barrier.head = state.assignedHead
                    }
                    return .failure(error)
                }
            }
            switch outcome {
            case .done(let immediate): continuation.resume(returning: immediate)
            case .queued: break
            case .queuedWakingWriter:
                self.configuration.faults?.countWriterWakeup()
                self.state.signal()
            }
        }
        if let head = barrier.head {
            await self.waitForHead(beyond: head - 1)
        }
        return try result.get()
    }

    /// What ``enqueue(_:)`` did under the lock.
    private enum Enqueued {
        /// Not queued: resume the caller with this result now.
        case done(Result<AppendResult, EventStoreError>)
        /// Queued; the writer is busy or waits for more appends.
        case queued
        /// Queued, and the writer sleeps until this append: signal it once the lock is released.
        case queuedWakingWriter

        static func failure(_ error: EventStoreError) -> Self { .done(.failure(error)) }
    }

    /// Carries the head a conflict must wait for out of the lock's closure.
    private final class ConflictBarrier: @unchecked Sendable {
        var head: UInt64?
    }

    /// Picks the locations to read under the lock, then reads them outside it, with the segments'
    /// descriptors held open until the read is done (a ``close()`` in between leaves them to the
    /// last read in flight).
    private func read(
        _ select: (inout State) throws(EventStoreError) -> [Location]
    ) throws(EventStoreError) -> [RecordedEvent] {
        let (locations, segments) = try self.state.withLock {
            state throws(EventStoreError) -> ([Location], [Segment]) in
            guard !state.isClosing else { throw Self.closedError }
            let locations = try select(&state)
            guard !locations.isEmpty else { return ([], []) }
            state.readers += 1
            return (locations, state.segments)
        }
        guard !locations.isEmpty else { return [] }
        defer {
            let closing = self.state.withLock { state -> [Segment] in
                state.readers -= 1
                guard state.readers == 0 else { return [] }
                defer { state.closedWhileReading = [] }
                return state.closedWhileReading
            }
            for segment in closing { segment.descriptor.close() }
        }
        self.configuration.faults?.beforeRead()
        return try self.load(locations, segments: segments)
    }

    /// Reads and decodes the records at `locations`, with one `pread` per run of nearby records.
    private func load(_ locations: [Location], segments: [Segment]) throws(EventStoreError) -> [RecordedEvent] {
        var events: [RecordedEvent] = []
        events.reserveCapacity(locations.count)
        var start = 0
        while start < locations.count {
            // A run: same segment, increasing offsets, gaps of at most 64 KiB.
            var end = start + 1
            while end < locations.count,
                locations[end].segment == locations[start].segment,
                locations[end].offset >= locations[end - 1].offset + locations[end - 1].size,
                locations[end].offset - (locations[end - 1].offset + locations[end - 1].size) <= 65_536
            {
                end += 1
            }
            let first = locations[start]
            let last = locations[end - 1]
            guard first.segment < segments.count else { throw Self.closedError }
            let segment = segments[first.segment]
            let bytes = try segment.descriptor.read(count: last.offset + last.size - first.offset, at: first.offset)
            let decoded = bytes.withUnsafeBytes { buffer in
                Result { () throws(EventStoreError) in
                    for location in locations[start..<end] {
                        let relative = location.offset - first.offset
                        guard relative + location.size <= buffer.count else {
                            throw EventStoreError(
                                code: .corrupted,
                                message: "\(segment.descriptor.path)@\(location.offset): the file ends inside a record"
                            )
                        }
                        let frame = UnsafeRawBufferPointer(rebasing: buffer[relative..<relative + location.size])
                        do throws(FileRecord.DecodingFailure) {
                            let (record, _) = try FileRecord.decodeFrame(
                                frame,
                                maxRecordSize: self.configuration.maxRecordSize
                            )
                            guard case .event(let event, _) = record else {
                                throw FileRecord.DecodingFailure.malformedBody(
                                    "an event's location holds another record"
                                )
                            }
                            events.append(event)
                        } catch {
                            throw EventStoreError(
                                code: .corrupted,
                                message: "\(segment.descriptor.path)@\(location.offset): \(error)"
                            )
                        }
                    }
                }
            }
            try decoded.get()
            start = end
        }
        return events
    }
}
