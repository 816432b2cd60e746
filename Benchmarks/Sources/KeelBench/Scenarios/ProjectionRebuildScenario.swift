import Foundation
import KeelCore
import KeelEventSourcing

/// `projection.rebuild.1m`: rebuilding a read model ("users by email domain") from 1,000,000
/// events (20,000 with `--quick`) in an in-memory store, against the bare work of the projection:
/// the same JSON decoding and dictionary updates in a plain loop over the same payloads.
///
/// Both sides decode alike: one `JSONDecoder`, made once with the projection and shared by both
/// sides for the whole run (as `JSONEventCodec` holds one), decoding `Data(payload)` made per
/// event from the stored `[UInt8]` payload (the shape `RecordedEvent.payload` has, and what
/// `JSONEventCodec` passes its decoder). Ours is `ProjectionRunner.rebuild()` then
/// `waitUntilCaughtUp(to:)` the last position: reading pages of 256 from the store, decoding,
/// recording writes in a transaction, and committing each page with its checkpoint to a
/// key-value store (itself event-sourced in a second in-memory store), on the runner's actor.
/// The baseline is the loop on the measuring task: decode, then two dictionary updates. Both run
/// one task at a time. The report gives ns per event (events/s is its inverse); the peak resident
/// memory of the process after the last rebuild is written to standard error.
final class ProjectionRebuildScenario: Scenario {
    let metrics: [Metric]
    let workload = Workload.fixed(full: 1_000_000, quick: 20_000)

    private let events = InMemoryEventStore()
    private let readModels = InMemoryEventStore()
    private var runner: ProjectionRunner?
    private var stored = 0
    private var payloads: [[UInt8]] = []
    private let projection = UsersByDomain()

    /// The read model of the benchmark: user id → email, and `domain/<domain>/<id>` keys.
    struct UsersByDomain: Projection {
        let name = "bench-users-by-domain"
        /// The one decoder of the run, shared with the baseline.
        let decoder = JSONDecoder()

        func apply(_ event: RecordedEvent, to transaction: inout ReadModelTransaction) async throws {
            let user = try self.decoder.decode(BenchRegistered.self, from: Data(event.payload))
            let domain = user.email.split(separator: "@").last.map(String.init) ?? ""
            transaction.put(Array(user.email.utf8), forKey: "user/\(user.userID)")
            transaction.put([], forKey: "domain/\(domain)/\(user.userID)")
        }
    }

    /// Creates the scenario.
    /// - Parameter recorded: The ratio recorded on the project's machine kind.
    init(recorded: Double?) {
        self.metrics = [
            Metric(
                name: "projection.rebuild.1m",
                baseline:
                    "the same decoding (one shared JSONDecoder, Data(payload) per event from [UInt8]) and two "
                    + "dictionary updates in a loop; ours: ProjectionRunner rebuild, pages of 256 committed "
                    + "with checkpoints to an event-sourced key-value store; one task at a time each",
                unit: "event",
                recorded: recorded
            )
        ]
    }

    func setUp() async throws {
        let keyValues = try await EventStoreKeyValueStore.open(store: self.readModels, namespace: "bench")
        self.runner = ProjectionRunner(
            projection: self.projection,
            eventStore: self.events,
            projectionStore: ProjectionStore(keyValueStore: keyValues)
        )
    }

    /// Appends events until the store holds `count`, in batches of 1,000 per stream.
    private func fill(to count: Int) async throws {
        while self.stored < count {
            let batch = (self.stored..<min(count, self.stored + 1_000)).map { StoreBench.event($0) }
            try await self.events.append(batch, to: StreamID("user-\(self.stored / 1_000)"), expecting: .noStream)
            self.payloads += batch.map(\.payload)
            self.stored += batch.count
        }
    }

    func runOurs(_ count: Int) async throws -> [Double] {
        guard let runner = self.runner else { return [0] }
        try await self.fill(to: count)
        let clock = ContinuousClock()
        let start = clock.now
        await runner.stop()
        try await runner.rebuild()
        await runner.start()
        try await runner.waitUntilCaughtUp(to: UInt64(self.stored - 1))
        let elapsed = start.duration(to: clock.now)
        await runner.stop()
        return [elapsed.nanoseconds / Double(self.stored)]
    }

    func runBaseline(_ count: Int) async throws -> [Double] {
        try await self.fill(to: count)
        let decoder = self.projection.decoder
        var readModel: [String: [UInt8]] = [:]
        let clock = ContinuousClock()
        let start = clock.now
        for payload in self.payloads {
            let user = try decoder.decode(BenchRegistered.self, from: Data(payload))
            let domain = user.email.split(separator: "@").last.map(String.init) ?? ""
            readModel["user/\(user.userID)"] = Array(user.email.utf8)
            readModel["domain/\(domain)/\(user.userID)"] = []
        }
        let elapsed = start.duration(to: clock.now)
        precondition(readModel.count == 2 * self.payloads.count)
        return [elapsed.nanoseconds / Double(self.payloads.count)]
    }

    func tearDown() async {
        await self.runner?.stop()
        StandardError.writeLine(
            "projection.rebuild.1m: \(self.stored) events, peak resident memory of the process \(Self.peakResidentMebibytes()) MiB"
        )
    }

    /// `VmHWM` from `/proc/self/status`, in MiB; 0 where there is no such file.
    static func peakResidentMebibytes() -> Int {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            let kibibytes = Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
            return kibibytes / 1_024
        }
        return 0
    }
}
