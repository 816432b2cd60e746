import Foundation
import KeelCore
import KeelTestSupport
import KeelTesting
import Testing

@testable import KeelEventSourcing

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads and `close()` never race: a read in flight when the store closes reads with the
/// descriptors it took, which stay open until it is done, never with a closed or reused one.
@Suite("File event store closing under reads", .timeLimit(.minutes(2)))
struct FileStoreCloseRaceTests {
    typealias Fixtures = FileStoreFixtures

    @Test(
        "a read holding its descriptors when close() runs, while another store reuses descriptors, still reads its events"
    )
    func readAcrossClose() async throws {
        let directory = TemporaryDirectory("close-race")
        let other = TemporaryDirectory("close-race-other")
        defer {
            directory.remove()
            other.remove()
        }
        try await Fixtures.populate(directory, count: 300)
        try await Fixtures.populate(other, count: 10)
        var configuration = Fixtures.configuration()
        let faults = FileStoreFaults()
        configuration.faults = faults
        let store = try FileEventStore(directory: directory.path, configuration: configuration)
        // The read stops after it took the segments' descriptors, before it reads them.
        let arrived = OneShotSignal()
        let release = DispatchSemaphore(value: 0)
        faults.beforeNextRead {
            arrived.signal()
            release.wait()
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            // The read blocks a thread of its own, not one of the cooperative pool's (two here),
            // which the test and the tests running beside it need meanwhile.
            group.addTask(executorPreference: MarkedExecutor()) {
                let events = try await store.readAll(from: 0, limit: .max)
                #expect(events.map(\.position) == Array(0..<300))
            }
            await arrived.wait()
            await store.close()
            // Descriptors the store closed would be the first the next open gets.
            let reusing = try FileEventStore(directory: other.path, configuration: Fixtures.configuration())
            release.signal()
            try await group.waitForAll()
            #expect(try await reusing.readAll(from: 0, limit: .max).count == 10)
            await reusing.close()
        }
        await #expect(throws: EventStoreError.self) { _ = try await store.readAll(from: 0, limit: 1) }
    }
}
