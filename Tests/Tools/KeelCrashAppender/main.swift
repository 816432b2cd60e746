// keel-crash-appender: the victim of the file store's crash trials.
//
//     keel-crash-appender <directory> [appenders]
//
// Opens a FileEventStore (group commit) in <directory> and appends forever from `appenders`
// concurrent tasks (default 4), one event per append, to stream `crash-<task>`. After each append
// returns it writes one line to stdout with write(2), unbuffered:
//
//     ack <task>-<sequence> <position>
//
// An acknowledged event is durable. The test kills this process with SIGKILL at a random
// moment, reopens the store and checks that every acknowledged event is there, byte for byte.
// Each event's payload is a pure function of its tag (see `payload(for:)`), so the test can
// rebuild it.

import KeelCore
import KeelEventSourcing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The payload of the event tagged `tag`: `payload:<tag>:` repeated to 120 bytes.
func payload(for tag: String) -> [UInt8] {
    let unit = Array("payload:\(tag):".utf8)
    return (0..<120).map { unit[$0 % unit.count] }
}

func say(_ line: String) {
    let bytes = Array((line + "\n").utf8)
    var written = 0
    while written < bytes.count {
        let result = bytes.withUnsafeBytes { write(1, $0.baseAddress! + written, bytes.count - written) }
        if result <= 0 { exit(3) }
        written += result
    }
}

let arguments = CommandLine.arguments
guard arguments.count >= 2 else {
    say("usage: keel-crash-appender <directory> [appenders]")
    exit(2)
}
let appenders = arguments.count >= 3 ? Int(arguments[2]) ?? 4 : 4
let store: FileEventStore
do {
    store = try FileEventStore(directory: arguments[1])
} catch {
    say("error \(error)")
    exit(1)
}
// A test that stops reading (it failed or was killed) must not leave the appender running.
alarm(60)
say("ready \(store.recoveryReport.eventCount)")
await withThrowingTaskGroup(of: Void.self) { group in
    for task in 0..<appenders {
        group.addTask {
            var sequence = 0
            while true {
                let tag = "\(task)-\(sequence)"
                let event = EventData(
                    type: "crash.appended",
                    metadata: EventMetadata(
                        id: EventID(high: UInt64(task), low: UInt64(sequence)),
                        time: Int64(sequence)
                    ),
                    payload: payload(for: tag)
                )
                let result = try await store.append(event, to: StreamID("crash-\(task)"))
                say("ack \(tag) \(result.positions.lowerBound)")
                sequence += 1
            }
        }
    }
    do {
        try await group.waitForAll()
    } catch {
        say("error \(error)")
        exit(1)
    }
}
