import Foundation
import KeelCore
import KeelTestSupport
import Testing

@testable import KeelEventSourcing

/// Crash trials: a child process appends with group commit and acknowledges each append on
/// stdout; the test kills it with SIGKILL after a random number of acknowledgements, reopens the
/// store, and checks that every acknowledged event is present, at its position, byte for byte,
/// and that nothing else is there beyond what was in flight.
///
/// `KEEL_CRASH_TRIALS` sets the number of trials (default 200), `KEEL_CRASH_SEED` the seed of the
/// kill points (printed at the start). The child's stderr is kept: a sanitizer report there (the
/// child of a ThreadSanitizer build is sanitized too) fails the trial, although SIGKILL ends it.
@Suite("File event store crash trials", .timeLimit(.minutes(10)))
struct FileStoreCrashTrialTests {
    static let appenders = 4

    /// The same function as the appender's `payload(for:)`.
    static func payload(for tag: String, count: Int = 120) -> [UInt8] {
        let unit = Array("payload:\(tag):".utf8)
        return (0..<count).map { unit[$0 % unit.count] }
    }

    struct Ack: Hashable {
        var tag: String
        var position: UInt64
        /// The events in the append (multi mode); 1 otherwise.
        var count = 1

        /// Parses `ack <tag> <position>` or `ack <tag> <position> <count>`.
        init?(_ line: String) {
            let fields = line.split(separator: " ")
            guard fields.count == 3 || fields.count == 4, fields[0] == "ack", let position = UInt64(fields[2]) else {
                return nil
            }
            self.tag = String(fields[1])
            self.position = position
            if fields.count == 4 {
                guard let count = Int(fields[3]) else { return nil }
                self.count = count
            }
        }
    }

    /// Runs the appender in `directory` until `acks` acknowledgements, kills it with SIGKILL, and
    /// returns the acknowledgements and what it wrote to stderr (a sanitized child's reports).
    static func runAndKill(
        _ directory: String,
        after acks: Int,
        mode: [String] = []
    ) async throws -> (acks: [Ack], stderr: String) {
        let child = try CrashChild(tool: "KeelCrashAppender", arguments: [directory, String(Self.appenders)] + mode)
        var received: [Ack] = []
        guard let ready = await child.nextLine(), ready.hasPrefix("ready") else {
            let stderr = child.sigkill()
            throw CrashTrialFailure(message: "the appender did not start: \(stderr)")
        }
        while received.count < acks, let line = await child.nextLine() {
            guard let ack = Ack(line) else {
                throw CrashTrialFailure(message: "unexpected line from the appender: \(line)")
            }
            received.append(ack)
        }
        let stderr = child.sigkill()
        // Lines written before the kill still count: each was written after its append returned.
        while let line = await child.nextLine() {
            if let ack = Ack(line) { received.append(ack) }
        }
        return (received, stderr)
    }

    struct CrashTrialFailure: Error, CustomStringConvertible {
        var message: String
        var description: String { self.message }
    }

    @Test("acknowledged events survive SIGKILL at random moments, and nothing but in-flight events appears")
    func crashTrials() async throws {
        await CrashTrialLane.enter()
        defer { CrashTrialLane.leave() }
        let environment = ProcessInfo.processInfo.environment
        let trials = environment["KEEL_CRASH_TRIALS"].flatMap(Int.init) ?? 200
        // The kill points come from one seed, printed first, so that a failing run can be replayed
        // with KEEL_CRASH_SEED (the appenders' interleaving still varies).
        let seed = environment["KEEL_CRASH_SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 0...UInt64.max)
        TestLog.line("crash trials: seed \(seed) (KEEL_CRASH_SEED to replay)")
        let random = RandomSource(seed: seed)
        var totalAcks = 0
        var tailsCut = 0
        for trial in 0..<trials {
            let directory = TemporaryDirectory("crash-\(trial)")
            defer { directory.remove() }
            let (acks, stderr) = try await Self.runAndKill(directory.path, after: random.next(upperBound: 61))
            #expect(!CrashChild.hasSanitizerReport(stderr), "trial \(trial): the appender reported\n\(stderr)")
            totalAcks += acks.count

            let store = try FileEventStore(directory: directory.path)
            if !store.recoveryReport.isClean { tailsCut += 1 }
            #expect(store.recoveryReport.cuts.allSatisfy { $0.reason == .tornTail }, "trial \(trial)")
            let events = try await store.readAll(from: 0, limit: .max)
            await store.close()

            var tags: [String: RecordedEvent] = [:]
            for event in events {
                let tag = "\(event.metadata.id.high)-\(event.metadata.id.low)"
                #expect(tags[tag] == nil, "trial \(trial): \(tag) appears twice")
                tags[tag] = event
                #expect(event.payload == Self.payload(for: tag), "trial \(trial): \(tag) differs")
                #expect(event.stream == StreamID("crash-\(event.metadata.id.high)"), "trial \(trial): \(tag) stream")
            }
            for ack in acks {
                let event = tags[ack.tag]
                #expect(event != nil, "trial \(trial): acknowledged \(ack.tag) is missing")
                #expect(event?.position == ack.position, "trial \(trial): \(ack.tag) moved")
            }
            // Beyond the acknowledged events, at most the one append each task had in flight.
            var lastAcked = [Int](repeating: -1, count: Self.appenders)
            for ack in acks {
                let parts = ack.tag.split(separator: "-").compactMap { Int($0) }
                lastAcked[parts[0]] = max(lastAcked[parts[0]], parts[1])
            }
            for event in events {
                let task = Int(event.metadata.id.high)
                let sequence = Int(event.metadata.id.low)
                #expect(sequence <= lastAcked[task] + 1, "trial \(trial): \(task)-\(sequence) was never in flight")
            }
        }
        TestLog.line(
            "crash trials: \(trials) trials, \(totalAcks) acknowledged appends, \(tailsCut) stores had a torn tail cut"
        )
    }

    @Test(
        "multi-event appends across small segments survive SIGKILL whole or not at all, in every durability mode",
        arguments: [FileEventStore.Durability.fsyncEachAppend, .groupCommit, .none]
    )
    func multiEventCrashTrials(durability: FileEventStore.Durability) async throws {
        await CrashTrialLane.enter()
        defer { CrashTrialLane.leave() }
        let environment = ProcessInfo.processInfo.environment
        let trials = max(4, (environment["KEEL_CRASH_TRIALS"].flatMap(Int.init) ?? 200) / 10)
        let seed = environment["KEEL_CRASH_SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 0...UInt64.max)
        TestLog.line("multi-event crash trials (\(durability)): seed \(seed) (KEEL_CRASH_SEED to replay)")
        let random = RandomSource(seed: seed)
        // Segments of 64 KiB against appends of up to 8 events of up to 256 KiB: most appends that
        // are not tiny start a new segment, and many are larger than one.
        let segmentSize = 64 << 10
        var totalAcks = 0
        var tailsCut = 0
        for trial in 0..<trials {
            let directory = TemporaryDirectory("crash-multi-\(trial)")
            defer { directory.remove() }
            let mode = ["multi", String(segmentSize), "\(durability)", String(random.next())]
            let (acks, stderr) = try await Self.runAndKill(
                directory.path,
                after: random.next(upperBound: 25),
                mode: mode
            )
            #expect(!CrashChild.hasSanitizerReport(stderr), "trial \(trial): the appender reported\n\(stderr)")
            totalAcks += acks.count

            var configuration = FileEventStore.Configuration()
            configuration.segmentSize = segmentSize
            let store = try FileEventStore(directory: directory.path, configuration: configuration)
            if !store.recoveryReport.isClean { tailsCut += 1 }
            #expect(store.recoveryReport.cuts.allSatisfy { $0.reason == .tornTail }, "trial \(trial)")
            let events = try await store.readAll(from: 0, limit: .max)
            await store.close()

            // Group the events by append: every append present is whole, in order, at consecutive
            // positions, with payloads as written.
            var appends: [String: [RecordedEvent]] = [:]
            for event in events {
                let id = event.metadata.id
                let tag = "\(id.high)-\(id.low >> 8)"
                let index = Int(id.low & 0xFF)
                #expect(
                    event.payload == Self.payload(for: "\(tag)-\(index)", count: event.payload.count),
                    "trial \(trial): \(tag)-\(index) differs"
                )
                appends[tag, default: []].append(event)
            }
            for (tag, members) in appends {
                let count = Int(members[0].metadata.custom["count"] ?? "") ?? -1
                #expect(members.count == count, "trial \(trial): append \(tag) has \(members.count) of \(count) events")
                #expect(members.map { Int($0.metadata.id.low & 0xFF) } == Array(0..<members.count), "trial \(trial)")
                let first = members[0].position
                #expect(members.map(\.position) == Array(first..<first + UInt64(members.count)), "trial \(trial)")
            }
            for ack in acks {
                let members = appends[ack.tag] ?? []
                #expect(
                    members.count == ack.count,
                    "trial \(trial): acknowledged \(ack.tag) has \(members.count) events"
                )
                #expect(members.first?.position == ack.position, "trial \(trial): \(ack.tag) moved")
            }
            // Beyond the acknowledged appends, at most the one each task had in flight.
            var lastAcked = [Int](repeating: -1, count: Self.appenders)
            for ack in acks {
                let parts = ack.tag.split(separator: "-").compactMap { Int($0) }
                lastAcked[parts[0]] = max(lastAcked[parts[0]], parts[1])
            }
            for tag in appends.keys {
                let parts = tag.split(separator: "-").compactMap { Int($0) }
                #expect(parts[1] <= lastAcked[parts[0]] + 1, "trial \(trial): \(tag) was never in flight")
            }
        }
        TestLog.line(
            "multi-event crash trials (\(durability)): \(trials) trials, \(totalAcks) acknowledged appends, "
                + "\(tailsCut) stores had a torn tail cut"
        )
    }
}
