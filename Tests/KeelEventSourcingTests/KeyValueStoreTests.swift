import KeelCore
import KeelEventSourcing
import Testing

@Suite("EventStoreKeyValueStore", .timeLimit(.minutes(2)))
struct KeyValueStoreTests {
    @Test("get, put, delete and a batch, each batch one event")
    func getPutDeleteBatch() async throws {
        let store = InMemoryEventStore()
        let keyValues = try await EventStoreKeyValueStore.open(store: store, namespace: "settings")
        #expect(await keyValues.value(forKey: "theme") == nil)

        try await keyValues.put(Array("dark".utf8), forKey: "theme")
        #expect(await keyValues.value(forKey: "theme") == Array("dark".utf8))
        #expect(try await store.headPosition() == 1)

        var batch = KeyValueBatch()
        batch.put([1], forKey: "a/1")
        batch.put([2], forKey: "a/2")
        batch.put([3], forKey: "b/1")
        batch.delete("a/2")
        batch.put([4], forKey: "theme")
        try await keyValues.commit(batch)
        #expect(try await store.headPosition() == 2)
        #expect(await keyValues.keys(withPrefix: "a/") == ["a/1"])
        #expect(await keyValues.keys(withPrefix: "") == ["a/1", "b/1", "theme"])
        #expect(await keyValues.value(forKey: "theme") == [4])

        try await keyValues.delete("theme")
        #expect(await keyValues.value(forKey: "theme") == nil)
        try await keyValues.commit(KeyValueBatch())
        #expect(try await store.headPosition() == 3)
        let events = try await store.readStream(EventStoreKeyValueStore.stream(for: "settings"))
        #expect(events.map(\.type) == ["keel.kv.batch", "keel.kv.batch", "keel.kv.batch"])
    }

    @Test("namespaces are separate")
    func namespaces() async throws {
        let store = InMemoryEventStore()
        let first = try await EventStoreKeyValueStore.open(store: store, namespace: "one")
        let second = try await EventStoreKeyValueStore.open(store: store, namespace: "two")
        try await first.put([1], forKey: "k")
        #expect(await second.value(forKey: "k") == nil)
        let reopened = try await EventStoreKeyValueStore.open(store: store, namespace: "one")
        #expect(await reopened.value(forKey: "k") == [1])
    }

    @Test("batches survive closing and reopening a FileEventStore")
    func reopenDurability() async throws {
        let directory = TemporaryDirectory("kv")
        defer { directory.remove() }
        do {
            let store = try FileEventStore(directory: directory.path)
            let keyValues = try await EventStoreKeyValueStore.open(store: store, namespace: "orders")
            for index in 0..<20 {
                var batch = KeyValueBatch()
                batch.put(Array("v\(index)".utf8), forKey: "order/\(index)")
                if index >= 5 { batch.delete("order/\(index - 5)") }
                try await keyValues.commit(batch)
            }
            await store.close()
        }
        let store = try FileEventStore(directory: directory.path)
        let keyValues = try await EventStoreKeyValueStore.open(store: store, namespace: "orders")
        #expect(await keyValues.keys(withPrefix: "order/") == (15..<20).map { "order/\($0)" })
        #expect(await keyValues.value(forKey: "order/17") == Array("v17".utf8))
        await store.close()
    }

    @Test("a prefix delete drops the keys before it, earlier puts of its batch included, keeps later puts, and replays")
    func prefixDelete() async throws {
        let store = InMemoryEventStore()
        let keyValues = try await EventStoreKeyValueStore.open(store: store, namespace: "cart")
        var setup = KeyValueBatch()
        for key in ["item/1", "item/2", "items", "total"] { setup.put([1], forKey: key) }
        try await keyValues.commit(setup)
        var batch = KeyValueBatch()
        batch.put([2], forKey: "item/3")
        batch.deleteAll(withPrefix: "item/")
        batch.put([3], forKey: "item/4")
        try await keyValues.commit(batch)
        #expect(await keyValues.keys(withPrefix: "") == ["item/4", "items", "total"])
        let events = try await store.readStream(EventStoreKeyValueStore.stream(for: "cart"))
        #expect(events.count == 2, "one event per batch, the prefix delete one operation in it")

        let reopened = try await EventStoreKeyValueStore.open(store: store, namespace: "cart")
        #expect(await reopened.keys(withPrefix: "") == ["item/4", "items", "total"])
        var everything = KeyValueBatch()
        everything.deleteAll(withPrefix: "")
        try await reopened.commit(everything)
        #expect(await reopened.keys(withPrefix: "").isEmpty)
        let again = try await EventStoreKeyValueStore.open(store: store, namespace: "cart")
        #expect(await again.keys(withPrefix: "").isEmpty)
    }

    @Test("compaction snapshots the map; open starts at the snapshot and gives the same entries")
    func compaction() async throws {
        let directory = TemporaryDirectory("kv-compact")
        defer { directory.remove() }
        var configuration = EventStoreKeyValueStore.Configuration()
        configuration.compactionThreshold = 4
        let stream = EventStoreKeyValueStore.stream(for: "cart")
        do {
            let store = try FileEventStore(directory: directory.path)
            let keyValues = try await EventStoreKeyValueStore.open(
                store: store,
                namespace: "cart",
                configuration: configuration
            )
            for index in 0..<10 {
                try await keyValues.put([UInt8(index)], forKey: "item/\(index % 6)")
            }
            // 10 batches: snapshots after the 4th and the 8th, then 2 batches.
            let visible = try await store.readStream(stream)
            #expect(visible.map(\.type) == ["keel.kv.snapshot", "keel.kv.batch", "keel.kv.batch"])
            try await keyValues.compact()
            #expect(try await store.readStream(stream).map(\.type) == ["keel.kv.snapshot"])
            try await keyValues.delete("item/0")
            await store.close()
        }
        let store = try FileEventStore(directory: directory.path)
        let keyValues = try await EventStoreKeyValueStore.open(
            store: store,
            namespace: "cart",
            configuration: configuration
        )
        #expect(await keyValues.keys(withPrefix: "item/") == (1..<6).map { "item/\($0)" })
        #expect(await keyValues.value(forKey: "item/3") == [9])
        #expect(await keyValues.value(forKey: "item/5") == [5])
        await store.close()
    }

    @Test("many tasks committing batches concurrently lose nothing, in memory and after reopening")
    func concurrentBatches() async throws {
        let directory = TemporaryDirectory("kv-concurrent")
        defer { directory.remove() }
        let store = try FileEventStore(directory: directory.path)
        var configuration = EventStoreKeyValueStore.Configuration()
        configuration.compactionThreshold = 50
        let keyValues = try await EventStoreKeyValueStore.open(
            store: store,
            namespace: "c",
            configuration: configuration
        )
        try await withThrowingTaskGroup(of: Void.self) { group in
            for task in 0..<32 {
                group.addTask {
                    for round in 0..<10 {
                        var batch = KeyValueBatch()
                        batch.put([UInt8(round)], forKey: "t\(task)/r\(round)")
                        batch.put([UInt8(round)], forKey: "last/t\(task)")
                        try await keyValues.commit(batch)
                        // Read your own write.
                        #expect(await keyValues.value(forKey: "t\(task)/r\(round)") == [UInt8(round)])
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(await keyValues.count == 32 * 10 + 32)
        await store.close()
        let reopenedStore = try FileEventStore(directory: directory.path)
        let reopened = try await EventStoreKeyValueStore.open(store: reopenedStore, namespace: "c")
        #expect(await reopened.count == 32 * 10 + 32)
        for task in 0..<32 {
            #expect(await reopened.value(forKey: "last/t\(task)") == [9])
        }
        await reopenedStore.close()
    }

    @Test("a second writer of the same namespace conflicts")
    func conflict() async throws {
        let store = InMemoryEventStore()
        let first = try await EventStoreKeyValueStore.open(store: store, namespace: "n")
        let second = try await EventStoreKeyValueStore.open(store: store, namespace: "n")
        try await first.put([1], forKey: "k")
        let error = await #expect(throws: KeyValueStoreError.self) {
            try await second.put([2], forKey: "k")
        }
        #expect(error?.code == .conflict)
        #expect(await second.value(forKey: "k") == nil)
    }

    @Test("an event that is not a key-value record fails the open")
    func corrupted() async throws {
        let store = InMemoryEventStore()
        try await store.append(
            EventData(
                type: "keel.kv.batch",
                metadata: EventMetadata(id: EventID(high: 1, low: 1), time: 0),
                payload: [9]
            ),
            to: EventStoreKeyValueStore.stream(for: "bad")
        )
        let error = await #expect(throws: KeyValueStoreError.self) {
            _ = try await EventStoreKeyValueStore.open(store: store, namespace: "bad")
        }
        #expect(error?.code == .corrupted)
    }

    @Test("a failed append applies nothing")
    func failedAppend() async throws {
        let store = FailingEventStore(InMemoryEventStore(), failAfter: 1)
        let keyValues = try await EventStoreKeyValueStore.open(store: store, namespace: "f")
        try await keyValues.put([1], forKey: "a")
        var batch = KeyValueBatch()
        batch.put([2], forKey: "a")
        batch.put([3], forKey: "b")
        let error = await #expect(throws: KeyValueStoreError.self) { try await keyValues.commit(batch) }
        #expect(error?.code == .storeFailed)
        #expect(await keyValues.value(forKey: "a") == [1])
        #expect(await keyValues.value(forKey: "b") == nil)
    }

    @Test("migrate moves a namespace into a state store once; after a crash between move and delete it only deletes")
    func migrate() async throws {
        let events = InMemoryEventStore()
        let old = try await EventStoreKeyValueStore.open(store: events, namespace: "settings")
        try await old.put(Array("dark".utf8), forKey: "theme")
        try await old.put([1], forKey: "a")
        try await old.compact()
        try await old.put([2], forKey: "b")
        let state = InMemoryStateStore()
        let target = state.namespace("svc/settings")
        #expect(try await EventStoreKeyValueStore.migrate(namespace: "settings", from: events, to: target) == 3)
        #expect(await target.keys(withPrefix: "") == ["a", "b", "theme"])
        #expect(try await target.value(forKey: "theme") == Array("dark".utf8))
        #expect(try await events.streamVersion(EventStoreKeyValueStore.stream(for: "settings")) == nil)
        // Nothing left to move: a second call changes nothing.
        try await target.put([9], forKey: "a")
        #expect(try await EventStoreKeyValueStore.migrate(namespace: "settings", from: events, to: target) == 0)
        #expect(try await target.value(forKey: "a") == [9])

        // As after a crash between the move and the deletion: the target holds the entries and the
        // stream is still there. Only the deletion happens.
        let again = try await EventStoreKeyValueStore.open(store: events, namespace: "other")
        try await again.put([5], forKey: "x")
        let moved = state.namespace("svc/other")
        try await moved.put([6], forKey: "x")
        #expect(try await EventStoreKeyValueStore.migrate(namespace: "other", from: events, to: moved) == 0)
        #expect(try await moved.value(forKey: "x") == [6])
        #expect(try await events.streamVersion(EventStoreKeyValueStore.stream(for: "other")) == nil)
    }
}
