import KeelCore
import KeelEventSourcing
import Testing

/// A page is handled while the commit of the page before it runs: these tests hold a commit and
/// check what the runner does meanwhile and after.
@Suite("ProjectionRunner commits one page while it handles the next", .timeLimit(.minutes(2)))
struct ProjectionPipelineTests {
    /// Counts the events in one key (read, then overwritten) and checks, at each event, that the
    /// `seen/` keys it can list agree with the count: both read the earlier pages' writes, whether
    /// committed or still committing. Reports each apply.
    struct Counting: Projection {
        struct Mismatch: Error {}

        let name = "counting"
        let applies: AsyncStream<UInt64>.Continuation

        func apply(_ event: RecordedEvent, to transaction: inout ReadModelTransaction) async throws {
            let count = try await transaction.value(forKey: "count").map { Self.number($0) } ?? 0
            guard await transaction.keys(withPrefix: "seen/").count == count else { throw Mismatch() }
            transaction.put(Array(String(count + 1).utf8), forKey: "count")
            transaction.put([], forKey: "seen/\(event.position)")
            self.applies.yield(event.position)
        }

        static func number(_ bytes: [UInt8]) -> Int { Int(String(decoding: bytes, as: UTF8.self)) ?? -1 }
    }

    /// A key-value store whose commit number `held` waits for ``release()``, and whose commit
    /// number `failing`, if any, fails.
    actor HeldCommits: KeyValueStore {
        nonisolated let namespace = "held"
        nonisolated let entered: AsyncStream<Int>
        private let enteredContinuation: AsyncStream<Int>.Continuation
        private let base = InMemoryStateStore().namespace("held")
        private let held: Int
        private let failing: Int?
        private var commits = 0
        private var isReleased = false
        private var gate: CheckedContinuation<Void, Never>?

        init(holding held: Int, failing: Int? = nil) {
            self.held = held
            self.failing = failing
            (self.entered, self.enteredContinuation) = AsyncStream.makeStream()
        }

        func value(forKey key: String) async throws(KeyValueStoreError) -> [UInt8]? {
            try await self.base.value(forKey: key)
        }

        func keys(withPrefix prefix: String) async -> [String] { await self.base.keys(withPrefix: prefix) }

        func commit(_ batch: KeyValueBatch) async throws(KeyValueStoreError) {
            self.commits += 1
            let number = self.commits
            if number == self.held && !self.isReleased {
                self.enteredContinuation.yield(number)
                await withCheckedContinuation { self.gate = $0 }
            }
            if number == self.failing {
                throw KeyValueStoreError(
                    code: .storeFailed,
                    namespace: self.namespace,
                    message: "commit \(number) fails"
                )
            }
            try await self.base.commit(batch)
        }

        func release() {
            self.isReleased = true
            self.gate?.resume()
            self.gate = nil
        }
    }

    /// Twelve events in an in-memory store; the position of the last.
    static func events() async throws -> (InMemoryEventStore, UInt64) {
        let store = InMemoryEventStore()
        var last: UInt64 = 0
        for index in 0..<12 {
            let metadata = EventMetadata(id: EventID(high: UInt64(index), low: 1), time: Int64(index))
            let event = EventData(type: "counted", metadata: metadata, payload: [UInt8(index)])
            last = try await store.append(event, to: StreamID("counted-\(index)")).positions.lowerBound
        }
        return (store, last)
    }

    static func runner(
        _ events: InMemoryEventStore,
        _ held: HeldCommits,
        _ applies: AsyncStream<UInt64>.Continuation
    ) -> ProjectionRunner {
        var configuration = ProjectionRunner.Configuration()
        configuration.pageSize = 3
        configuration.maxAttempts = 1
        configuration.poisonEvents = .stop
        return ProjectionRunner(
            projection: Counting(applies: applies),
            eventStore: events,
            projectionStore: ProjectionStore(keyValueStore: held),
            configuration: configuration
        )
    }

    @Test("the next page reads the committing page's writes; the checkpoint moves only when the commit returns")
    func handlesWhileCommitting() async throws {
        let (events, last) = try await Self.events()
        let held = HeldCommits(holding: 1)
        let (applies, appliesContinuation) = AsyncStream<UInt64>.makeStream()
        let runner = Self.runner(events, held, appliesContinuation)
        await runner.start()
        var entered = held.entered.makeAsyncIterator()
        #expect(await entered.next() == 1)
        // While the first page's commit is held, the second page is handled, reading the first
        // page's writes (the projection checks its count against its keys).
        var applied: [UInt64] = []
        var iterator = applies.makeAsyncIterator()
        while applied.count < 6, let position = await iterator.next() { applied.append(position) }
        #expect(applied == Array(0..<6))
        #expect(try await runner.checkpoint() == 0)
        #expect(try await held.value(forKey: "m/count") == nil)

        await held.release()
        try await runner.waitUntilCaughtUp(to: last)
        await runner.stop()
        #expect(await runner.lastFailure == nil)
        let model = runner.projectionStore
        #expect(try await model.value(forKey: "count").map { Counting.number($0) } == 12)
        #expect(await model.keys(withPrefix: "seen/").count == 12)
        #expect(try await runner.checkpoint() == last + 1)
    }

    @Test("when a commit fails, the page handled meanwhile is discarded and the runner fails")
    func failedCommitDiscardsNextPage() async throws {
        let (events, last) = try await Self.events()
        let held = HeldCommits(holding: 2, failing: 2)
        let (applies, appliesContinuation) = AsyncStream<UInt64>.makeStream()
        let runner = Self.runner(events, held, appliesContinuation)
        await runner.start()
        var entered = held.entered.makeAsyncIterator()
        #expect(await entered.next() == 2)
        var applied: [UInt64] = []
        var iterator = applies.makeAsyncIterator()
        while applied.count < 9, let position = await iterator.next() { applied.append(position) }
        #expect(try await runner.checkpoint() == 3)

        await held.release()
        let failure = await #expect(throws: ProjectionError.self) { try await runner.waitUntilCaughtUp(to: last) }
        #expect(failure?.code == .storage)
        await runner.stop()
        #expect(await runner.lastFailure?.code == .storage)
        // Only the first page is stored: neither the failed page nor the one handled during it.
        let model = runner.projectionStore
        #expect(try await model.value(forKey: "count").map { Counting.number($0) } == 3)
        #expect(await model.keys(withPrefix: "seen/") == ["seen/0", "seen/1", "seen/2"])
        #expect(try await model.checkpoint() == 3)
    }
}
