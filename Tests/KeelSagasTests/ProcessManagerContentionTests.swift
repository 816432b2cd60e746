import Foundation
import Keel
import KeelCore
import KeelEventSourcing
import KeelSagas
import KeelTesting
import Testing

/// Many instances under concurrent events of two types, on the file-backed state store (whose
/// commits suspend): every instance's count must come out exact.
@Suite("Process managers under contention", .timeLimit(.minutes(2)))
struct ProcessManagerContentionTests {
    struct Tick: DomainEvent {
        static let eventType = "tally.tick"
        var key: String
    }

    struct Tock: DomainEvent {
        static let eventType = "tally.tock"
        var key: String
    }

    struct Emit: ServiceRequest {
        typealias Response = UInt64
        var key: String
        var isTick: Bool
    }

    /// Counts the ticks and tocks of each key: a handler that is not idempotent by itself, so a
    /// lost update or a double handling shows in the counts.
    struct Tally: ProcessManager {
        struct State: Codable, Sendable, Equatable {
            var ticks = 0
            var tocks = 0
        }

        static let name = "tally"

        func registerHandlers(_ handlers: inout ProcessHandlers<Self>) {
            handlers.on(Tick.self, correlatedBy: \.key) { _, state, _ in
                state = State(ticks: (state?.ticks ?? 0) + 1, tocks: state?.tocks ?? 0)
            }
            handlers.on(Tock.self, correlatedBy: \.key) { _, state, _ in
                state = State(ticks: state?.ticks ?? 0, tocks: (state?.tocks ?? 0) + 1)
            }
        }
    }

    /// Publishes ticks and tocks on request.
    actor Emitter: ServiceActor {
        static let name: ServiceName = "emitter"
        static let publishes: [any DomainEvent.Type] = [Tick.self, Tock.self]

        nonisolated func registerHandlers(_ handlers: inout RequestHandlers<Emitter>) {
            handlers.on(Emit.self) { _, emit, environment in
                let result =
                    emit.isTick
                    ? try await environment.publishDurably(Tick(key: emit.key))
                    : try await environment.publishDurably(Tock(key: emit.key))
                return result.positions.lowerBound
            }
        }
    }

    actor Counter: ServiceActor {
        static let name: ServiceName = "counter"
        let tally = ProcessManagerRunner(Tally())

        func start(_ environment: ServiceEnvironment) async throws {
            try await self.tally.start(in: environment)
        }

        func stop() async throws {
            await self.tally.stop()
        }
    }

    @Test("concurrent events of two types for 16 keys leave every key's count exact")
    func concurrentKeys() async throws {
        let directory = FileManager.default.temporaryDirectory.path + "/keel-pm-\(UInt64.random(in: 0...UInt64.max))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var configuration = TestHost.defaultConfiguration
        configuration.storage = .directory(directory)
        let keys = (0..<16).map { "key-\($0)" }
        let perKind = 8
        let counter = Counter()
        try await TestHost.with(Emitter(), counter, configuration: configuration) { test in
            let client = test.client
            let last = try await withThrowingTaskGroup(of: (Bool, UInt64).self) { group in
                for key in keys {
                    for index in 0..<(2 * perKind) {
                        group.addTask {
                            (index % 2 == 0, try await client.send(Emit(key: key, isTick: index % 2 == 0)))
                        }
                    }
                }
                var last: [Bool: UInt64] = [:]
                for try await (isTick, position) in group { last[isTick] = max(last[isTick] ?? 0, position) }
                return last
            }
            let subscriptions = await counter.tally.subscriptions
            try #require(subscriptions.count == 2)
            try await subscriptions[0].waitUntilDelivered(through: try #require(last[true]))
            try await subscriptions[1].waitUntilDelivered(through: try #require(last[false]))
            for key in keys {
                let instance = try #require(try await counter.tally.instance(for: key))
                #expect(instance.state == Tally.State(ticks: perKind, tocks: perKind), "\(key)")
                #expect(instance.handledCount == 2 * perKind, "\(key)")
            }
            for subscription in subscriptions {
                #expect(try await subscription.status().failed.isEmpty)
            }
        }
    }
}
