// keel-crash-projector: the victim of the projection crash tests.
//
//     keel-crash-projector <directory> <page-size> <stop>
//
// Opens a FileEventStore in <directory>, starts a ProjectionRunner there (users by email domain,
// its read model and checkpoint in the key-value namespace `projection.users` of the same store)
// and appends user events from index 0 up, one per append, while the runner follows them live.
// It writes one line to stdout with write(2), unbuffered, for each step:
//
//     ready
//     applied <position>       the projection has built its writes for the event (not committed)
//     committed <n> <c>        the runner's n-th commit (read model and checkpoint) is durable;
//                              it stored checkpoint <c>: every event before it is in the model
//
// <stop> chooses where the process stops to be killed, or `none` to run free:
//
//     apply:<n>    after the n-th `applied` line, the projection never returns: a kill lands
//                  between the projection's apply and the checkpoint's commit
//     commit:<n>   after the `committed <n> <c>` line, the commit never returns to the runner: a
//                  kill lands after the commit's append is durable, before the runner goes on
//                  (it may be handling the next page meanwhile, which it never commits)
//
// and says `stopped` there. The test kills this process with SIGKILL, reopens the store and
// checks that the read model and the checkpoint are in step. An alarm ends the process after 60
// seconds, so that a test never waits for it forever.

import KeelCore
import KeelEventSourcing
import KeelTesting
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

func say(_ line: String) {
    let bytes = Array((line + "\n").utf8)
    var written = 0
    while written < bytes.count {
        let result = bytes.withUnsafeBytes { write(1, $0.baseAddress! + written, bytes.count - written) }
        if result <= 0 { exit(3) }
        written += result
    }
}

/// Suspends the calling task for good: the test kills the process while it waits here.
func stopHere() async -> Never {
    say("stopped")
    // Never resumed, on purpose: nothing after this point may run.
    await withUnsafeContinuation { (_: UnsafeContinuation<Void, Never>) in }
    preconditionFailure("resumed a continuation nobody holds")
}

/// Where to stop, from the command line.
enum Stop {
    case none
    case apply(Int)
    case commit(Int)

    init?(_ text: String) {
        let parts = text.split(separator: ":")
        if parts == ["none"] {
            self = .none
        } else if parts.count == 2, let count = Int(parts[1]), count >= 1 {
            switch parts[0] {
            case "apply": self = .apply(count)
            case "commit": self = .commit(count)
            default: return nil
            }
        } else {
            return nil
        }
    }
}

// The events and the projection: the same names, fields and read-model keys as the fixtures'
// ProjectedUserRegistered, ProjectedUserEmailChanged and UsersByEmailDomain, which the test
// reads the read model with.

struct ProjectedUserRegistered: DomainEvent {
    static let eventType = "user.registered"
    var userID: String
    var email: String
    var name: String
}

struct ProjectedUserEmailChanged: DomainEvent {
    static let eventType = "user.email-changed"
    var userID: String
    var oldEmail: String
    var newEmail: String
}

/// Counts calls and stops at the chosen one.
final class Steps: Sendable {
    let stop: Stop
    private let applied = Lock(0)
    private let committed = Lock(0)

    init(_ stop: Stop) { self.stop = stop }

    func didApply(_ position: UInt64) async {
        let count = self.applied.withLock { count in
            count += 1
            return count
        }
        say("applied \(position)")
        if case .apply(let chosen) = self.stop, chosen == count { await stopHere() }
    }

    func didCommit(checkpoint: UInt64) async {
        let count = self.committed.withLock { count in
            count += 1
            return count
        }
        say("committed \(count) \(checkpoint)")
        if case .commit(let chosen) = self.stop, chosen == count { await stopHere() }
    }
}

struct UsersByEmailDomain: Projection {
    let name = "users-by-email-domain"
    let serializer = EventSerializer(
        registry: EventTypeRegistry([ProjectedUserRegistered.self, ProjectedUserEmailChanged.self])
    )
    let steps: Steps

    static func domain(of email: String) -> String {
        String(email.split(separator: "@").last ?? "")
    }

    func apply(_ event: RecordedEvent, to transaction: inout ReadModelTransaction) async throws {
        switch event.type {
        case ProjectedUserRegistered.eventType:
            let registered = try self.serializer.decode(event, as: ProjectedUserRegistered.self)
            transaction.put(Array(registered.email.utf8), forKey: "user/\(registered.userID)")
            transaction.put([], forKey: "domain/\(Self.domain(of: registered.email))/\(registered.userID)")
        case ProjectedUserEmailChanged.eventType:
            let changed = try self.serializer.decode(event, as: ProjectedUserEmailChanged.self)
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
        await self.steps.didApply(event.position)
    }
}

/// The read model's key-value store: reports each durable commit with the checkpoint it stored,
/// and stops after the chosen one.
struct CommitReportingStore: KeyValueStore {
    let base: EventStoreKeyValueStore
    let steps: Steps

    var namespace: String { self.base.namespace }

    func value(forKey key: String) async throws(KeyValueStoreError) -> [UInt8]? {
        await self.base.value(forKey: key)
    }

    func keys(withPrefix prefix: String) async -> [String] { await self.base.keys(withPrefix: prefix) }

    func commit(_ batch: KeyValueBatch) async throws(KeyValueStoreError) {
        try await self.base.commit(batch)
        // ProjectionStore keeps the checkpoint under "c", 8 bytes little-endian. Its commits
        // always store one, except a parked-event retry's (which this child never makes).
        var checkpoint: UInt64?
        for case .put(let key, let value) in batch.operations where key == "c" && value.count == 8 {
            checkpoint = value.reversed().reduce(0) { $0 << 8 | UInt64($1) }
        }
        guard let checkpoint else {
            say("error: a commit without a checkpoint")
            exit(1)
        }
        await self.steps.didCommit(checkpoint: checkpoint)
    }
}

/// The fixtures' `UserEvents.appendMix`, one user at a time: a registration, and for every
/// fourth user an email change to moved.org.
func appendUser(_ index: Int, to store: FileEventStore) async throws {
    let serializer = EventSerializer(
        registry: EventTypeRegistry([ProjectedUserRegistered.self, ProjectedUserEmailChanged.self])
    )
    let domain = index.isMultiple(of: 3) ? "example.com" : "keel.dev"
    let stream = StreamID("user-u\(index)")
    let registered = ProjectedUserRegistered(
        userID: "u\(index)",
        email: "user\(index)@\(domain)",
        name: "User \(index)"
    )
    let metadata = EventMetadata(id: EventID(high: UInt64(index), low: 7), time: Int64(index))
    try await store.append(try serializer.encode(registered, metadata: metadata), to: stream)
    if index.isMultiple(of: 4) {
        let changed = ProjectedUserEmailChanged(
            userID: "u\(index)",
            oldEmail: "user\(index)@\(domain)",
            newEmail: "user\(index)@moved.org"
        )
        let metadata = EventMetadata(id: EventID(high: UInt64(index + 1_000_000), low: 7), time: Int64(index))
        try await store.append(try serializer.encode(changed, metadata: metadata), to: stream)
    }
}

let arguments = CommandLine.arguments
guard arguments.count == 4, let pageSize = Int(arguments[2]), pageSize >= 1, let stop = Stop(arguments[3]) else {
    say("usage: keel-crash-projector <directory> <page-size> none|apply:<n>|commit:<n>")
    exit(2)
}
alarm(60)
// The trials run beside the rest of `swift test`: the victim yields the processors to it, so
// that a busy test process is not also raced by a child it has yet to kill. (Only the
// schedule changes, not what a kill can interrupt.)
_ = nice(10)
let steps = Steps(stop)
let runner: ProjectionRunner
let store: FileEventStore
do {
    store = try FileEventStore(directory: arguments[1])
    let keyValueStore = CommitReportingStore(
        base: try await EventStoreKeyValueStore.open(store: store, namespace: "projection.users"),
        steps: steps
    )
    var configuration = ProjectionRunner.Configuration()
    configuration.pageSize = pageSize
    runner = ProjectionRunner(
        projection: UsersByEmailDomain(steps: steps),
        eventStore: store,
        projectionStore: ProjectionStore(keyValueStore: keyValueStore),
        configuration: configuration
    )
} catch {
    say("error \(error)")
    exit(1)
}
await runner.start()
say("ready")
// Enough users that the test's kill always comes first; then the process waits to be killed.
do {
    for index in 0..<2_000 {
        try await appendUser(index, to: store)
    }
} catch {
    say("error \(error)")
    exit(1)
}
await stopHere()
