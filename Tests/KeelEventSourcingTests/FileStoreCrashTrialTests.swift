import Foundation
import KeelCore
import Testing

@testable import KeelEventSourcing

/// Crash trials: a child process appends with group commit and acknowledges each append on
/// stdout; the test kills it with SIGKILL after a random number of acknowledgements, reopens the
/// store, and checks that every acknowledged event is present, at its position, byte for byte,
/// and that nothing else is there beyond what was in flight.
///
/// `KEEL_CRASH_TRIALS` sets the number of trials (default 200).
@Suite("File event store crash trials", .timeLimit(.minutes(10)))
struct FileStoreCrashTrialTests {
    static let appenders = 4

    /// The same function as the appender's `payload(for:)`.
    static func payload(for tag: String) -> [UInt8] {
        let unit = Array("payload:\(tag):".utf8)
        return (0..<120).map { unit[$0 % unit.count] }
    }

    static var appenderPath: String {
        let directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        // The test bundle is a file on Linux and a directory (…/Contents/MacOS/…) on macOS.
        for candidate in [
            directory, directory.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent(),
        ] {
            let path = candidate.appendingPathComponent("KeelCrashAppender").path
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return directory.appendingPathComponent("KeelCrashAppender").path
    }

    /// Reads lines from a pipe, blocking; `nil` at end of file.
    final class LineReader {
        let handle: FileHandle
        var buffer: [UInt8] = []

        init(_ handle: FileHandle) { self.handle = handle }

        func next() -> String? {
            while true {
                if let newline = self.buffer.firstIndex(of: 10) {
                    let line = String(decoding: self.buffer[..<newline], as: UTF8.self)
                    self.buffer.removeSubrange(...newline)
                    return line
                }
                let data = self.handle.availableData
                if data.isEmpty { return nil }
                self.buffer.append(contentsOf: data)
            }
        }
    }

    struct Ack: Hashable {
        var tag: String
        var position: UInt64
    }

    /// Runs the appender in `directory` until `acks` acknowledgements, kills it, returns them.
    static func runAndKill(_ directory: String, after acks: Int) throws -> [Ack] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.appenderPath)
        process.arguments = [directory, String(Self.appenders)]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let reader = LineReader(output.fileHandleForReading)
        var received: [Ack] = []
        guard let ready = reader.next(), ready.hasPrefix("ready") else {
            process.terminate()
            process.waitUntilExit()
            throw CrashTrialFailure(message: "the appender did not start")
        }
        while received.count < acks, let line = reader.next() {
            let fields = line.split(separator: " ")
            guard fields.count == 3, fields[0] == "ack", let position = UInt64(fields[2]) else {
                throw CrashTrialFailure(message: "unexpected line from the appender: \(line)")
            }
            received.append(Ack(tag: String(fields[1]), position: position))
        }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        // Lines written before the kill still count: each was written after its append returned.
        while let line = reader.next() {
            let fields = line.split(separator: " ")
            if fields.count == 3, fields[0] == "ack", let position = UInt64(fields[2]) {
                received.append(Ack(tag: String(fields[1]), position: position))
            }
        }
        return received
    }

    struct CrashTrialFailure: Error, CustomStringConvertible {
        var message: String
        var description: String { self.message }
    }

    @Test("acknowledged events survive SIGKILL at random moments, and nothing but in-flight events appears")
    func crashTrials() async throws {
        #expect(FileManager.default.isExecutableFile(atPath: Self.appenderPath), "build KeelCrashAppender first")
        let trials = ProcessInfo.processInfo.environment["KEEL_CRASH_TRIALS"].flatMap(Int.init) ?? 200
        var random = SystemRandomNumberGenerator()
        var totalAcks = 0
        var tailsCut = 0
        for trial in 0..<trials {
            let directory = TemporaryDirectory("crash-\(trial)")
            defer { directory.remove() }
            let acks = try Self.runAndKill(directory.path, after: Int.random(in: 0...60, using: &random))
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
        print(
            "crash trials: \(trials) trials, \(totalAcks) acknowledged appends, \(tailsCut) stores had a torn tail cut"
        )
    }
}
