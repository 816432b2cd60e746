import Foundation
import KeelCore
import KeelEventSourcing

/// `projection.checkpoint.growth`: what three projections that run over 1,000,000 events
/// (20,000 with `--quick`) leave on disk, with their read models and checkpoints in one
/// `FileStateStore`: the state store's size against the live read models, and the event log's
/// size against what it held before any projection ran.
///
/// **The work.** The events are user registrations at one of ``domains`` email domains, appended
/// to a `FileEventStore` in a scratch directory in batches of 1,000 per stream (through the store
/// opened with `Durability.none`, to be quick), which is then opened again with the default
/// configuration. A `FileStateStore` with the default configuration (group commit, automatic
/// compaction at twice the live bytes and 4 MiB) in a directory of its own holds one namespace
/// per projection: ``UsersByDomain`` (`<domain>/<id>` keys), ``UsersByID`` (`<id>` → email and
/// name) and ``CountPerDomain`` (`<domain>` → a count, overwritten by every event). Three
/// `ProjectionRunner`s with the default configuration (pages of 256, each committed with its
/// checkpoint) are started together and awaited until each has caught up with the last event;
/// then they stop.
///
/// **The metrics**, each in bytes per event (the ratio is the ratio of the sizes):
/// - `projection.checkpoint.growth`: the state store's file (`statistics.fileBytes`) after a
///   final `compact()`, against the live entries (`statistics.liveBytes`: the three read models
///   and their checkpoints, each entry's namespace, key and value with their lengths).
/// - `projection.checkpoint.growth.uncompacted`: the file before that `compact()` (after the
///   automatic compactions of the run), against the same live entries.
/// - `projection.checkpoint.growth.eventlog`: the event log (the sizes of its `segment-*.log`
///   files) after the projections caught up, against the same right after filling, before any
///   projection ran.
///
/// The work is done once, and both sides of every metric come from it (a ``Workload/once(full:quick:)``
/// workload). The absolute sizes, the bytes of the events alone (payload, type and stream name),
/// the state store's statistics and the sizes of the `state-*.log` files on disk are written to
/// standard error.
final class ProjectionCheckpointGrowthScenario: Scenario {
    /// The email domains the users register at.
    static let domains = 1_000

    let metrics: [Metric]
    let workload = Workload.once(full: 1_000_000, quick: 20_000)

    private var directory = ""
    private var events: FileEventStore?
    private var state: FileStateStore?
    /// The values of the one measurement, and the events it was made with.
    private var measured: (count: Int, ours: [Double], baseline: [Double])?

    /// Users by email domain: a `<domain>/<id>` key per user, with an empty value.
    struct UsersByDomain: Projection {
        let name = "users-by-domain"
        let decoder = JSONDecoder()

        func apply(_ event: RecordedEvent, to transaction: inout ReadModelTransaction) async throws {
            let user = try self.decoder.decode(BenchRegistered.self, from: Data(event.payload))
            transaction.put([], forKey: "\(ProjectionCheckpointGrowthScenario.domain(of: user))/\(user.userID)")
        }
    }

    /// Users by id: `<id>` → the email and the name, separated by a zero byte.
    struct UsersByID: Projection {
        let name = "users-by-id"
        let decoder = JSONDecoder()

        func apply(_ event: RecordedEvent, to transaction: inout ReadModelTransaction) async throws {
            let user = try self.decoder.decode(BenchRegistered.self, from: Data(event.payload))
            transaction.put(Array(user.email.utf8) + [0] + Array(user.name.utf8), forKey: "\(user.userID)")
        }
    }

    /// Users per email domain: `<domain>` → a count (8 bytes, little-endian), read and written
    /// again by every event.
    struct CountPerDomain: Projection {
        let name = "count-per-domain"
        let decoder = JSONDecoder()

        func apply(_ event: RecordedEvent, to transaction: inout ReadModelTransaction) async throws {
            let user = try self.decoder.decode(BenchRegistered.self, from: Data(event.payload))
            let key = ProjectionCheckpointGrowthScenario.domain(of: user)
            let count = ProjectionCheckpointGrowthScenario.count(try await transaction.value(forKey: key)) + 1
            transaction.put((0..<8).map { UInt8(truncatingIfNeeded: count >> (8 * $0)) }, forKey: key)
        }
    }

    /// Creates the scenario.
    /// - Parameters:
    ///   - goal: The goal for the state store's size after compaction against the live entries.
    ///   - recorded: The ratio recorded for it on the project's machine kind.
    ///   - recordedUncompacted: The ratio recorded for the size before the final compaction.
    ///   - eventLogGoal: The goal for the event log's size after the projections against before.
    ///   - eventLogRecorded: The ratio recorded for it.
    init(
        goal: Double?,
        recorded: Double?,
        recordedUncompacted: Double?,
        eventLogGoal: Double?,
        eventLogRecorded: Double?
    ) {
        let work =
            "3 projections (users by domain, users by id, a count per domain) over a FileEventStore, each "
            + "ProjectionRunner with the default configuration (pages of 256 committed with their checkpoint), "
            + "their read models in one FileStateStore (default configuration), one namespace each; bytes per event"
        self.metrics = [
            Metric(
                name: "projection.checkpoint.growth",
                baseline:
                    "the live entries of the state store (statistics.liveBytes: the read models and checkpoints); "
                    + "ours: its file (statistics.fileBytes) after a final compact(); \(work)",
                unit: "event",
                kind: .size,
                goal: goal,
                recorded: recorded
            ),
            Metric(
                name: "projection.checkpoint.growth.uncompacted",
                baseline:
                    "the live entries of the state store (statistics.liveBytes); ours: its file (statistics.fileBytes) "
                    + "once the projections caught up, before the final compact(); \(work)",
                unit: "event",
                kind: .size,
                recorded: recordedUncompacted
            ),
            Metric(
                name: "projection.checkpoint.growth.eventlog",
                baseline:
                    "the event log's segment files right after filling, before any projection ran; ours: the same "
                    + "files once the projections caught up; \(work)",
                unit: "event",
                kind: .size,
                goal: eventLogGoal,
                recorded: eventLogRecorded
            ),
        ]
    }

    func setUp() async throws {
        self.directory = StoreBench.makeDirectory("growth")
    }

    func runOurs(_ count: Int) async throws -> [Double] {
        try await self.measure(count).ours
    }

    func runBaseline(_ count: Int) async throws -> [Double] {
        try await self.measure(count).baseline
    }

    /// Does the work for `count` events once and returns both sides of every metric; later calls
    /// with the same count return the same values.
    private func measure(_ count: Int) async throws -> (ours: [Double], baseline: [Double]) {
        if let measured = self.measured, measured.count == count { return (measured.ours, measured.baseline) }
        precondition(self.measured == nil, "the growth scenario measures once")
        let eventDirectory = self.directory + "/events"
        let rawBytes = try await Self.fill(eventDirectory, count: count)
        let events = try FileEventStore(directory: eventDirectory)
        self.events = events
        let logBefore = try Self.bytes(of: eventDirectory, prefix: "segment-")
        let state = try FileStateStore(directory: self.directory + "/state")
        self.state = state

        let projections: [any Projection] = [UsersByDomain(), UsersByID(), CountPerDomain()]
        let runners = projections.map { projection in
            ProjectionRunner(
                projection: projection,
                eventStore: events,
                projectionStore: ProjectionStore(keyValueStore: state.namespace(projection.name))
            )
        }
        let clock = ContinuousClock()
        let start = clock.now
        for runner in runners { await runner.start() }
        for runner in runners { try await runner.waitUntilCaughtUp(to: UInt64(count - 1)) }
        let elapsed = start.duration(to: clock.now)
        for runner in runners { await runner.stop() }

        let logAfter = try Self.bytes(of: eventDirectory, prefix: "segment-")
        let before = state.statistics
        try await state.compact()
        let after = state.statistics
        let onDisk = try Self.bytes(of: state.directory, prefix: "state-")
        try await Self.check(state, count: count, statistics: after)

        let perEvent = { (bytes: Int) in Double(bytes) / Double(count) }
        let ours = [perEvent(after.fileBytes), perEvent(before.fileBytes), perEvent(logAfter)]
        let baseline = [perEvent(after.liveBytes), perEvent(before.liveBytes), perEvent(logBefore)]
        self.measured = (count, ours, baseline)
        let seconds = Report.fixed(elapsed.nanoseconds / 1e9, decimals: 1)
        StandardError.writeLine(
            "projection.checkpoint.growth: \(count) events (\(rawBytes) bytes of payload, type and stream name); "
                + "event log \(logBefore) bytes before the projections, \(logAfter) after; "
                + "3 projections caught up in \(seconds) s"
        )
        StandardError.writeLine(
            "projection.checkpoint.growth: state store \(before.commits) commits, \(before.compactions) automatic "
                + "compactions, \(after.entries) entries, live \(after.liveBytes) bytes; "
                + "file \(before.fileBytes) bytes (generation \(before.generation)) before compact(), "
                + "\(after.fileBytes) after (generation \(after.generation)); "
                + "state-*.log files on disk after it: \(onDisk) bytes"
        )
        return (ours, baseline)
    }

    /// Appends `count` events to a store in `directory` opened without syncing, in batches of
    /// 1,000 per stream, and closes it.
    /// - Returns: The bytes of the events' payloads, types and stream names.
    private static func fill(_ directory: String, count: Int) async throws -> Int {
        let store = try FileEventStore(directory: directory, configuration: StoreBench.configuration(.none))
        let encoder = JSONEncoder()
        var rawBytes = 0
        var next = 0
        while next < count {
            let stream = StreamID("user-\(next / 1_000)")
            let batch = try (next..<min(count, next + 1_000)).map { index in
                let user = BenchRegistered(
                    userID: index,
                    email: "user\(index)@company\(index % Self.domains).example",
                    name: "User number \(index)"
                )
                return EventData(
                    type: "user.registered",
                    metadata: EventMetadata(id: EventID(high: 9, low: UInt64(index)), time: Int64(index)),
                    payload: Array(try encoder.encode(user))
                )
            }
            try await store.append(batch, to: stream, expecting: .noStream)
            rawBytes += batch.reduce(0) { $0 + $1.payload.count + $1.type.utf8.count + stream.name.utf8.count }
            next += batch.count
        }
        await store.close()
        return rawBytes
    }

    /// Checks that the read models hold every event: one key per user in the first two, counts
    /// that add up to `count` in the third, a checkpoint in each.
    private static func check(_ state: FileStateStore, count: Int, statistics: FileStateStore.Statistics) async throws {
        let counts = ProjectionStore(keyValueStore: state.namespace("count-per-domain"))
        var total: UInt64 = 0
        for key in await counts.keys(withPrefix: "") {
            total += Self.count(try await counts.value(forKey: key))
        }
        let expected = 2 * count + min(count, Self.domains) + 3
        precondition(
            total == UInt64(count) && statistics.entries == expected,
            "the read models hold \(statistics.entries) entries and count \(total) users, "
                + "expected \(expected) and \(count)"
        )
    }

    /// The sum of the sizes of the files in `directory` whose names start with `prefix` and end
    /// with `.log`.
    private static func bytes(of directory: String, prefix: String) throws -> Int {
        try FileManager.default.contentsOfDirectory(atPath: directory)
            .filter { $0.hasPrefix(prefix) && $0.hasSuffix(".log") }
            .reduce(0) { total, name in
                let attributes = try FileManager.default.attributesOfItem(atPath: directory + "/" + name)
                return total + ((attributes[.size] as? Int) ?? 0)
            }
    }

    /// The email domain of `user`.
    static func domain(of user: BenchRegistered) -> String {
        user.email.split(separator: "@").last.map(String.init) ?? ""
    }

    /// A count stored as 8 little-endian bytes; 0 for none.
    static func count(_ bytes: [UInt8]?) -> UInt64 {
        (bytes ?? []).reversed().reduce(0) { $0 << 8 | UInt64($1) }
    }

    func tearDown() async {
        await self.state?.close()
        await self.events?.close()
        if !self.directory.isEmpty { try? FileManager.default.removeItem(atPath: self.directory) }
    }
}
