// keel-crash-saga: the victim of the saga crash trials.
//
//     keel-crash-saga <directory> <seed> <prefix> <sagas> <concurrency>
//
// Opens a FileEventStore (group commit) in <directory> and a SagaRunner on it. It first calls
// `recover()` and waits until every saga it resumed has finished, then runs <sagas> new order
// sagas, `<prefix>-0` … `<prefix>-<sagas - 1>`, at most <concurrency> at a time (the even ones with
// `run`, the odd ones with `start` and then `outcome`), and waits to be killed. With <sagas> = 0 it
// only recovers, closes the store, says so, and waits to be killed.
//
// The sagas' services keep their effects in the same store: each effect is one event in the
// stream `effect-<idempotency key>` (type `effect.applied`, a JSON `CrashEffect`), appended before
// the step returns. An idempotent service first reads its key's stream and returns the effect
// recorded there instead of applying it again; a non-idempotent one just appends. The saga
// (`crash.order`):
//
//     pay        idempotent, compensated by refund
//     reserve    idempotent, with a retry of 2 attempts; compensated by release
//     notify     not idempotent, nothing to compensate
//     hold       not idempotent, compensated by unhold (in doubt after a crash: needs an operator)
//     confirm    the pivot, idempotent
//     ship       retriable
//
// What each saga does wrong is a pure function of <seed> and its id (`crashPlan(seed:id:)`, the
// same function as the test's): a step that its service rejects before applying anything, a reply
// of `reserve` lost after its effect was applied (the retry's second attempt finds the effect),
// and a first attempt of `ship` that fails after applying.
//
// Lines go to stdout with write(2), unbuffered, after what they report is durable:
//
//     ready
//     append <stream>              an append to the store returned (journal entries and effects)
//     recovered <id> <phase>       a saga that recovery resumed has finished
//     resumed <count>              recovery is done: <count> sagas were resumed and have finished
//     started <id>                 `start` returned: the saga's start is journaled
//     done <id> <phase>            a new saga has finished
//     idle                         every new saga is done; the process waits for the kill
//     finished                     (<sagas> = 0) the store is closed; the process waits for the kill
//     error <description>
//
// The test kills this process with SIGKILL at a random line, runs it again on the same directory
// (which recovers), several times, then once with <sagas> = 0, and checks the journals and the
// effects. An alarm ends the process after 60 seconds, so that a test never waits for it forever.

import Foundation
import KeelCore
import KeelEventSourcing
import KeelResilience
import KeelSagas
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
    // Never resumed, on purpose: nothing after this point may run.
    await withUnsafeContinuation { (_: UnsafeContinuation<Void, Never>) in }
    preconditionFailure("resumed a continuation nobody holds")
}

/// What one saga does wrong; the same type and function as the test's `CrashPlan`.
struct CrashPlan: Codable, Sendable, Hashable {
    var id: String
    var amount: Int
    var quantity: Int
    /// The step whose service rejects the call (before applying anything), if any.
    var failAt: String?
    /// Whether the first attempt of `reserve` applies its effect and then fails.
    var lostReply: Bool
    /// Whether the first attempt of `ship` applies its effect and then fails.
    var shipGlitch: Bool
}

/// The plan of saga `id` in a run seeded with `seed`: FNV-1a of `<seed>/<id>`, cut into fields.
func crashPlan(seed: UInt64, id: String) -> CrashPlan {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in "\(seed)/\(id)".utf8 {
        hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3
    }
    let failures = ["pay", "reserve", "notify", "hold", "confirm"]
    let failure = Int((hash >> 16) % 10)
    return CrashPlan(
        id: id,
        amount: 10 + Int(hash % 20),
        quantity: 1 + Int((hash >> 8) % 3),
        failAt: failure < failures.count ? failures[failure] : nil,
        lostReply: (hash >> 24) % 3 == 0,
        shipGlitch: (hash >> 32) % 3 == 0
    )
}

/// One effect of a service, as the store keeps it; the same type as the test's.
struct CrashEffect: Codable, Sendable, Hashable {
    var operation: String
    var saga: String
    var key: String
    var amount: Int
    /// For an undo: the key of the effect it undoes.
    var undoes: String?
}

struct Rejected: Error, CustomStringConvertible {
    var step: String
    var description: String { "injected rejection of \(self.step)" }
}

struct LostReply: Error, CustomStringConvertible {
    var step: String
    var description: String { "the reply of \(self.step) was lost after its effect" }
}

/// The store the runner and the services share: reports each append, and tells waiters when a
/// saga's journal records its outcome.
final class ReportingStore: ForwardingEventStore {
    struct State {
        var finished: Set<StreamID> = []
        var waiters: [StreamID: [CheckedContinuation<Void, Never>]] = [:]
    }

    let base: any EventStore
    private let state = Lock(State())

    init(base: any EventStore) {
        self.base = base
    }

    @discardableResult
    func append(
        _ events: [EventData],
        to stream: StreamID,
        expecting expected: ExpectedVersion
    ) async throws(EventStoreError) -> AppendResult {
        let result = try await self.base.append(events, to: stream, expecting: expected)
        say("append \(stream)")
        if events.contains(where: { $0.type == "saga.finished" }) {
            let waiters = self.state.withLock { state in
                state.finished.insert(stream)
                return state.waiters.removeValue(forKey: stream) ?? []
            }
            for waiter in waiters { waiter.resume() }
        }
        return result
    }

    /// Waits until an append to `stream` in this process records the saga's outcome.
    ///
    /// `SagaRunner.outcome(_:id:)` right after `recover()` may find a resumed saga neither
    /// finished nor claimed yet (recovery releases its claim before the saga's task takes it) and
    /// throw `suspended`, so the child waits for the journal instead, then reads the outcome.
    func waitUntilFinished(_ stream: StreamID) async {
        await withCheckedContinuation { continuation in
            let now = self.state.withLock { state -> Bool in
                if state.finished.contains(stream) { return true }
                state.waiters[stream, default: []].append(continuation)
                return false
            }
            if now { continuation.resume() }
        }
    }
}

/// The services: every effect is an event in the stream of its idempotency key.
struct Services: Sendable {
    let store: any EventStore
    let random: RandomSource

    func apply(
        _ operation: String,
        saga: String,
        key: String,
        amount: Int,
        undoes: String? = nil,
        isIdempotent: Bool
    ) async throws -> CrashEffect {
        let stream = StreamID("effect-\(key)")
        if isIdempotent,
            let recorded = try await self.store.readStream(stream, from: 0, direction: .forwards, limit: 1).first
        {
            return try JSONDecoder().decode(CrashEffect.self, from: Data(recorded.payload))
        }
        let effect = CrashEffect(operation: operation, saga: saga, key: key, amount: amount, undoes: undoes)
        let event = EventData(
            type: "effect.applied",
            metadata: EventMetadata(id: EventID.random(using: self.random), time: 0),
            payload: Array(try JSONEncoder().encode(effect))
        )
        try await self.store.append([event], to: stream, expecting: .any)
        return effect
    }
}

struct CrashOrder: Saga {
    static let name = "crash.order"
    let services: Services

    func run(_ plan: CrashPlan, saga: SagaContext) async throws -> String {
        let services = self.services
        let id = plan.id
        _ = try await saga.step("pay", .idempotent) { step in
            if plan.failAt == "pay" { throw Rejected(step: "pay") }
            return try await services.apply(
                "pay",
                saga: id,
                key: step.idempotencyKey,
                amount: plan.amount,
                isIdempotent: true
            )
        } compensate: { payment, step in
            _ = try await services.apply(
                "refund",
                saga: id,
                key: step.idempotencyKey,
                amount: payment.amount,
                undoes: payment.key,
                isIdempotent: true
            )
        }
        let retry = Retry(name: "reserve", configuration: .init(maxAttempts: 2, backoff: .immediate))
        _ = try await saga.step("reserve", SagaStepOptions(isIdempotent: true, retry: retry)) { step in
            if plan.failAt == "reserve" { throw Rejected(step: "reserve") }
            let reservation = try await services.apply(
                "reserve",
                saga: id,
                key: step.idempotencyKey,
                amount: plan.quantity,
                isIdempotent: true
            )
            if plan.lostReply, step.attempt == 1 { throw LostReply(step: "reserve") }
            return reservation
        } compensate: { reservation, step in
            _ = try await services.apply(
                "release",
                saga: id,
                key: step.idempotencyKey,
                amount: reservation.amount,
                undoes: reservation.key,
                isIdempotent: true
            )
        }
        _ = try await saga.step("notify") { step in
            if plan.failAt == "notify" { throw Rejected(step: "notify") }
            return try await services.apply(
                "notify",
                saga: id,
                key: step.idempotencyKey,
                amount: 0,
                isIdempotent: false
            )
        }
        _ = try await saga.step("hold") { step in
            if plan.failAt == "hold" { throw Rejected(step: "hold") }
            return try await services.apply("hold", saga: id, key: step.idempotencyKey, amount: 1, isIdempotent: false)
        } compensate: { hold, step in
            _ = try await services.apply(
                "unhold",
                saga: id,
                key: step.idempotencyKey,
                amount: hold.amount,
                undoes: hold.key,
                isIdempotent: true
            )
        }
        _ = try await saga.pivot("confirm", .idempotent) { step in
            if plan.failAt == "confirm" { throw Rejected(step: "confirm") }
            return try await services.apply(
                "confirm",
                saga: id,
                key: step.idempotencyKey,
                amount: 0,
                isIdempotent: true
            )
        }
        let parcel = try await saga.retriable("ship") { step in
            let parcel = try await services.apply(
                "ship",
                saga: id,
                key: step.idempotencyKey,
                amount: 0,
                isIdempotent: true
            )
            if plan.shipGlitch, step.attempt == 1 { throw LostReply(step: "ship") }
            return parcel
        }
        return parcel.key
    }
}

/// Recovers, then runs `sagas` new sagas, at most `concurrency` at a time; see the header.
func runChild(
    runner: SagaRunner,
    store: ReportingStore,
    services: Services,
    seed: UInt64,
    prefix: String,
    sagas: Int,
    concurrency: Int
) async throws {
    let resumed = try await runner.recover()
    for status in resumed {
        await store.waitUntilFinished(StreamID("saga-\(CrashOrder.name):\(status.id)"))
        let outcome = try await runner.outcome(CrashOrder.self, id: status.id)
        say("recovered \(status.id) \(outcome.phase.rawValue)")
    }
    say("resumed \(resumed.count)")
    try await withThrowingTaskGroup(of: Void.self) { group in
        var next = 0
        func add() {
            guard next < sagas else { return }
            let index = next
            next += 1
            group.addTask {
                let id = "\(prefix)-\(index)"
                let plan = crashPlan(seed: seed, id: id)
                let saga = CrashOrder(services: services)
                let outcome: SagaOutcome<String>
                if index % 2 == 0 {
                    outcome = try await runner.run(saga, id: id, input: plan)
                } else {
                    try await runner.start(saga, id: id, input: plan)
                    say("started \(id)")
                    outcome = try await runner.outcome(CrashOrder.self, id: id)
                }
                say("done \(id) \(outcome.phase.rawValue)")
            }
        }
        for _ in 0..<concurrency { add() }
        while try await group.next() != nil { add() }
    }
}

let arguments = CommandLine.arguments
guard arguments.count == 6, let seed = UInt64(arguments[2]), let sagas = Int(arguments[4]),
    let concurrency = Int(arguments[5]), sagas >= 0, concurrency >= 1
else {
    say("usage: keel-crash-saga <directory> <seed> <prefix> <sagas> <concurrency>")
    exit(2)
}
alarm(60)
// The trials run beside the rest of `swift test`, whose contention tests have time limits: the
// victims yield the processors to them. (Only the schedule changes, not what a kill interrupts.)
_ = nice(10)
let fileStore: FileEventStore
do {
    fileStore = try FileEventStore(directory: arguments[1])
} catch {
    say("error \(error)")
    exit(1)
}
let store = ReportingStore(base: fileStore)
// Event ids and jitter come from the system's generator: every process needs ids of its own.
let services = Services(store: store, random: RandomSource())
let runner = SagaRunner(
    store: store,
    configuration: .init(compensationBackoff: .immediate, retriableBackoff: .immediate)
)
runner.register(CrashOrder(services: services))
say("ready")
do {
    try await runChild(
        runner: runner,
        store: store,
        services: services,
        seed: seed,
        prefix: arguments[3],
        sagas: sagas,
        concurrency: concurrency
    )
} catch {
    say("error \(error)")
    exit(1)
}
if sagas > 0 {
    say("idle")
    await stopHere()
}
await fileStore.close()
say("finished")
await stopHere()
