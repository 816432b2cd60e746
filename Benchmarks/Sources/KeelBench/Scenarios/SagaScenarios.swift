import Foundation
import Keel
import KeelCore
import KeelEventSourcing
import KeelSagas

/// A saga that did not complete in a saga scenario: a benchmark of the happy path measures
/// nothing then.
struct SagaBenchFailure: Error, CustomStringConvertible {
    var description: String
}

/// What the saga scenarios share.
enum SagaBench {
    /// The journal entries of one completed run of ``BenchOrderSaga``, in order: the start, a
    /// started and a completed entry per step, the finish.
    static let journalTypes =
        ["saga.started"] + Array(repeating: ["saga.stepStarted", "saga.stepCompleted"], count: 4).flatMap { $0 }
        + ["saga.finished"]

    /// Runs order `index` as a saga, and checks that it completed.
    static func run(_ runner: SagaRunner, _ saga: BenchOrderSaga, index: Int) async throws {
        let id = SagaShop.orderID(index)
        let outcome = try await runner.run(saga, id: id, input: SagaShop.Order(id: id))
        guard case .completed = outcome else {
            throw SagaBenchFailure(description: "saga \(id) ended \(outcome.phase), not completed")
        }
    }

    /// The journal stream of order `id`, as the runner names it.
    static func stream(_ id: String) -> StreamID {
        StreamID("saga-\(BenchOrderSaga.name):\(id)")
    }

    /// The journal a run of ``BenchOrderSaga`` writes, read back from a probe run in a scratch
    /// in-memory store: the baseline of `saga.durable.16` appends events of these types, metadata
    /// and payloads (order ids are fixed width, so every run's entries have these sizes).
    static func probeJournal(_ requests: RequestClient) async throws -> [EventData] {
        let store = InMemoryEventStore()
        let runner = SagaRunner(store: store)
        try await Self.run(runner, BenchOrderSaga(requests: requests), index: 999_999_999)
        let events = try await store.readStream(
            Self.stream(SagaShop.orderID(999_999_999)),
            from: 0,
            direction: .forwards,
            limit: 100
        )
        await runner.shutdown()
        guard events.map(\.type) == Self.journalTypes else {
            throw SagaBenchFailure(description: "unexpected journal: \(events.map(\.type))")
        }
        return events.map {
            EventData(type: $0.type, schemaVersion: $0.schemaVersion, metadata: $0.metadata, payload: $0.payload)
        }
    }
}

/// `saga.inmemory.4`: one saga of four steps, journaled in an `InMemorySagaJournal`, against its
/// four requests made directly one after the other.
///
/// Both sides send the same four requests through the host's request channel
/// (``SagaShop/placeDirectly(_:_:)``: validate, charge, reserve, confirm, each to an actor
/// service of a started `ServiceHost`), one order after the other from the measuring task, with
/// the same fixed-width order ids and idempotency keys. Ours is
/// `runner.run(BenchOrderSaga(...), id:, input:)`: the reuse check (a lookup of the saga's
/// journal), ten journal entries kept in memory (the start, a started and a completed entry per
/// step, the finish; the input and outputs kept as values, not encoded), a trace context bound for
/// the run (`NoOpTelemetry` records no span, so none is started) and the step bookkeeping. Each
/// round of ours gets a fresh journal and runner, made before the clock starts, so that every round
/// journals into a journal of the same size.
final class SagaInMemoryScenario: Scenario {
    let metrics: [Metric]
    let workload = Workload.calibrated(minimum: 100)

    private var host: ServiceHost?
    /// The index of the next order either side places: every order id is used once.
    private var next = 0

    /// Creates the scenario.
    /// - Parameters:
    ///   - goal: The goal for the ratio, if any.
    ///   - recorded: The ratio recorded on the project's machine kind.
    init(goal: Double? = nil, recorded: Double?) {
        self.metrics = [
            Metric(
                name: "saga.inmemory.4",
                baseline:
                    "the saga's four requests (validate, charge, reserve, confirm) through host.client.send to "
                    + "three actor services, made directly in sequence from one task; ours: runner.run of the "
                    + "4-step saga (pay and reserve compensatable, confirm the pivot), journaled in an "
                    + "InMemorySagaJournal",
                unit: "saga",
                goal: goal,
                recorded: recorded
            )
        ]
    }

    func setUp() async throws {
        self.host = try await SagaShop.makeHost()
    }

    func runOurs(_ count: Int) async throws -> [Double] {
        let saga = BenchOrderSaga(requests: self.host!.client)
        let runner = SagaRunner(journal: InMemorySagaJournal())
        let base = self.next
        self.next += count
        let clock = ContinuousClock()
        let start = clock.now
        for index in base..<base + count {
            try await SagaBench.run(runner, saga, index: index)
        }
        let elapsed = start.duration(to: clock.now)
        await runner.shutdown()
        return [elapsed.nanoseconds / Double(count)]
    }

    func runBaseline(_ count: Int) async throws -> [Double] {
        let requests = self.host!.client
        let base = self.next
        self.next += count
        let clock = ContinuousClock()
        let start = clock.now
        for index in base..<base + count {
            let id = SagaShop.orderID(index)
            _ = try await SagaShop.placeDirectly(SagaShop.Order(id: id), requests)
        }
        return [start.duration(to: clock.now).nanoseconds / Double(count)]
    }

    func tearDown() async {
        await self.host?.shutdown()
        self.host = nil
    }
}

/// `saga.durable.16`: 16 concurrent sagas of four steps, journaled in a `FileEventStore` with
/// group commit, against the same journal appends made directly to a second file store.
///
/// Both sides: 16 tasks in a task group on the cooperative pool (one thread per core), each
/// placing its share of the orders one after the other; each order sends the same four requests
/// as `saga.inmemory.4` and writes ten journal events, one append each, to a stream of its own
/// (`saga-bench.order:<id>`), every append awaited until it is durable: a store with the default
/// configuration (`Durability.groupCommit`, one writer pthread) in a scratch directory. Ours is
/// `runner.run` of the saga. The baseline appends, around the same requests at the same points
/// (a step's started entry before its request, its completed entry after), events with the types,
/// metadata and payloads of a probe run's journal (the same sizes as ours: order ids are fixed
/// width), already encoded: what it leaves out is the saga itself (the reuse check's read,
/// encoding the entries, the span, the step bookkeeping). Reported per saga, so its rate is sagas
/// per second. `tearDown` checks that both stores hold ten events per saga, of the same types and
/// sizes, and prints the sagas each side ran (to divide `fsync` counts by: see the README).
final class SagaDurableScenario: Scenario {
    /// The concurrent sagas of each side.
    static let concurrency = 16

    let metrics: [Metric]
    /// At least 16 sagas per task, so that a quick round's median is not one unlucky `fsync`.
    let workload = Workload.calibrated(minimum: 256)

    private var directory = ""
    private var host: ServiceHost?
    private var store: FileEventStore?
    private var runner: SagaRunner?
    private var baselineStore: FileEventStore?
    private var journal: [EventData] = []
    private var next = 0
    private var oursSagas = 0
    private var baselineSagas = 0
    private var lastOurs: String?
    private var lastBaseline: String?

    /// Creates the scenario.
    /// - Parameters:
    ///   - goal: The goal for the ratio, if any.
    ///   - recorded: The ratio recorded on the project's machine kind.
    init(goal: Double? = nil, recorded: Double?) {
        self.metrics = [
            Metric(
                name: "saga.durable.16",
                baseline:
                    "the same 10 journal events per saga (types, metadata and payload sizes of the saga's own "
                    + "journal, pre-encoded), one append each to a stream per saga, around the same 4 requests; "
                    + "both sides: \(Self.concurrency) tasks on \(Machine.pool), file store group commit "
                    + "(one writer pthread); ours: runner.run of the 4-step saga",
                unit: "saga",
                goal: goal,
                recorded: recorded
            )
        ]
    }

    func setUp() async throws {
        self.directory = StoreBench.makeDirectory("saga")
        let host = try await SagaShop.makeHost()
        self.host = host
        self.journal = try await SagaBench.probeJournal(host.client)
        let store = try FileEventStore(
            directory: self.directory + "/ours",
            configuration: StoreBench.configuration(.groupCommit)
        )
        self.store = store
        self.runner = SagaRunner(store: store)
        self.baselineStore = try FileEventStore(
            directory: self.directory + "/baseline",
            configuration: StoreBench.configuration(.groupCommit)
        )
    }

    func runOurs(_ count: Int) async throws -> [Double] {
        guard let runner = self.runner, let host = self.host else { return [0] }
        let saga = BenchOrderSaga(requests: host.client)
        let perTask = max(1, count / Self.concurrency)
        let base = self.next
        self.next += perTask * Self.concurrency
        let clock = ContinuousClock()
        let start = clock.now
        try await withThrowingDiscardingTaskGroup { group in
            for task in 0..<Self.concurrency {
                group.addTask {
                    for index in base + task * perTask..<base + (task + 1) * perTask {
                        try await SagaBench.run(runner, saga, index: index)
                    }
                }
            }
        }
        let elapsed = start.duration(to: clock.now)
        self.oursSagas += perTask * Self.concurrency
        self.lastOurs = SagaShop.orderID(self.next - 1)
        return [elapsed.nanoseconds / Double(perTask * Self.concurrency)]
    }

    func runBaseline(_ count: Int) async throws -> [Double] {
        guard let store = self.baselineStore, let host = self.host else { return [0] }
        let requests = host.client
        let journal = self.journal
        let perTask = max(1, count / Self.concurrency)
        let base = self.next
        self.next += perTask * Self.concurrency
        let clock = ContinuousClock()
        let start = clock.now
        try await withThrowingDiscardingTaskGroup { group in
            for task in 0..<Self.concurrency {
                group.addTask {
                    for index in base + task * perTask..<base + (task + 1) * perTask {
                        try await Self.placeJournaled(index: index, requests, store, journal)
                    }
                }
            }
        }
        let elapsed = start.duration(to: clock.now)
        self.baselineSagas += perTask * Self.concurrency
        self.lastBaseline = SagaShop.orderID(self.next - 1)
        return [elapsed.nanoseconds / Double(perTask * Self.concurrency)]
    }

    /// The baseline's order: the four requests of ``SagaShop/placeDirectly(_:_:)``, with the
    /// journal's ten events appended where the saga appends them.
    private static func placeJournaled(
        index: Int,
        _ requests: RequestClient,
        _ store: FileEventStore,
        _ journal: [EventData]
    ) async throws {
        let id = SagaShop.orderID(index)
        let order = SagaShop.Order(id: id)
        let stream = SagaBench.stream(id)
        var entry = 0
        func append(_ expected: ExpectedVersion = .any) async throws {
            var event = journal[entry]
            event.metadata.id = EventID(high: 9, low: UInt64(index * 16 + entry))
            entry += 1
            try await store.append([event], to: stream, expecting: expected)
        }
        try await append(.noStream)
        try await append()
        let total = try await requests.send(SagaShop.ValidateOrder(order: order))
        try await append()
        try await append()
        let payment = try await requests.send(
            SagaShop.ChargePayment(user: order.user, amount: total, key: SagaShop.key(id, "pay"))
        )
        try await append()
        try await append()
        _ = try await requests.send(
            SagaShop.ReserveStock(item: order.item, quantity: order.quantity, key: SagaShop.key(id, "reserve"))
        )
        try await append()
        try await append()
        _ = try await requests.send(SagaShop.ConfirmOrder(orderID: id, paymentKey: payment.key))
        try await append()
        try await append()
    }

    func tearDown() async {
        if let store = self.store, let baseline = self.baselineStore, let ours = self.lastOurs,
            let theirs = self.lastBaseline
        {
            do {
                let oursHead = try await store.headPosition()
                let baselineHead = try await baseline.headPosition()
                let oursJournal = try await store.readStream(
                    SagaBench.stream(ours),
                    from: 0,
                    direction: .forwards,
                    limit: 100
                )
                let baselineJournal = try await baseline.readStream(
                    SagaBench.stream(theirs),
                    from: 0,
                    direction: .forwards,
                    limit: 100
                )
                let shape = { (events: [RecordedEvent]) in events.map { "\($0.type) \($0.payload.count)" } }
                precondition(
                    oursHead == UInt64(self.oursSagas * 10) && baselineHead == UInt64(self.baselineSagas * 10),
                    "heads \(oursHead) and \(baselineHead) for \(self.oursSagas) and \(self.baselineSagas) sagas"
                )
                precondition(
                    shape(oursJournal) == shape(baselineJournal),
                    "journals differ: \(shape(oursJournal)) against \(shape(baselineJournal))"
                )
                let bytes = oursJournal.reduce(0) { $0 + $1.payload.count }
                StandardError.writeLine(
                    "saga.durable.16: \(self.oursSagas) sagas ours (\(self.directory)/ours), \(self.baselineSagas) "
                        + "baseline (\(self.directory)/baseline), 10 events and \(bytes) payload bytes per saga"
                )
            } catch {
                StandardError.writeLine("saga.durable.16: cannot check the journals: \(error)")
            }
        }
        await self.runner?.shutdown()
        await self.store?.close()
        await self.baselineStore?.close()
        await self.host?.shutdown()
        self.host = nil
        if !self.directory.isEmpty { try? FileManager.default.removeItem(atPath: self.directory) }
    }
}
