import Foundation
import KeelCore
import KeelEventSourcing

/// `projection.rebuild.1m`: rebuilding a read model ("users by email domain") from 1,000,000
/// events (20,000 with `--quick`) in a `FileEventStore`, with the read model and its checkpoints
/// in a `FileStateStore`, against the bare work of the projection: the same JSON decoding and
/// dictionary updates in a plain loop over the same payloads in memory.
///
/// **The stores.** Both live in a scratch directory of the scenario's own, removed in
/// ``tearDown()``. The events are appended before the clock starts, in batches of 1,000 per
/// stream, through the event store opened with `Durability.none` (to be quick); the store is then
/// closed and opened again with the default configuration (group commit), as a service that
/// restarts finds its log. Its segments are in the page cache, as right after they were written.
/// The state store is opened once, with the default configuration: group commit, an `fsync` per
/// commit (one committer here, so one `fsync` per page), automatic compaction. The projection's
/// `ProjectionStore` is its namespace `users-by-domain`.
///
/// **Ours** is `ProjectionRunner.rebuild()`, then `start()` and `waitUntilCaughtUp(to:)` the last
/// position, with the runner's default configuration (pages of 256), on the runner's actor: the
/// reset (one commit deleting every key of the read model and the checkpoint), then reading pages
/// from the event store, decoding, recording writes in a transaction per event, and committing
/// each page's writes with its checkpoint to the state store, which returns once the commit is
/// synced. The clock covers all of it.
///
/// **The baseline** is the loop on the measuring task: decode, then two dictionary updates. Both
/// decode alike: one `JSONDecoder`, made once with the projection and shared by both sides for the
/// whole run (as `JSONEventCodec` holds one), decoding `Data(payload)` made per event from the
/// stored `[UInt8]` payload (the shape `RecordedEvent.payload` has, and what `JSONEventCodec`
/// passes its decoder). Both run one task at a time. The report gives ns per event (events/s is
/// its inverse); the state store's statistics and the peak resident memory of the process after
/// the last rebuild are written to standard error.
final class ProjectionRebuildScenario: Scenario {
    let metrics: [Metric]
    let workload = Workload.fixed(full: 1_000_000, quick: 20_000)

    private var directory = ""
    private var events: FileEventStore?
    private var state: FileStateStore?
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
    /// - Parameters:
    ///   - goal: The goal for the ratio, if any.
    ///   - recorded: The ratio recorded on the project's machine kind.
    init(goal: Double? = nil, recorded: Double?) {
        self.metrics = [
            Metric(
                name: "projection.rebuild.1m",
                baseline:
                    "the same decoding (one shared JSONDecoder, Data(payload) per event from [UInt8]) and two "
                    + "dictionary updates in a loop over the payloads in memory; ours: ProjectionRunner rebuild "
                    + "(default configuration: pages of 256) over a FileEventStore, each page committed with its "
                    + "checkpoint to a FileStateStore (default configuration: group commit, fsync per commit); "
                    + "one task at a time each",
                unit: "event",
                goal: goal,
                recorded: recorded
            )
        ]
    }

    func setUp() async throws {
        self.directory = StoreBench.makeDirectory("rebuild")
        self.state = try FileStateStore(directory: self.directory + "/state")
        try self.openEvents()
    }

    /// Opens the event store with the default configuration and makes a runner over it, with the
    /// read model in the state store's namespace `users-by-domain`.
    private func openEvents() throws {
        guard let state = self.state else { return }
        let events = try FileEventStore(directory: self.directory + "/events")
        self.events = events
        self.runner = ProjectionRunner(
            projection: self.projection,
            eventStore: events,
            projectionStore: ProjectionStore(keyValueStore: state.namespace("users-by-domain"))
        )
    }

    /// Appends events until the store holds `count`, in batches of 1,000 per stream, through the
    /// store opened without syncing; then opens it again with the default configuration.
    private func fill(to count: Int) async throws {
        guard self.stored < count else { return }
        await self.runner?.stop()
        await self.events?.close()
        self.runner = nil
        self.events = nil
        let filling = try FileEventStore(
            directory: self.directory + "/events",
            configuration: StoreBench.configuration(.none)
        )
        while self.stored < count {
            let batch = (self.stored..<min(count, self.stored + 1_000)).map { StoreBench.event($0) }
            try await filling.append(batch, to: StreamID("user-\(self.stored / 1_000)"), expecting: .noStream)
            self.payloads += batch.map(\.payload)
            self.stored += batch.count
        }
        await filling.close()
        try self.openEvents()
    }

    func runOurs(_ count: Int) async throws -> [Double] {
        try await self.fill(to: count)
        guard let runner = self.runner else { return [0] }
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
        if let statistics = self.state?.statistics {
            StandardError.writeLine(
                "projection.rebuild.1m: state store \(statistics.entries) entries, \(statistics.commits) commits, "
                    + "\(statistics.compactions) compactions, file \(statistics.fileBytes) bytes, "
                    + "live \(statistics.liveBytes) bytes"
            )
        }
        await self.state?.close()
        await self.events?.close()
        if !self.directory.isEmpty { try? FileManager.default.removeItem(atPath: self.directory) }
        StandardError.writeLine(
            "projection.rebuild.1m: \(self.stored) events, peak resident memory of the process "
                + "\(Self.peakResidentMebibytes()) MiB"
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
