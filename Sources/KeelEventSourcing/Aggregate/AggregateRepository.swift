import KeelCore

/// Loads ``Aggregate``s from an ``EventStore`` (the latest snapshot plus the events after it) and
/// saves the events their commands emit, with optimistic concurrency and optional snapshots.
///
/// ```swift
/// var registry = EventTypeRegistry([UserRegistered.self, UserEmailChanged.self])
/// let users = AggregateRepository<User>(
///     store: store,
///     serializer: EventSerializer(registry: registry),
///     configuration: .init(snapshotPolicy: .every(100)),
///     random: random
/// )
///
/// // Load, run the command, append what it emitted if nobody else appended meanwhile.
/// let saved = try await users.execute("42", expecting: .new) { user in
///     try user.register(email: "ada@example.com")
/// }
/// // Retry a conflict on the reloaded state, up to 3 runs of the command in all.
/// try await users.execute("42", retry: .attempts(3)) { user in
///     try user.changeEmail(to: "ada@example.org")
/// }
/// let loaded = try await users.load("42")   // loaded.aggregate, loaded.version
/// ```
///
/// ### Streams
///
/// The events of aggregate `id` are in stream `"\(A.category)-\(id)"` (``streamID(for:)``). Its
/// snapshots are events of type `$snapshot` in their own stream, `"$snapshot-\(A.category)-\(id)"`
/// (``snapshotStreamID(for:)``), whose payload is a ``SnapshotEnvelope`` encoded with the
/// serializer's codec; the repository keeps the newest ``Configuration/retainedSnapshots`` of
/// them readable with ``StreamMetadata/maxCount``.
///
/// ### Loading
///
/// ``load(_:)`` reads the latest snapshot (unless the policy is ``SnapshotPolicy/never``), then
/// the events after it, and applies them. A snapshot written at another
/// ``Aggregate/snapshotSchemaVersion``, or one that does not decode, or one claiming a version the
/// stream does not have, is ignored: the state is rebuilt from every event, and
/// ``LoadedAggregate/snapshot`` and the telemetry say why. A snapshot never makes an
/// aggregate unloadable. The events do: an event that does not decode fails the load with
/// ``AggregateError``, since a state without it would be wrong.
///
/// ### Saving
///
/// ``execute(_:expecting:retry:_:)`` loads, runs the command, and appends the events it returns
/// with the loaded version as ``ExpectedVersion`` (``ExpectedVersion/noStream`` for a new
/// aggregate), so two writers of one aggregate conflict instead of overwriting each other.
/// ``ConflictRetry`` decides whether a conflict reloads and runs the command again. When the
/// ``SnapshotPolicy`` says a snapshot is due, the repository writes one after the append; a
/// failure to write it is reported in ``SavedAggregate/snapshot``, never thrown, since the events
/// are already stored.
///
/// Every appended event gets fresh ``EventMetadata``: an id drawn from the repository's
/// ``/KeelCore/RandomSource``, the time from its wall clock, the correlation, causation,
/// trace and span ids of the calling task's ``/KeelCore/TraceContext``
/// (``EventMetadata/current(id:time:)``), and the aggregate's id
/// (``EventMetadata/aggregateID``, read back as ``RecordedEvent/aggregateID``).
///
/// ### Concurrency
///
/// The repository is an immutable value: use it from any number of tasks at once. Its methods
/// suspend only while the store works and, between the attempts of a ``ConflictRetry`` with a
/// backoff, on its clock; commands and `apply(_:)` run synchronously on the calling task.
/// Cancelling the task cancels nothing already appended; a cancelled task does not start
/// another attempt after a conflict, and a backoff wait ends at once with `CancellationError`.
///
/// ### Telemetry
///
/// Counters, with dimension `category`: `keel.aggregate.conflicts` (every conflict, retried or
/// not), `keel.aggregate.snapshot.written`, `keel.aggregate.snapshot.write_failed`, and
/// `keel.aggregate.snapshot.ignored` (with dimension `reason`: `stale`, `unreadable` or
/// `ahead_of_stream`).
public struct AggregateRepository<A: Aggregate>: Sendable {
    /// The store the events and snapshots are kept in.
    public let store: any EventStore
    /// Encodes and decodes the events; its registry must hold every event type of `A`.
    public let serializer: EventSerializer
    /// The snapshot settings.
    public let configuration: Configuration

    let clock: any Clock<Duration>
    let random: RandomSource
    let wallClock: WallClock
    let metrics: Metrics

    /// The type name of snapshot events in snapshot streams.
    static var snapshotEventType: String { "$snapshot" }

    /// Makes a repository.
    /// - Parameters:
    ///   - store: The store.
    ///   - serializer: Encodes and decodes the events of `A`, whose types must be registered in
    ///     its registry (with their upcasters); its codec also encodes snapshots.
    ///   - configuration: The snapshot settings.
    ///   - clock: The clock the waits of a ``ConflictRetry``'s backoff sleep on;
    ///     `ContinuousClock` by default, a `TestClock` in tests.
    ///   - random: The source of event ids and of the jitter of a ``ConflictRetry``'s backoff. By
    ///     default a new source seeded from the system's generator; in a service, pass the host's
    ///     (`ServiceEnvironment.random`) so that a seeded run repeats.
    ///   - wallClock: The time of day stamped on events and snapshots; the system's by default.
    ///     In a service, pass the host's (``/KeelCore/WallClock`` from `ServiceEnvironment.wallClock`).
    ///   - telemetry: Where the counters go.
    public init(
        store: any EventStore,
        serializer: EventSerializer,
        configuration: Configuration = Configuration(),
        clock: any Clock<Duration> = ContinuousClock(),
        random: RandomSource = RandomSource(),
        wallClock: WallClock = .system,
        telemetry: any Telemetry = NoOpTelemetry()
    ) {
        self.store = store
        self.serializer = serializer
        self.configuration = configuration
        self.clock = clock
        self.random = random
        self.wallClock = wallClock
        self.metrics = Metrics(category: A.category, telemetry: telemetry)
    }

    /// The stream of aggregate `id`: `"\(A.category)-\(id)"`.
    /// - Parameter id: The aggregate's id.
    /// - Returns: The stream.
    public func streamID(for id: String) -> StreamID {
        StreamID("\(A.category)-\(id)")
    }

    /// The snapshot stream of aggregate `id`: `"$snapshot-\(A.category)-\(id)"`.
    /// - Parameter id: The aggregate's id.
    /// - Returns: The stream.
    public func snapshotStreamID(for id: String) -> StreamID {
        StreamID("$snapshot-\(A.category)-\(id)")
    }

    /// The id of the aggregate of this repository that `event` belongs to, or `nil` when it is
    /// not an event of one of this repository's aggregate streams.
    ///
    /// `event` must be read from the repository's ``store`` (the same view, so that stream names
    /// are the repository's). The id is the one recorded on the event
    /// (``RecordedEvent/aggregateID``); an event appended before Keel recorded it gets the id
    /// from its stream's name, `"\(A.category)-\(id)"`. Prefer ``RecordedEvent/aggregateID``
    /// where every event has one, and always where events are read through another view, such as
    /// a durable subscription's, whose stream names carry the writing service's namespace.
    /// - Parameter event: An event read from ``store``.
    /// - Returns: The aggregate's id, or `nil` for an event of another stream (another category,
    ///   a snapshot stream, a stream written without a repository).
    public func aggregateID(of event: RecordedEvent) -> String? {
        let prefix = A.category + "-"
        guard event.stream.name.hasPrefix(prefix) else { return nil }
        return event.aggregateID ?? String(event.stream.name.dropFirst(prefix.count))
    }

    // MARK: Loading

    /// Loads aggregate `id`: the latest usable snapshot, if any, with every later event applied.
    ///
    /// Suspends while the store reads: one read of the snapshot stream (none with
    /// ``SnapshotPolicy/never``), one of the events, and one more of the stream's version when a
    /// snapshot is used and no event follows it. An aggregate with no events loads as `A()` at
    /// version `nil`.
    /// - Parameter id: The aggregate's id.
    /// - Returns: The aggregate, its version, and what became of its snapshot.
    /// - Throws: ``AggregateError`` with ``AggregateError/Code/store`` (the store failed, or the
    ///   stream was deleted), ``AggregateError/Code/eventCoding`` (an event does not upcast or
    ///   decode), ``AggregateError/Code/unknownEvent`` or ``AggregateError/Code/incompleteStream``.
    ///   Never for a snapshot.
    public func load(_ id: String) async throws(AggregateError) -> LoadedAggregate<A> {
        let stream = self.streamID(for: id)
        var outcome = SnapshotLoadOutcome.disabled
        if self.configuration.snapshotPolicy != .never {
            let (found, readOutcome) = await self.readSnapshot(of: id)
            outcome = readOutcome
            if let found {
                let tail = try await self.readEvents(of: stream, from: found.streamVersion + 1)
                if !tail.isEmpty {
                    return try self.replay(tail, onto: found.aggregate, id: id, snapshot: outcome)
                }
                // No event after the snapshot: it is usable only if it is the stream's head.
                let head = try await self.streamVersion(of: stream)
                if head == found.streamVersion {
                    return LoadedAggregate(
                        id: id,
                        aggregate: found.aggregate,
                        version: head,
                        snapshot: outcome,
                        eventsReplayed: 0
                    )
                }
                outcome = .aheadOfStream(snapshotVersion: found.streamVersion, streamVersion: head)
                self.metrics.snapshotAheadOfStream.increment(by: 1)
            }
        }
        let events = try await self.readEvents(of: stream, from: 0)
        return try self.replay(events, onto: A(), id: id, snapshot: outcome)
    }

    // MARK: Saving

    /// Loads aggregate `id`, runs `command` on it, and appends the events it returns if the
    /// stream is still at the loaded version; retries on a conflict if `retry` says so.
    ///
    /// Each attempt loads the aggregate afresh (``load(_:)``), checks `existence`, runs `command`
    /// synchronously on the calling task, and appends its events atomically with
    /// ``LoadedAggregate/expectedVersion``. When another writer appended meanwhile, the append
    /// fails with ``EventStoreError/Code/wrongExpectedVersion`` and writes nothing; if attempts
    /// remain (and the task is not cancelled) the next attempt starts after the next delay of
    /// ``ConflictRetry/backoff`` (at once by default), so `command` may run up to
    /// ``ConflictRetry/maxAttempts`` times, each time on the newer state. When `command`
    /// returns no events nothing is written and the result has the loaded version.
    ///
    /// After the append a snapshot is written if the ``SnapshotPolicy`` says one is due; its
    /// failure is reported in ``SavedAggregate/snapshot`` and not thrown.
    /// - Parameters:
    ///   - id: The aggregate's id.
    ///   - existence: Whether the aggregate must be new, must exist, or either (the default).
    ///   - retry: Whether to retry conflicts; ``ConflictRetry/disabled`` by default.
    ///   - command: Decides on the loaded aggregate: returns the events to append, or throws.
    /// - Returns: The new state and version, the events appended, the attempts, the snapshot
    ///   outcome.
    /// - Throws: What `command` throws, unchanged; `CancellationError` when the task is cancelled
    ///   before a retry or during its backoff wait; otherwise ``AggregateError``: ``AggregateError/Code/conflict`` after the
    ///   last attempt (carrying the store's error), ``AggregateError/Code/alreadyExists`` or
    ///   ``AggregateError/Code/notFound`` when `existence` is not satisfied, or as ``load(_:)``
    ///   and ``save(_:for:loaded:)``.
    @discardableResult
    public func execute(
        _ id: String,
        expecting existence: AggregateExistence = .any,
        retry: ConflictRetry = .disabled,
        _ command: (A) throws -> [A.Event]
    ) async throws -> SavedAggregate<A> {
        var attempt = 1
        // Made at the first conflict: most commands never need it.
        var delays: Backoff.Delays?
        while true {
            let loaded = try await self.load(id)
            guard existence.isSatisfied(by: loaded.version) else {
                let stream = self.streamID(for: id)
                if existence == .new {
                    throw AggregateError(
                        code: .alreadyExists,
                        stream: stream,
                        message: "the command expects a new aggregate; the stream is at version \(loaded.version ?? 0)"
                    )
                }
                throw AggregateError(
                    code: .notFound,
                    stream: stream,
                    message: "the command expects an existing aggregate; the stream has no events"
                )
            }
            let events = try command(loaded.aggregate)
            let outcome: Result<SavedAggregate<A>, AggregateError>
            do {
                outcome = .success(try await self.save(events, for: id, loaded: loaded))
            } catch {
                outcome = .failure(error)
            }
            switch outcome {
            case .success(var saved):
                saved.attempts = attempt
                return saved
            case .failure(let error) where error.code == .conflict && attempt < retry.maxAttempts:
                try Task.checkCancellation()
                if delays == nil { delays = retry.backoff.makeDelays(using: self.random) }
                let delay = delays?.next() ?? .zero
                if delay > .zero {
                    try await self.clock.sleep(for: delay)
                }
                attempt += 1
            case .failure(let error) where error.code == .conflict:
                throw AggregateError(
                    code: .conflict,
                    stream: error.stream,
                    attempts: attempt,
                    message: "the stream changed during each of \(attempt) attempt\(attempt == 1 ? "" : "s")",
                    cause: error.cause
                )
            case .failure(let error):
                throw error
            }
        }
    }

    /// Appends `events`, emitted by a command on `loaded`, if the stream is still at the loaded
    /// version; then writes a snapshot if one is due.
    ///
    /// This is the second half of ``execute(_:expecting:retry:_:)``, for code that loads, decides
    /// and saves in steps of its own. It does not retry: on a conflict, load again and decide
    /// again.
    /// - Parameters:
    ///   - events: The events, in order; none writes nothing.
    ///   - id: The aggregate's id, as loaded.
    ///   - loaded: The aggregate the events were decided on.
    /// - Returns: The new state and version, the events, the snapshot outcome (attempts 1).
    /// - Throws: ``AggregateError`` with ``AggregateError/Code/conflict`` (another writer appended
    ///   since the load; ``AggregateError/storeError`` is the store's
    ///   ``EventStoreError/Code/wrongExpectedVersion`` with the actual version),
    ///   ``AggregateError/Code/eventCoding`` (an event does not encode) or
    ///   ``AggregateError/Code/store``. Never for a snapshot.
    @discardableResult
    public func save(
        _ events: [A.Event],
        for id: String,
        loaded: LoadedAggregate<A>
    ) async throws(AggregateError) -> SavedAggregate<A> {
        let stream = self.streamID(for: id)
        guard !events.isEmpty else {
            return SavedAggregate(
                id: id,
                aggregate: loaded.aggregate,
                version: loaded.version,
                events: [],
                positions: 0..<0,
                attempts: 1,
                snapshot: .notDue
            )
        }
        var data: [EventData] = []
        data.reserveCapacity(events.count)
        for event in events {
            data.append(try self.encode(event.domainEvent, id: id, stream: stream))
        }
        let result: AppendResult
        do {
            result = try await self.store.append(data, to: stream, expecting: loaded.expectedVersion)
        } catch  where error.code == .wrongExpectedVersion {
            self.metrics.conflicts.increment(by: 1)
            throw AggregateError(
                code: .conflict,
                stream: stream,
                attempts: 1,
                message: "the stream changed since it was loaded at \(loaded.expectedVersion)",
                cause: error
            )
        } catch {
            throw AggregateError(code: .store, stream: stream, message: "appending the events failed", cause: error)
        }
        var aggregate = loaded.aggregate
        aggregate.apply(events)
        let version = result.streamVersion ?? (loaded.version.map { $0 + UInt64(events.count) } ?? 0)
        var snapshot = SnapshotWriteOutcome.notDue
        if self.configuration.snapshotPolicy.isDue(eventsSinceSnapshot: loaded.eventsReplayed + events.count) {
            snapshot = await self.writeSnapshot(of: aggregate, id: id, streamVersion: version)
        }
        return SavedAggregate(
            id: id,
            aggregate: aggregate,
            version: version,
            events: events,
            positions: result.positions,
            attempts: 1,
            snapshot: snapshot
        )
    }

    // MARK: Internals

    private func encode(_ event: any DomainEvent, id: String, stream: StreamID) throws(AggregateError) -> EventData {
        var metadata = EventMetadata.current(
            id: EventID.random(using: self.random),
            time: self.wallClock.nanosecondsSinceEpoch()
        )
        metadata.aggregateID = id
        do {
            return try self.serializer.encode(event, metadata: metadata)
        } catch {
            throw AggregateError(
                code: .eventCoding,
                stream: stream,
                message: "cannot encode \(type(of: event))",
                cause: error
            )
        }
    }

    private func readEvents(of stream: StreamID, from version: UInt64) async throws(AggregateError) -> [RecordedEvent] {
        let events: [RecordedEvent]
        do {
            events = try await self.store.readStream(stream, from: version, direction: .forwards, limit: .max)
        } catch {
            throw AggregateError(code: .store, stream: stream, message: "reading the events failed", cause: error)
        }
        if let first = events.first, first.version != version {
            throw AggregateError(
                code: .incompleteStream,
                stream: stream,
                message: "the load needs version \(version), but the first readable event is version \(first.version)"
            )
        }
        return events
    }

    private func streamVersion(of stream: StreamID) async throws(AggregateError) -> UInt64? {
        do {
            return try await self.store.streamVersion(stream)
        } catch {
            throw AggregateError(code: .store, stream: stream, message: "reading the version failed", cause: error)
        }
    }

    private func replay(
        _ events: [RecordedEvent],
        onto start: A,
        id: String,
        snapshot: SnapshotLoadOutcome
    ) throws(AggregateError) -> LoadedAggregate<A> {
        var aggregate = start
        for recorded in events {
            let decoded: (any DomainEvent)?
            do {
                decoded = try self.serializer.decode(recorded)
            } catch {
                throw AggregateError(
                    code: .eventCoding,
                    stream: recorded.stream,
                    message: "cannot decode the event at version \(recorded.version)",
                    cause: error
                )
            }
            guard let decoded, let event = A.Event(decoded) else {
                throw AggregateError(
                    code: .unknownEvent,
                    stream: recorded.stream,
                    message: """
                        the event at version \(recorded.version), of type \(recorded.type), is not an event of \(A.self)
                        """
                )
            }
            aggregate.apply(event)
        }
        return LoadedAggregate(
            id: id,
            aggregate: aggregate,
            version: events.last?.version,
            snapshot: snapshot,
            eventsReplayed: events.count
        )
    }
}

extension AggregateRepository {
    /// The counters a repository reports to, made once.
    struct Metrics: Sendable {
        let conflicts: any TelemetryCounter
        let snapshotWritten: any TelemetryCounter
        let snapshotWriteFailed: any TelemetryCounter
        let snapshotStale: any TelemetryCounter
        let snapshotUnreadable: any TelemetryCounter
        let snapshotAheadOfStream: any TelemetryCounter

        init(category: String, telemetry: any Telemetry) {
            let dimensions = [("category", category)]
            self.conflicts = telemetry.makeCounter(label: "keel.aggregate.conflicts", dimensions: dimensions)
            self.snapshotWritten = telemetry.makeCounter(
                label: "keel.aggregate.snapshot.written",
                dimensions: dimensions
            )
            self.snapshotWriteFailed = telemetry.makeCounter(
                label: "keel.aggregate.snapshot.write_failed",
                dimensions: dimensions
            )
            func ignored(_ reason: String) -> any TelemetryCounter {
                telemetry.makeCounter(
                    label: "keel.aggregate.snapshot.ignored",
                    dimensions: dimensions + [("reason", reason)]
                )
            }
            self.snapshotStale = ignored("stale")
            self.snapshotUnreadable = ignored("unreadable")
            self.snapshotAheadOfStream = ignored("ahead_of_stream")
        }
    }
}
