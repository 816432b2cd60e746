import KeelCore
import KeelEventSourcing
import KeelTesting
import Synchronization

// The seed's CQRS example: a read model of users by email domain.

struct ProjectedUserRegistered: DomainEvent, Equatable {
    static let eventType = "user.registered"
    var userID: String
    var email: String
    var name: String
}

struct ProjectedUserEmailChanged: DomainEvent, Equatable {
    static let eventType = "user.email-changed"
    var userID: String
    var oldEmail: String
    var newEmail: String
}

/// Makes poison events on demand: events of the listed users fail while they are listed. Counts
/// every call per position.
final class PoisonSwitch: Sendable {
    private struct State {
        var poisoned: Set<String> = []
        var calls: [UInt64: Int] = [:]
    }

    private let state = Lock(State())

    func poison(_ userID: String) {
        self.state.withLock { _ = $0.poisoned.insert(userID) }
    }

    func cure(_ userID: String) {
        self.state.withLock { _ = $0.poisoned.remove(userID) }
    }

    func calls(at position: UInt64) -> Int {
        self.state.withLock { $0.calls[position] ?? 0 }
    }

    func check(_ userID: String, at position: UInt64) throws {
        let isPoisoned = self.state.withLock { state in
            state.calls[position, default: 0] += 1
            return state.poisoned.contains(userID)
        }
        if isPoisoned { throw PoisonError(userID: userID) }
    }
}

struct PoisonError: Error, CustomStringConvertible {
    var userID: String
    var description: String { "poisoned \(self.userID)" }
}

/// Users by email domain: `user/<id>` holds the email, `domain/<domain>/<id>` indexes it, and
/// `seen/<position>` plus the counter `applied` prove each event was applied exactly once.
struct UsersByEmailDomain: Projection {
    let name = "users-by-email-domain"
    let serializer = EventSerializer(
        registry: EventTypeRegistry([ProjectedUserRegistered.self, ProjectedUserEmailChanged.self])
    )
    var poison = PoisonSwitch()

    static func domain(of email: String) -> String {
        String(email.split(separator: "@").last ?? "")
    }

    func apply(_ event: RecordedEvent, to transaction: inout ReadModelTransaction) async throws {
        switch event.type {
        case ProjectedUserRegistered.eventType:
            let registered = try self.serializer.decode(event, as: ProjectedUserRegistered.self)
            try self.poison.check(registered.userID, at: event.position)
            transaction.put(Array(registered.email.utf8), forKey: "user/\(registered.userID)")
            transaction.put([], forKey: "domain/\(Self.domain(of: registered.email))/\(registered.userID)")
        case ProjectedUserEmailChanged.eventType:
            let changed = try self.serializer.decode(event, as: ProjectedUserEmailChanged.self)
            try self.poison.check(changed.userID, at: event.position)
            if let old = try await transaction.value(forKey: "user/\(changed.userID)") {
                let oldDomain = Self.domain(of: String(decoding: old, as: UTF8.self))
                transaction.delete("domain/\(oldDomain)/\(changed.userID)")
            }
            transaction.put(Array(changed.newEmail.utf8), forKey: "user/\(changed.userID)")
            transaction.put([], forKey: "domain/\(Self.domain(of: changed.newEmail))/\(changed.userID)")
        default:
            return
        }
        let applied =
            try await transaction.value(forKey: "applied").map { Int(String(decoding: $0, as: UTF8.self)) ?? 0 } ?? 0
        transaction.put(Array(String(applied + 1).utf8), forKey: "applied")
        transaction.put([], forKey: "seen/\(event.position)")
    }

    /// The users (ids) whose email is at `domain`, from a projection store.
    static func users(at domain: String, in store: ProjectionStore) async -> [String] {
        let prefix = "domain/\(domain)/"
        return await store.keys(withPrefix: prefix).map { String($0.dropFirst(prefix.count)) }
    }

    static func applied(in store: ProjectionStore) async throws -> Int {
        try await store.value(forKey: "applied").map { Int(String(decoding: $0, as: UTF8.self)) ?? -1 } ?? 0
    }

    static func seen(in store: ProjectionStore) async -> [UInt64] {
        await store.keys(withPrefix: "seen/").compactMap { UInt64($0.dropFirst("seen/".count)) }.sorted()
    }
}

enum UserEvents {
    static let serializer = EventSerializer(
        registry: EventTypeRegistry([ProjectedUserRegistered.self, ProjectedUserEmailChanged.self])
    )

    static func registered(_ index: Int, domain: String) -> EventData {
        let event = ProjectedUserRegistered(userID: "u\(index)", email: "user\(index)@\(domain)", name: "User \(index)")
        return try! self.serializer.encode(event, metadata: self.metadata(index))
    }

    static func changed(_ index: Int, from old: String, to new: String) -> EventData {
        let event = ProjectedUserEmailChanged(
            userID: "u\(index)",
            oldEmail: "user\(index)@\(old)",
            newEmail: "user\(index)@\(new)"
        )
        return try! self.serializer.encode(event, metadata: self.metadata(index + 1_000_000))
    }

    static func metadata(_ index: Int) -> EventMetadata {
        EventMetadata(id: EventID(high: UInt64(index), low: 7), time: Int64(index))
    }

    /// Appends a deterministic mix of registrations and email changes; returns the last position.
    @discardableResult
    static func appendMix(count: Int, to store: any EventStore, offset: Int = 0) async throws -> UInt64 {
        var last: UInt64 = 0
        for index in offset..<(offset + count) {
            let domain = index.isMultiple(of: 3) ? "example.com" : "keel.dev"
            let stream = StreamID("user-u\(index)")
            last = try await store.append(registered(index, domain: domain), to: stream).positions.lowerBound
            if index.isMultiple(of: 4) {
                last = try await store.append(changed(index, from: domain, to: "moved.org"), to: stream)
                    .positions.lowerBound
            }
        }
        return last
    }

    /// What the read model should say about `domain` after every event before `checkpoint`.
    static func expectedUsers(
        at domain: String,
        in store: any EventStore,
        before checkpoint: UInt64
    ) async throws
        -> [String]
    {
        var emails: [String: String] = [:]
        for event in try await store.readAll(from: 0, limit: max(1, Int(checkpoint))) where event.position < checkpoint
        {
            switch event.type {
            case ProjectedUserRegistered.eventType:
                let registered = try self.serializer.decode(event, as: ProjectedUserRegistered.self)
                emails[registered.userID] = registered.email
            case ProjectedUserEmailChanged.eventType:
                let changed = try self.serializer.decode(event, as: ProjectedUserEmailChanged.self)
                emails[changed.userID] = changed.newEmail
            default:
                break
            }
        }
        return emails.filter { UsersByEmailDomain.domain(of: $0.value) == domain }.keys.sorted()
    }
}

/// An event store that fails every append after the first `budget` ones, as a crash would: the
/// appends before it are whole, the rest never happen.
final class FailingEventStore: ForwardingEventStore {
    let base: any EventStore
    private let budget: Lock<Int>

    init(_ base: any EventStore, failAfter budget: Int) {
        self.base = base
        self.budget = Lock(budget)
    }

    func append(
        _ events: [EventData],
        to stream: StreamID,
        expecting expected: ExpectedVersion
    ) async throws(EventStoreError) -> AppendResult {
        let allowed = self.budget.withLock { budget in
            defer { budget -= 1 }
            return budget > 0
        }
        guard allowed else { throw EventStoreError(code: .io, stream: stream, message: "simulated crash") }
        return try await self.base.append(events, to: stream, expecting: expected)
    }

}

/// A runner over an in-memory store, with its key-value store in the same event store.
func makeRunner(
    store: any EventStore,
    projection: UsersByEmailDomain = UsersByEmailDomain(),
    namespace: String = "projection.users",
    configuration: ProjectionRunner.Configuration = ProjectionRunner.Configuration(),
    clock: some Clock<Duration> = ContinuousClock(),
    random: RandomSource = RandomSource(),
    telemetry: any Telemetry = NoOpTelemetry()
) async throws -> ProjectionRunner {
    let keyValueStore = try await EventStoreKeyValueStore.open(store: store, namespace: namespace)
    return ProjectionRunner(
        projection: projection,
        eventStore: store,
        projectionStore: ProjectionStore(keyValueStore: keyValueStore),
        configuration: configuration,
        clock: clock,
        random: random,
        telemetry: telemetry
    )
}
