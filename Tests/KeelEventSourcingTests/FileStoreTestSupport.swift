import Foundation
import KeelCore
import KeelEventSourcing

/// A fresh directory under the system's temporary directory, removed by ``remove()``.
struct TemporaryDirectory: Sendable {
    let path: String

    init(_ label: String = "store") {
        let base = FileManager.default.temporaryDirectory.path
        self.path = "\(base)/keel-\(label)-\(UInt64.random(in: 0...UInt64.max))"
        try? FileManager.default.createDirectory(atPath: self.path, withIntermediateDirectories: true)
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: self.path)
    }

    /// The segment files, sorted.
    func segments() -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: self.path)) ?? []
        return names.filter { $0.hasPrefix("segment-") }.sorted().map { "\(self.path)/\($0)" }
    }

    func bytes(of file: String) -> [UInt8] {
        Array(FileManager.default.contents(atPath: file) ?? Data())
    }

    func write(_ bytes: [UInt8], to file: String) {
        _ = FileManager.default.createFile(atPath: file, contents: Data(bytes))
    }

    /// The store's high-water mark file.
    var markFile: String { "\(self.path)/HIGHWATER" }
}

enum FileStoreFixtures {
    static func event(_ index: Int, payloadSize: Int = 40) -> EventData {
        let payload = (0..<payloadSize).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ index) }
        return EventData(
            type: "test.indexed",
            schemaVersion: 1 + index % 3,
            metadata: EventMetadata(
                id: EventID(high: UInt64(index), low: 0xABCD),
                time: Int64(index) * 1_000,
                correlationID: index.isMultiple(of: 2) ? "c-\(index)" : nil,
                causationID: index.isMultiple(of: 3) ? "x-\(index)" : nil,
                traceID: index.isMultiple(of: 5) ? TraceID(high: 1, low: UInt64(index)) : nil,
                spanID: index.isMultiple(of: 7) ? SpanID(rawValue: UInt64(index)) : nil,
                custom: index.isMultiple(of: 4) ? ["k": "v\(index)", "a": ""] : [:]
            ),
            payload: payload
        )
    }

    static func configuration(
        segmentSize: Int = 64 << 20,
        durability: FileEventStore.Durability = .none,
        recovery: FileEventStore.Recovery = .strict
    ) -> FileEventStore.Configuration {
        var configuration = FileEventStore.Configuration()
        configuration.segmentSize = segmentSize
        configuration.durability = durability
        configuration.recovery = recovery
        return configuration
    }

    /// Writes `count` events, one per append, to streams `s-0`…`s-2`, and closes the store; then
    /// puts back the high-water mark as it was before the last event, as after a crash that wrote
    /// the last append but no mark covering it (which a clean close writes). What damage at the
    /// tail then looks like is what a crash leaves.
    static func populateWithUnmarkedTail(_ directory: TemporaryDirectory, count: Int) async throws {
        try await populate(directory, count: count - 1)
        let mark = directory.bytes(of: directory.markFile)
        let store = try FileEventStore(directory: directory.path, configuration: configuration())
        try await store.append(event(count - 1), to: StreamID("s-\((count - 1) % 3)"))
        await store.close()
        directory.write(mark, to: directory.markFile)
    }

    /// Writes `count` events, one per append, to streams `s-0`…`s-2`, and closes the store.
    static func populate(_ directory: TemporaryDirectory, count: Int, segmentSize: Int = 64 << 20) async throws {
        let store = try FileEventStore(
            directory: directory.path,
            configuration: configuration(segmentSize: segmentSize)
        )
        for index in 0..<count {
            try await store.append(event(index), to: StreamID("s-\(index % 3)"))
        }
        await store.close()
    }
}
