import Foundation
import KeelCore
import KeelEventSourcing
import KeelTesting
import Testing

@testable import Keel

/// Each service's own storage: isolated namespaces in one host store, durable in a directory.
@Suite("Service storage", .timeLimit(.minutes(2)))
struct ServiceStorageTests {
    struct MissingEnvironment: Error {}

    static func event(_ text: String) -> EventData {
        EventData(
            type: "note.written",
            metadata: EventMetadata(id: EventID(high: 1, low: 1), time: 0),
            payload: Array(text.utf8)
        )
    }

    @Test("services see only their own streams and keys; the test host keeps them in memory")
    func isolation() async throws {
        let notes = Notes()
        let billing = Billing()
        try await TestHost.with(services: [notes, billing]) { _ in
            let mine = try await notes.storage()
            let theirs = try await billing.storage()
            try await mine.keyValues.put(Array("a".utf8), forKey: "shared-key")
            try await theirs.keyValues.put(Array("b".utf8), forKey: "shared-key")
            try await mine.events.append(Self.event("note"), to: "doc-1", expecting: .noStream)
            try await theirs.events.append(Self.event("invoice"), to: "doc-1", expecting: .noStream)

            #expect(try await mine.keyValues.value(forKey: "shared-key") == Array("a".utf8))
            #expect(try await theirs.keyValues.value(forKey: "shared-key") == Array("b".utf8))
            #expect(try await mine.events.readStream("doc-1").map(\.payload) == [Array("note".utf8)])
            #expect(try await theirs.events.readStream("doc-1").map(\.payload) == [Array("invoice".utf8)])
            let visible = try await mine.events.readAll(from: 0, limit: 100)
            #expect(visible.allSatisfy { !$0.stream.name.contains("billing") })
            #expect(mine.events.namespace == "notes" && theirs.events.namespace == "billing")
        }
    }

    @Test("a directory keeps each service's data between hosts; shutdown closes it")
    func durableBetweenHosts() async throws {
        let directory =
            FileManager.default.temporaryDirectory.path + "/keel-host-storage-\(UInt64.random(in: 0...UInt64.max))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var configuration = TestHost.defaultConfiguration
        configuration.storage = .directory(directory)

        let first = Notes()
        try await TestHost.with(services: [first], configuration: configuration) { _ in
            let storage = try await first.storage()
            try await storage.keyValues.put(Array("kept".utf8), forKey: "greeting")
            try await storage.events.append(Self.event("first run"), to: "log-1", expecting: .noStream)
        }
        await #expect(throws: EventStoreError.self) { _ = try await first.storage() }

        let second = Notes()
        try await TestHost.with(services: [second], configuration: configuration) { _ in
            let storage = try await second.storage()
            #expect(try await storage.keyValues.value(forKey: "greeting") == Array("kept".utf8))
            #expect(try await storage.events.readStream("log-1").map(\.payload) == [Array("first run".utf8)])
        }
    }

    @Test("key-value writes stay out of the event log: it holds only the services' events")
    func stateBesideTheLog() async throws {
        let directory =
            FileManager.default.temporaryDirectory.path + "/keel-host-state-\(UInt64.random(in: 0...UInt64.max))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var configuration = TestHost.defaultConfiguration
        configuration.storage = .directory(directory)
        let notes = Notes()
        try await TestHost.with(services: [notes], configuration: configuration) { _ in
            let storage = try await notes.storage()
            for index in 0..<50 {
                try await storage.keyValues.put(Array("value \(index)".utf8), forKey: "key\(index % 5)")
            }
            try await storage.events.append(Self.event("only event"), to: "log-1", expecting: .noStream)
            for reserved in ["", "state", "durable-mails"] {
                let error = await #expect(throws: KeyValueStoreError.self) {
                    _ = try await storage.keyValues(named: reserved)
                }
                #expect(error?.code == .invalidNamespace)
            }
            let model = try await storage.keyValues(named: "model")
            try await model.put([7], forKey: "key0")
            #expect(try await storage.keyValues.value(forKey: "key0") == Array("value 45".utf8))
        }
        let events = try FileEventStore(directory: directory)
        #expect(try await events.readAll(from: 0, limit: 100).map(\.stream.name) == ["notes/log-1"])
        await events.close()
        let state = try FileStateStore(directory: directory + "/state")
        #expect(state.keys(withPrefix: "", in: "notes/state") == (0..<5).map { "key\($0)" })
        #expect(try state.value(forKey: "key4", in: "notes/state") == Array("value 49".utf8))
        #expect(state.namespaces() == ["notes/model", "notes/state"])
        #expect(try state.value(forKey: "key0", in: "notes/model") == [7])
        await state.close()
    }

    @Test("key-value state an earlier version kept in the event log moves to the state store, once")
    func migratesEarlierStores() async throws {
        let directory =
            FileManager.default.temporaryDirectory.path + "/keel-host-migrate-\(UInt64.random(in: 0...UInt64.max))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // What an earlier version left: the service's key-value namespace as a stream of batches.
        do {
            let events = try FileEventStore(directory: directory)
            let old = try await EventStoreKeyValueStore.open(
                store: NamespacedEventStore(namespace: "notes", base: events),
                namespace: "state"
            )
            try await old.put(Array("kept".utf8), forKey: "greeting")
            try await old.put(Array("gone".utf8), forKey: "old")
            try await old.delete("old")
            await events.close()
        }
        var configuration = TestHost.defaultConfiguration
        configuration.storage = .directory(directory)
        let first = Notes()
        try await TestHost.with(services: [first], configuration: configuration) { _ in
            let storage = try await first.storage()
            #expect(try await storage.keyValues.value(forKey: "greeting") == Array("kept".utf8))
            #expect(await storage.keyValues.keys(withPrefix: "") == ["greeting"])
            try await storage.keyValues.put(Array("changed".utf8), forKey: "greeting")
            let stream = EventStoreKeyValueStore.stream(for: "state")
            #expect(try await storage.events.streamVersion(stream) == nil)  // deleted after the move
        }
        let second = Notes()
        try await TestHost.with(services: [second], configuration: configuration) { _ in
            let storage = try await second.storage()
            #expect(try await storage.keyValues.value(forKey: "greeting") == Array("changed".utf8))
        }
    }

    @Test("service names become distinct namespaces without a slash")
    func namespaces() {
        #expect(HostStorage.namespace(for: "billing") == "billing")
        #expect(HostStorage.namespace(for: "a/b") == "a%2Fb")
        #expect(HostStorage.namespace(for: "a%2Fb") == "a%252Fb")
        #expect(HostStorage.namespace(for: "") == "%")
    }

    actor Notes: ServiceActor {
        static let name: ServiceName = "notes"
        private var environment: ServiceEnvironment?

        func start(_ environment: ServiceEnvironment) async throws {
            self.environment = environment
        }

        func storage() async throws -> ServiceStorage {
            guard let environment = self.environment else { throw MissingEnvironment() }
            return try await environment.storage()
        }
    }

    actor Billing: ServiceActor {
        static let name: ServiceName = "billing"
        private var environment: ServiceEnvironment?

        func start(_ environment: ServiceEnvironment) async throws {
            self.environment = environment
        }

        func storage() async throws -> ServiceStorage {
            guard let environment = self.environment else { throw MissingEnvironment() }
            return try await environment.storage()
        }
    }
}
