import Foundation
import KeelCore
import KeelTestSupport
import Testing

@testable import KeelEventSourcing

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Crash trials for the state store (SIGKILL mid-commit and mid-compaction), and for opening
/// itself: a store killed while recovery cuts or repairs it opens the same afterwards.
@Suite("State store and recovery crash trials", .timeLimit(.minutes(10)))
struct StateAndRecoveryCrashTrialTests {
    typealias Appender = FileStoreCrashTrialTests
    static let tasks = 3

    static var trials: Int {
        max(4, (ProcessInfo.processInfo.environment["KEEL_CRASH_TRIALS"].flatMap(Int.init) ?? 200) / 10)
    }

    static var seed: UInt64 {
        ProcessInfo.processInfo.environment["KEEL_CRASH_SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 0...UInt64.max)
    }

    static func stateBlob(task: Int, sequence: Int) -> [UInt8] {
        Appender.payload(for: "\(task)-\(sequence)", count: (sequence &* 7_919) % (64 << 10))
    }

    /// Starts `arguments` and kills it after `acks` acknowledgements.
    static func runAndKill(
        _ arguments: [String],
        after acks: Int
    ) async throws -> (acks: [Appender.Ack], stderr: String) {
        let child = try CrashChild(tool: "KeelCrashAppender", arguments: arguments)
        guard let ready = await child.nextLine(), ready.hasPrefix("ready") else {
            let stderr = child.sigkill()
            throw Appender.CrashTrialFailure(message: "the appender did not start: \(stderr)")
        }
        var received: [Appender.Ack] = []
        while received.count < acks, let line = await child.nextLine() {
            guard let ack = Appender.Ack(line) else {
                throw Appender.CrashTrialFailure(message: "unexpected line from the appender: \(line)")
            }
            received.append(ack)
        }
        let stderr = child.sigkill()
        while let line = await child.nextLine() {
            if let ack = Appender.Ack(line) { received.append(ack) }
        }
        return (received, stderr)
    }

    static func copy(_ source: TemporaryDirectory, to target: TemporaryDirectory) throws {
        for name in try FileManager.default.contentsOfDirectory(atPath: source.path) {
            try FileManager.default.copyItem(atPath: "\(source.path)/\(name)", toPath: "\(target.path)/\(name)")
        }
    }

    /// How long `arguments` takes to say `ready` (on a copy of the store): kills are spread
    /// over that time, so that many land in recovery.
    static func timeToReady(_ arguments: [String], copy directory: TemporaryDirectory) async throws -> Duration {
        let scratch = TemporaryDirectory("time-to-ready")
        defer { scratch.remove() }
        try Self.copy(directory, to: scratch)
        let clock = ContinuousClock()
        let start = clock.now
        let child = try CrashChild(tool: "KeelCrashAppender", arguments: [scratch.path] + arguments)
        _ = await child.nextLine()
        let elapsed = clock.now - start
        _ = child.sigkill()
        return elapsed
    }

    /// For each trial, copies the damaged store in `pristine`, opens the copy in a child one or two
    /// times, killing each at a random moment up to a little past its time to `ready`, and then
    /// runs `check` on the copy; returns how many children were killed before they said it.
    static func killOpens(
        _ pristine: TemporaryDirectory,
        _ arguments: [String],
        random: RandomSource,
        check: (TemporaryDirectory, Int) async throws -> Void
    ) async throws -> Int {
        let ready = try await Self.timeToReady(arguments, copy: pristine)
        let micros = Int(ready.components.seconds) * 1_000_000 + Int(ready.components.attoseconds / 1_000_000_000_000)
        let span = max(1, micros * 6 / 5)
        var killed = 0
        for trial in 0..<Self.trials {
            let directory = TemporaryDirectory("killed-open-\(trial)")
            defer { directory.remove() }
            try Self.copy(pristine, to: directory)
            for _ in 0...random.next(upperBound: 2) {
                let child = try CrashChild(tool: "KeelCrashAppender", arguments: [directory.path] + arguments)
                await CrashChild.pause(microseconds: random.next(upperBound: span))
                let stderr = child.sigkill()
                #expect(!CrashChild.hasSanitizerReport(stderr), "trial \(trial): \(stderr)")
                if await child.nextLine() == nil { killed += 1 }
            }
            try await check(directory, trial)
        }
        return killed
    }

    @Test(
        "state commits survive SIGKILL whole or not at all, through compactions, in every durability mode",
        arguments: [FileEventStore.Durability.fsyncEachAppend, .groupCommit, .none]
    )
    func stateCrashTrials(durability: FileEventStore.Durability) async throws {
        await CrashTrialLane.enter()
        defer { CrashTrialLane.leave() }
        let seed = Self.seed
        TestLog.line("state crash trials (\(durability)): seed \(seed) (KEEL_CRASH_SEED to replay)")
        let random = RandomSource(seed: seed)
        var totalAcks = 0
        var tailsCut = 0
        var compacted = 0
        for trial in 0..<Self.trials {
            let directory = TemporaryDirectory("state-crash-\(trial)")
            defer { directory.remove() }
            let arguments = [directory.path, String(Self.tasks), "state", "\(durability)", "strict"]
            let (acks, stderr) = try await Self.runAndKill(arguments, after: random.next(upperBound: 60))
            #expect(!CrashChild.hasSanitizerReport(stderr), "trial \(trial): the appender reported\n\(stderr)")
            totalAcks += acks.count

            let store = try FileStateStore(directory: directory.path)
            if !store.recoveryReport.isClean { tailsCut += 1 }
            if store.recoveryReport.generation > 0 { compacted += 1 }
            #expect(
                store.recoveryReport.cuts.allSatisfy { $0.reason == .tornTail },
                "trial \(trial): \(store.recoveryReport)"
            )
            var lastAcked = [Int](repeating: -1, count: Self.tasks)
            for ack in acks {
                let parts = ack.tag.split(separator: "-").compactMap { Int($0) }
                lastAcked[parts[0]] = max(lastAcked[parts[0]], parts[1])
            }
            for task in 0..<Self.tasks {
                let values = try ["a", "b", "c"].map { try store.value(forKey: "last", in: "t\(task)-\($0)") }
                // One commit wrote all three: they agree.
                #expect(values[0] == values[1] && values[1] == values[2], "trial \(trial) task \(task): \(values)")
                let last = values[0].flatMap { Int(String(decoding: $0, as: UTF8.self)) } ?? -1
                #expect(
                    last >= lastAcked[task],
                    "trial \(trial) task \(task): acknowledged \(lastAcked[task]), found \(last)"
                )
                #expect(last <= lastAcked[task] + 1, "trial \(trial) task \(task): \(last) was never in flight")
                // The blobs of the last two commits, byte for byte.
                for sequence in max(0, last - 1)...max(0, last) where last >= 0 {
                    #expect(
                        try store.value(forKey: "blob\(sequence % 2)", in: "t\(task)-a")
                            == Self.stateBlob(task: task, sequence: sequence),
                        "trial \(trial) task \(task): blob of commit \(sequence)"
                    )
                }
            }
            await store.close()
        }
        TestLog.line(
            "state crash trials (\(durability)): \(Self.trials) trials, \(totalAcks) acknowledged commits, "
                + "\(tailsCut) torn tails cut, \(compacted) stores past a compaction"
        )
        #expect(compacted > 0, "no trial reached a compaction")
    }

    @Test(
        "an event store killed while recovery cuts or repairs it opens to the same events",
        arguments: ["strict", "repair"]
    )
    func killedDuringRecovery(mode: String) async throws {
        await CrashTrialLane.enter()
        defer { CrashTrialLane.leave() }
        let seed = Self.seed
        TestLog.line("recovery kill trials (\(mode)): seed \(seed) (KEEL_CRASH_SEED to replay)")
        let random = RandomSource(seed: seed)
        let segmentSize = 256 << 10
        let directory = TemporaryDirectory("recovery-kill-\(mode)")
        defer { directory.remove() }
        var configuration = FileEventStore.Configuration()
        configuration.segmentSize = segmentSize
        configuration.recovery = mode == "repair" ? .repair : .strict
        var populating = configuration
        populating.durability = .none
        let store = try FileEventStore(directory: directory.path, configuration: populating)
        for index in 0..<3_000 {
            let events = (0..<(1 + index % 3)).map {
                FileStoreFixtures.event(index * 4 + $0, payloadSize: 1_000 + index % 50)
            }
            try await store.append(events, to: StreamID("kill-\(index % 7)"), expecting: .any)
        }
        await store.close()
        // Damage for recovery to handle: a torn tail, and for repair a damaged record in the
        // middle of the last segment too (repair cuts there).
        let segments = directory.segments()
        let last = segments[segments.count - 1]
        var bytes = directory.bytes(of: last)
        if mode == "repair" { bytes[bytes.count / 2] ^= 0x40 }
        bytes += [0x30, 0, 0, 0, 1, 2, 3]
        directory.write(bytes, to: last)

        // What one uninterrupted open makes of it, on a copy.
        let reference = TemporaryDirectory("recovery-reference-\(mode)")
        defer { reference.remove() }
        try Self.copy(directory, to: reference)
        let expected = try FileEventStore(directory: reference.path, configuration: configuration)
        #expect(!expected.recoveryReport.isClean)
        let expectedEvents = try await expected.readAll(from: 0, limit: .max)
        await expected.close()

        let killed = try await Self.killOpens(directory, ["0", "open", mode, String(segmentSize)], random: random) {
            copy,
            trial in
            let reopened = try FileEventStore(directory: copy.path, configuration: configuration)
            #expect(try await reopened.readAll(from: 0, limit: .max) == expectedEvents, "trial \(trial)")
            await reopened.close()
        }
        TestLog.line(
            "recovery kill trials (\(mode)): \(Self.trials) trials, \(killed) opens killed before they were ready"
        )
    }

    @Test(
        "a state store killed while recovery cuts or repairs it opens to the same entries",
        arguments: ["strict", "repair"]
    )
    func stateKilledDuringRecovery(mode: String) async throws {
        await CrashTrialLane.enter()
        defer { CrashTrialLane.leave() }
        let seed = Self.seed
        TestLog.line("state recovery kill trials (\(mode)): seed \(seed) (KEEL_CRASH_SEED to replay)")
        let random = RandomSource(seed: seed)
        let directory = TemporaryDirectory("state-recovery-kill-\(mode)")
        defer { directory.remove() }
        var configuration = FileStateStoreTests.configuration(recovery: mode == "repair" ? .repair : .strict)
        var populating = configuration
        populating.durability = .none
        let store = try FileStateStore(directory: directory.path, configuration: populating)
        try await FileStateStoreTests.populate(store, count: 3_000)
        await store.close()
        // A torn tail, past an older mark; for repair also damage in the middle.
        let file = try #require(FileStateStoreTests.stateFiles(directory).last)
        let mark = try #require(
            try HighWaterMark.read(directory: directory.path, fileName: FileStateStore.markFileName)
        )
        let markFile = try FileDescriptor.open(directory.path + "/STATEMARK", flags: O_RDWR)
        try FileStateStore.mark(sequence: mark.sequence + 1, generation: UInt64(mark.segment), size: 100, batches: 0)
            .write(to: markFile)
        markFile.close()
        var bytes = directory.bytes(of: file)
        if mode == "repair" { bytes[bytes.count / 2] ^= 0x40 }
        bytes += [0x30, 0, 0, 0, 1, 2, 3]
        directory.write(bytes, to: file)

        let reference = TemporaryDirectory("state-recovery-reference-\(mode)")
        defer { reference.remove() }
        try Self.copy(directory, to: reference)
        let expected = try FileStateStore(directory: reference.path, configuration: configuration)
        #expect(!expected.recoveryReport.isClean)
        let expectedContents = try FileStateStoreTests.contents(expected)
        await expected.close()

        configuration.recovery = .strict
        let killed = try await Self.killOpens(directory, ["0", "state", "groupCommit", mode], random: random) {
            copy,
            trial in
            // Strict: whatever a killed repair left is whole again or a torn tail past the mark.
            var reopening = configuration
            reopening.recovery = mode == "repair" ? .repair : .strict
            let reopened = try FileStateStore(directory: copy.path, configuration: reopening)
            #expect(try FileStateStoreTests.contents(reopened) == expectedContents, "trial \(trial)")
            await reopened.close()
        }
        TestLog.line(
            "state recovery kill trials (\(mode)): \(Self.trials) trials, \(killed) opens killed before they were ready"
        )
    }
}
