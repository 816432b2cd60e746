import KeelCore
import KeelEventSourcing
import KeelTesting
import Synchronization
import Testing

// The seed's User aggregate: registers once; changes its email only when registered.

struct UserRegistered: DomainEvent, Equatable {
    static let eventType = "user.registered"
    var email: String
    var name: String
}

/// v1 was `{"email"}`: the new address only. v2 also records the previous one.
struct UserEmailChanged: DomainEvent, Equatable {
    static let eventType = "user.email-changed"
    static let schemaVersion = 2
    var previous: String?
    var email: String
}

struct UserEmailChangedV1: Codable {
    var email: String
}

enum UserEvent: AggregateEvent, Equatable {
    case registered(UserRegistered)
    case emailChanged(UserEmailChanged)

    init?(_ event: any DomainEvent) {
        switch event {
        case let event as UserRegistered: self = .registered(event)
        case let event as UserEmailChanged: self = .emailChanged(event)
        default: return nil
        }
    }

    var domainEvent: any DomainEvent {
        switch self {
        case .registered(let event): event
        case .emailChanged(let event): event
        }
    }
}

enum UserError: Error, Equatable {
    case alreadyRegistered
    case notRegistered
}

struct User: Aggregate, Equatable {
    static let category = "user"

    var email: String?
    var name = ""
    /// Every address the user has had, oldest first.
    var emails: [String] = []

    var isRegistered: Bool { self.email != nil }

    init() {}

    mutating func apply(_ event: UserEvent) {
        switch event {
        case .registered(let registered):
            self.email = registered.email
            self.name = registered.name
            self.emails.append(registered.email)
        case .emailChanged(let changed):
            self.email = changed.email
            self.emails.append(changed.email)
        }
    }

    func register(email: String, name: String) throws(UserError) -> [UserEvent] {
        guard !self.isRegistered else { throw .alreadyRegistered }
        return [.registered(UserRegistered(email: email, name: name))]
    }

    func changeEmail(to email: String) throws(UserError) -> [UserEvent] {
        guard let current = self.email else { throw .notRegistered }
        return [.emailChanged(UserEmailChanged(previous: current, email: email))]
    }
}

/// The next release of `User`: its snapshot shape changed (the state is nested), so its snapshot
/// schema version is 2. Same category, same events.
struct UserNextRelease: Aggregate, Equatable {
    static let category = "user"
    static let snapshotSchemaVersion = 2

    var user = User()

    init() {}

    mutating func apply(_ event: UserEvent) {
        self.user.apply(event)
    }
}

/// A single-event aggregate: its event type is its `Event`.
struct Counted: DomainEvent, AggregateEvent, Equatable {
    static let eventType = "counter.counted"
    var by: Int
}

struct CounterAggregate: Aggregate, Equatable {
    static let category = "counter"
    var total = 0

    init() {}

    mutating func apply(_ event: Counted) {
        self.total += event.by
    }
}

enum AggregateFixtures {
    static let emailChangedV1ToV2 = EventUpcaster.typed(
        UserEmailChanged.eventType,
        from: 1,
        decoding: UserEmailChangedV1.self
    ) { old in
        UserEmailChanged(previous: nil, email: old.email)
    }

    static func serializer() -> EventSerializer {
        EventSerializer(
            registry: EventTypeRegistry(
                [UserRegistered.self, UserEmailChanged.self, Counted.self],
                upcasters: [emailChangedV1ToV2]
            )
        )
    }

    static let epoch: Int64 = 1_700_000_000_000_000_000

    static func repository<A: Aggregate>(
        _ type: A.Type = User.self,
        store: any EventStore,
        snapshots: SnapshotPolicy = .never,
        seed: UInt64 = 1,
        clock: any Clock<Duration> = ContinuousClock(),
        telemetry: any Telemetry = NoOpTelemetry()
    ) -> AggregateRepository<A> {
        let ticks = Atomic<Int64>(0)
        return AggregateRepository<A>(
            store: store,
            serializer: serializer(),
            configuration: .init(snapshotPolicy: snapshots),
            clock: clock,
            random: RandomSource(seed: seed),
            wallClock: WallClock { epoch + ticks.add(1_000, ordering: .relaxed).newValue },
            telemetry: telemetry
        )
    }

    /// A stored v1 `user.email-changed`, as an older release wrote it.
    static func emailChangedV1(_ email: String) -> EventData {
        EventData(
            type: UserEmailChanged.eventType,
            schemaVersion: 1,
            metadata: EventMetadata(id: EventID(high: 9, low: 9), time: epoch),
            payload: Array(#"{"email":"\#(email)"}"#.utf8)
        )
    }

    /// A snapshot event as the repository writes it, with any envelope.
    static func snapshotEvent(_ envelope: SnapshotEnvelope) throws -> EventData {
        EventData(
            type: "$snapshot",
            metadata: EventMetadata(id: EventID(high: 8, low: 8), time: epoch),
            payload: try JSONEventCodec().encode(envelope)
        )
    }
}

/// Which store a test runs against.
enum StoreKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case memory
    case file

    var testDescription: String { self.rawValue }

    /// Runs `body` with a fresh store of this kind; a file store lives in a temporary directory,
    /// closed and removed afterwards.
    func withStore<R>(_ body: (any EventStore) async throws -> R) async throws -> R {
        switch self {
        case .memory:
            return try await body(InMemoryEventStore())
        case .file:
            let directory = TemporaryDirectory("aggregate")
            defer { directory.remove() }
            let store = try FileEventStore(directory: directory.path, configuration: FileStoreFixtures.configuration())
            do {
                let result = try await body(store)
                await store.close()
                return result
            } catch {
                await store.close()
                throw error
            }
        }
    }
}

/// Wraps a store: records reads and appends, can fail snapshot appends, and can run an
/// interfering write just before appends to aggregate streams (to force conflicts).
final class RecordingStore: ForwardingEventStore {
    struct Read: Sendable, Equatable {
        var stream: StreamID
        var from: UInt64
        var direction: ReadDirection
        var returned: Int
    }

    struct Append: Sendable, Equatable {
        var stream: StreamID
        var expected: ExpectedVersion
        var count: Int
        var succeeded: Bool
    }

    private struct State {
        var reads: [Read] = []
        var appends: [Append] = []
        var interferences = 0
    }

    let base: any EventStore
    let failSnapshotAppends: Bool
    /// How many appends to aggregate streams get an interfering write first.
    let interferenceLimit: Int
    let interference: @Sendable () async throws -> Void
    private let state = Lock(State())

    init(
        _ base: any EventStore,
        failSnapshotAppends: Bool = false,
        interferenceLimit: Int = 0,
        interference: @escaping @Sendable () async throws -> Void = {}
    ) {
        self.base = base
        self.failSnapshotAppends = failSnapshotAppends
        self.interferenceLimit = interferenceLimit
        self.interference = interference
    }

    var reads: [Read] { self.state.withLock { $0.reads } }
    var appends: [Append] { self.state.withLock { $0.appends } }
    var interferences: Int { self.state.withLock { $0.interferences } }

    func append(
        _ events: [EventData],
        to stream: StreamID,
        expecting expected: ExpectedVersion
    ) async throws(EventStoreError) -> AppendResult {
        let isSnapshot = stream.name.hasPrefix("$snapshot-")
        if !isSnapshot {
            let interfere = self.state.withLock { state in
                guard state.interferences < self.interferenceLimit else { return false }
                state.interferences += 1
                return true
            }
            if interfere {
                do {
                    try await self.interference()
                } catch {
                    throw EventStoreError(code: .io, stream: stream, message: "interference failed", cause: error)
                }
            }
        }
        if isSnapshot && self.failSnapshotAppends {
            self.record(Append(stream: stream, expected: expected, count: events.count, succeeded: false))
            throw EventStoreError(code: .io, stream: stream, message: "injected snapshot failure")
        }
        do {
            let result = try await self.base.append(events, to: stream, expecting: expected)
            self.record(Append(stream: stream, expected: expected, count: events.count, succeeded: true))
            return result
        } catch {
            self.record(Append(stream: stream, expected: expected, count: events.count, succeeded: false))
            throw error
        }
    }

    private func record(_ append: Append) {
        self.state.withLock { $0.appends.append(append) }
    }

    func readStream(
        _ stream: StreamID,
        from version: UInt64,
        direction: ReadDirection,
        limit: Int
    ) async throws(EventStoreError) -> [RecordedEvent] {
        let events = try await self.base.readStream(stream, from: version, direction: direction, limit: limit)
        let read = Read(stream: stream, from: version, direction: direction, returned: events.count)
        self.state.withLock { $0.reads.append(read) }
        return events
    }

}

/// Counts how often a command runs, from any task.
/// The clock's offsets at which something happened, shared by concurrent tasks.
final class OffsetLog: Sendable {
    private let offsets = Lock<[Duration]>([])

    func record(_ offset: Duration) {
        self.offsets.withLock { $0.append(offset) }
    }

    var values: [Duration] {
        self.offsets.withLock { $0 }
    }
}

final class RunCounter: Sendable {
    private let count = Lock(0)

    func increment() {
        self.count.withLock { $0 += 1 }
    }

    var value: Int {
        self.count.withLock { $0 }
    }
}
