import KeelEventSourcing
import KeelPostgres
import Testing

/// Two stores on one schema stand for two processes: each has its own pool, its own writer and
/// its own listener, and they share nothing but the server.
@Suite("PostgresEventStore across processes", .enabled(if: PostgresTestEnvironment.isEnabled), .timeLimit(.minutes(1)))
struct PostgresMultiProcessTests {
    /// What an appender was told about one append.
    struct Acknowledged: Sendable {
        var stream: StreamID
        var tags: [String]
        var result: AppendResult
    }

    static let appendersPerStore = 8
    static let appendsPerAppender = 24

    /// The events appender `appender`'s `index`-th append writes: single and multi-event
    /// appends, to the appender's own stream and to streams every appender shares.
    static func plan(store: Int, appender: Int, index: Int) -> (stream: StreamID, tags: [String], ownStream: Bool) {
        let prefix = "p\(store)-a\(appender)-\(index)"
        switch index % 4 {
        case 0: return (StreamID("own-\(store)-\(appender)"), [prefix], true)
        case 1: return (StreamID("own-\(store)-\(appender)"), (0..<3).map { "\(prefix).\($0)" }, true)
        case 2: return (StreamID("shared-\(appender % 3)"), [prefix], false)
        default: return (StreamID("shared-\(appender % 3)"), (0..<2).map { "\(prefix).\($0)" }, false)
        }
    }

    @Test("two processes append concurrently; a third sees every position once, in order")
    func gapFreeAcrossProcesses() async throws {
        let schema = PostgresTestEnvironment.freshSchema("procs")
        let configuration = try PostgresTestEnvironment.configuration(schema: schema)
        let first = try await PostgresEventStore.open(configuration: configuration)
        let second = try await PostgresEventStore.open(configuration: configuration)
        let observer = try await PostgresEventStore.open(configuration: configuration)

        var total = 0
        for store in 0..<2 {
            for appender in 0..<Self.appendersPerStore {
                for index in 0..<Self.appendsPerAppender {
                    total += Self.plan(store: store, appender: appender, index: index).tags.count
                }
            }
        }
        let expectedTotal = total

        enum Outcome: Sendable {
            case appended([Acknowledged])
            case observed([RecordedEvent])
        }
        var acknowledged: [Acknowledged] = []
        var observed: [RecordedEvent] = []
        try await withThrowingTaskGroup(of: Outcome.self) { group in
            group.addTask {
                var events: [RecordedEvent] = []
                for try await event in observer.subscribe(from: 0, pageSize: 50) {
                    events.append(event)
                    if events.count == expectedTotal { break }
                }
                return .observed(events)
            }
            for (storeIndex, store) in [first, second].enumerated() {
                for appender in 0..<Self.appendersPerStore {
                    group.addTask {
                        var acks: [Acknowledged] = []
                        var ownVersion: UInt64? = nil
                        for index in 0..<Self.appendsPerAppender {
                            let plan = Self.plan(store: storeIndex, appender: appender, index: index)
                            let expected: ExpectedVersion =
                                plan.ownStream ? (ownVersion.map { .exactly($0) } ?? .noStream) : .any
                            let result = try await store.append(
                                plan.tags.map { PostgresTestEnvironment.event($0) },
                                to: plan.stream,
                                expecting: expected
                            )
                            if plan.ownStream { ownVersion = result.streamVersion }
                            acks.append(Acknowledged(stream: plan.stream, tags: plan.tags, result: result))
                        }
                        return .appended(acks)
                    }
                }
            }
            for try await outcome in group {
                switch outcome {
                case .appended(let acks): acknowledged += acks
                case .observed(let events): observed = events
                }
            }
        }

        // Every position exactly once, in order, with no gap.
        #expect(observed.map(\.position) == Array(0..<UInt64(expectedTotal)))
        // Every acknowledged append is where it was told it landed, whole and in order.
        let byPosition = Dictionary(uniqueKeysWithValues: observed.map { ($0.position, $0) })
        #expect(acknowledged.reduce(0) { $0 + $1.tags.count } == expectedTotal)
        for ack in acknowledged {
            #expect(ack.result.positions.count == ack.tags.count)
            let events = ack.result.positions.compactMap { byPosition[$0] }
            #expect(events.map { $0.metadata.custom["tag"] ?? "" } == ack.tags)
            #expect(events.allSatisfy { $0.stream == ack.stream })
            if let last = ack.result.streamVersion {
                #expect(events.map(\.version) == Array((last + 1 - UInt64(ack.tags.count))...last))
            }
        }
        // Each stream's versions are contiguous from 0.
        let streams = Dictionary(grouping: observed, by: \.stream)
        for (stream, events) in streams {
            #expect(events.map(\.version) == Array(0..<UInt64(events.count)), "versions of \(stream)")
        }
        // Both processes wrote, and grouped their appends.
        #expect(first.statistics.committedAppends == Self.appendersPerStore * Self.appendsPerAppender)
        #expect(second.statistics.committedAppends == Self.appendersPerStore * Self.appendsPerAppender)
        #expect(try await first.headPosition() == UInt64(expectedTotal))

        await first.close()
        await second.close()
        await observer.close()
        try await PostgresTestEnvironment.dropSchema(schema)
    }
}
