// keel-crash-appender: the victim of the file store's crash trials.
//
//     keel-crash-appender <directory> [appenders]
//     keel-crash-appender <directory> <appenders> multi <segment size> <durability> <seed>
//     keel-crash-appender <directory> <appenders> state <durability> <recovery>
//     keel-crash-appender <directory> 0 open <strict|repair> <segment size>
//
// Opens a FileEventStore (group commit) in <directory> and appends forever from `appenders`
// concurrent tasks (default 4), one event per append, to stream `crash-<task>`. After each append
// returns it writes one line to stdout with write(2), unbuffered:
//
//     ack <task>-<sequence> <position>
//
// In `multi` mode the store has segments of <segment size> bytes and the given durability
// (fsyncEachAppend, groupCommit or none); each append holds 1 to 8 events of 0 bytes to 256 KiB
// (`KEEL_CRASH_MAX_EVENT` bytes when set; mostly small), drawn from <seed> and the task, with the stream's expected version, and its
// line says how many events it held:
//
//     ack <task>-<sequence> <first position> <count>
//
// Every event of an append carries its count in `custom["count"]` and its index in the append in
// its id (`low = sequence << 8 | index`).
//
// In `state` mode it opens a FileStateStore (the given durability; recovery `strict` or `repair`;
// compaction from 64 KiB on, so that kills land in compactions too) and commits forever from each
// task: commit <sequence> of task <t> puts `last` = "<sequence>" in namespaces `t<t>-a`, `t<t>-b`
// and `t<t>-c`, and `blob<sequence % 2>` = `stateBlob(task:sequence:)` in `t<t>-a`, in one commit:
//
//     ack <task>-<sequence> 0 3
//
// In `open` mode it only opens the event store (with the given recovery and segment size), says
// `ready <events>`, and exits: the test kills it at random moments to land in recovery.
//
// An acknowledged event is durable. The test kills this process with SIGKILL at a random
// moment, reopens the store and checks that every acknowledged event is there, byte for byte.
// Each event's payload is a pure function of its tag and size (see `payload(for:count:)`), so the
// test can rebuild it.

import KeelCore
import KeelEventSourcing

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The payload of the event tagged `tag`: `payload:<tag>:` repeated to `count` bytes.
func payload(for tag: String, count: Int = 120) -> [UInt8] {
    let unit = Array("payload:\(tag):".utf8)
    return (0..<count).map { unit[$0 % unit.count] }
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

/// The blob commit `sequence` of `task` writes in state mode: up to 64 KiB.
func stateBlob(task: Int, sequence: Int) -> [UInt8] {
    payload(for: "\(task)-\(sequence)", count: (sequence &* 7_919) % (64 << 10))
}

let arguments = CommandLine.arguments
if arguments.count == 6 && arguments[3] == "state" {
    var configuration = FileStateStore.Configuration()
    configuration.compactionMinimumBytes = 64 << 10
    switch arguments[4] {
    case "fsyncEachAppend": configuration.durability = .fsyncEachAppend
    case "none": configuration.durability = .none
    default: configuration.durability = .groupCommit
    }
    configuration.recovery = arguments[5] == "repair" ? .repair : .strict
    let state: FileStateStore
    do {
        state = try FileStateStore(directory: arguments[1], configuration: configuration)
    } catch {
        say("error \(error)")
        exit(1)
    }
    alarm(60)
    // The trials run beside the rest of `swift test`: the victim yields the processors to it, so
    // that a busy test process is not also raced by a child it has yet to kill. (Only the
    // schedule changes, not what a kill can interrupt.)
    _ = nice(10)
    say("ready \(state.recoveryReport.batches)")
    let tasks = Int(arguments[2]) ?? 4
    await withThrowingTaskGroup(of: Void.self) { group in
        for task in 0..<tasks {
            group.addTask {
                var sequence = 0
                while true {
                    var changes = StateChanges()
                    var last = KeyValueBatch()
                    last.put(Array("\(sequence)".utf8), forKey: "last")
                    var withBlob = last
                    withBlob.put(stateBlob(task: task, sequence: sequence), forKey: "blob\(sequence % 2)")
                    changes.append(withBlob, in: "t\(task)-a")
                    changes.append(last, in: "t\(task)-b")
                    changes.append(last, in: "t\(task)-c")
                    try await state.commit(changes)
                    say("ack \(task)-\(sequence) 0 3")
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
    // With no tasks: only the open, then a clean close.
    await state.close()
    exit(0)
}
if arguments.count == 6 && arguments[3] == "open" {
    var configuration = FileEventStore.Configuration()
    configuration.recovery = arguments[4] == "repair" ? .repair : .strict
    configuration.segmentSize = Int(arguments[5]) ?? configuration.segmentSize
    do {
        let store = try FileEventStore(directory: arguments[1], configuration: configuration)
        say("ready \(store.recoveryReport.eventCount)")
        await store.close()
        exit(0)
    } catch {
        say("error \(error)")
        exit(1)
    }
}
guard arguments.count >= 2 else {
    say("usage: keel-crash-appender <directory> [appenders]")
    exit(2)
}
let appenders = arguments.count >= 3 ? Int(arguments[2]) ?? 4 : 4
let isMulti = arguments.count == 7 && arguments[3] == "multi"
var configuration = FileEventStore.Configuration()
let seed: UInt64 = isMulti ? UInt64(arguments[6]) ?? 0 : 0
if isMulti {
    configuration.segmentSize = Int(arguments[4]) ?? configuration.segmentSize
    switch arguments[5] {
    case "fsyncEachAppend": configuration.durability = .fsyncEachAppend
    case "none": configuration.durability = .none
    default: configuration.durability = .groupCommit
    }
}
let store: FileEventStore
do {
    store = try FileEventStore(directory: arguments[1], configuration: configuration)
} catch {
    say("error \(error)")
    exit(1)
}
// A test that stops reading (it failed or was killed) must not leave the appender running.
alarm(60)
// The trials run beside the rest of `swift test`: the victim yields the processors to it, so
// that a busy test process is not also raced by a child it has yet to kill. (Only the
// schedule changes, not what a kill can interrupt.)
_ = nice(10)
say("ready \(store.recoveryReport.eventCount)")
/// The largest event of multi mode: 256 KiB, or `KEEL_CRASH_MAX_EVENT` bytes (the longer opt-in
/// run uses 1 MiB).
let largestEvent = getenv("KEEL_CRASH_MAX_EVENT").flatMap { Int(String(cString: $0)) } ?? (256 << 10)

/// Appends forever from `task` in multi mode: 1 to 8 events per append, mostly small, now and then
/// up to 256 KiB, each append with the stream's expected version.
func appendMulti(task: Int) async throws {
    let random = RandomSource(seed: seed &+ UInt64(task))
    let stream = StreamID("crash-\(task)")
    var version: UInt64?
    var sequence = 0
    while true {
        let count = 1 + random.next(upperBound: 8)
        let events = (0..<count).map { index in
            let size =
                switch random.next(upperBound: 10) {
                case 0: random.next(upperBound: largestEvent + 1)
                case 1, 2: random.next(upperBound: 16 << 10)
                default: random.next(upperBound: 512)
                }
            let tag = "\(task)-\(sequence)-\(index)"
            return EventData(
                type: "crash.appended",
                metadata: EventMetadata(
                    id: EventID(high: UInt64(task), low: UInt64(sequence) << 8 | UInt64(index)),
                    time: Int64(sequence),
                    custom: ["count": String(count)]
                ),
                payload: payload(for: tag, count: size)
            )
        }
        let result = try await store.append(
            events,
            to: stream,
            expecting: version.map { .exactly($0) } ?? .noStream
        )
        version = result.streamVersion
        say("ack \(task)-\(sequence) \(result.positions.lowerBound) \(count)")
        sequence += 1
    }
}

await withThrowingTaskGroup(of: Void.self) { group in
    for task in 0..<appenders {
        group.addTask {
            if isMulti { return try await appendMulti(task: task) }
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
