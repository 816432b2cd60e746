// The libFuzzer target for the file store's record decoder.
//
// Built by Fuzz/run.sh with `swift build --sanitize=fuzzer --sanitize=address -Xswiftc -DKEEL_FUZZING`,
// this file has no `main`: libFuzzer calls `LLVMFuzzerTestOneInput` with each input. Every input
// is decoded as a sequence of frames the way recovery scans a segment, once as event-log records
// and once as state-store records (`FileStateStore`'s batches and snapshots); a frame that decodes
// must re-encode to the same record. Any crash, sanitizer report or trap is a bug.
//
// Built normally (as `swift build` does for every target), it is a replayer instead:
// `KeelRecordFuzzer <file>…` runs the same check on each file, and
// `KeelRecordFuzzer --write-seeds <directory>` writes valid frames to start a corpus from (the
// ones in Fuzz/Seeds).

import KeelCore
import KeelEventSourcing

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Decodes `bytes` as a record body (past the checksum, which random input rarely satisfies) and
/// as a sequence of frames; checks that whatever decodes survives re-encoding.
func check(_ bytes: UnsafeRawBufferPointer) {
    if let record = try? FileRecord.decodeBody(bytes) {
        let body = record.encodeBody()
        let again = body.withUnsafeBytes { try? FileRecord.decodeBody($0) }
        precondition(again == record, "a decoded body does not survive re-encoding")
    }
    checkState(bytes)
    var offset = 0
    while offset < bytes.count {
        let rest = UnsafeRawBufferPointer(rebasing: bytes[offset...])
        let decoded: (record: FileRecord, size: Int)
        do {
            decoded = try FileRecord.decodeFrame(rest, maxRecordSize: 1 << 20)
        } catch {
            return
        }
        var frame: [UInt8] = []
        FileRecord.appendFrame(of: decoded.record.encodeBody(), to: &frame)
        let original = Array(UnsafeRawBufferPointer(rebasing: rest[0..<decoded.size]))
        // Custom metadata is re-encoded in key order; a frame with keys out of order (or
        // duplicated) decodes to the same record but is not byte-identical, so compare records.
        if frame != original {
            let again = frame.withUnsafeBytes { try? FileRecord.decodeFrame($0, maxRecordSize: 1 << 20) }
            precondition(again?.record == decoded.record, "a decoded record does not survive re-encoding")
        }
        offset += decoded.size
    }
}

/// The same for the state store's records: as a body, then as frames.
func checkState(_ bytes: UnsafeRawBufferPointer) {
    if let record = try? StateFile.decode(bytes) {
        let again = StateFile.encode(record).withUnsafeBytes { try? StateFile.decode($0) }
        precondition(again == record, "a decoded state record does not survive re-encoding")
    }
    var offset = 0
    while offset < bytes.count {
        let rest = UnsafeRawBufferPointer(rebasing: bytes[offset...])
        guard
            let frame = try? FileRecord.checkFrame(
                rest,
                minimumBodySize: StateFile.minimumBodySize,
                maxRecordSize: 1 << 20
            ),
            let record = try? StateFile.decode(frame.body)
        else { return }
        var encoded: [UInt8] = []
        FileRecord.appendFrame(of: StateFile.encode(record), to: &encoded)
        precondition(
            encoded == Array(UnsafeRawBufferPointer(rebasing: rest[0..<frame.size])),
            "a state frame does not re-encode to the same bytes"
        )
        offset += frame.size
    }
}

#if KEEL_FUZZING
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    check(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
#else
@main
enum RecordFuzzerReplay {
    static func main() {
        let arguments = Array(CommandLine.arguments.dropFirst())
        if arguments.first == "--write-seeds", arguments.count == 2 {
            writeSeeds(to: arguments[1])
            return
        }
        for path in arguments {
            guard let file = fopen(path, "rb") else {
                print("cannot open \(path)")
                exit(1)
            }
            var bytes: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 65_536)
            while true {
                let count = fread(&chunk, 1, chunk.count, file)
                if count <= 0 { break }
                bytes += chunk[0..<count]
            }
            fclose(file)
            bytes.withUnsafeBytes { check($0) }
        }
        print("replayed \(arguments.count) inputs")
    }

    static func writeSeeds(to directory: String) {
        let records: [FileRecord] = [
            .event(
                RecordedEvent(
                    stream: "user-1",
                    version: 3,
                    position: 17,
                    data: EventData(
                        type: "user.registered",
                        schemaVersion: 2,
                        metadata: EventMetadata(
                            id: EventID(high: 1, low: 2),
                            time: 1_700_000_000,
                            correlationID: "c",
                            causationID: "d",
                            traceID: TraceID(high: 3, low: 4),
                            spanID: SpanID(rawValue: 5),
                            custom: ["a": "b"]
                        ),
                        payload: Array("{\"email\":\"ada@example.com\"}".utf8)
                    )
                )
            ),
            .event(
                RecordedEvent(
                    stream: "x",
                    version: 0,
                    position: 0,
                    data: EventData(
                        type: "t",
                        metadata: EventMetadata(id: EventID(high: 0, low: 0), time: 0),
                        payload: []
                    )
                )
            ),
            .streamMetadata("user-1", StreamMetadata(maxCount: 10, truncateBefore: 2)),
            .streamDeleted("user-1", truncateBefore: 4),
            // An event that more records of its append follow (format version 2).
            .event(
                RecordedEvent(
                    stream: "order-9",
                    version: 1,
                    position: 40,
                    data: EventData(
                        type: "order.placed",
                        metadata: EventMetadata(id: EventID(high: 9, low: 1), time: 1_700_000_001),
                        payload: Array("{\"lines\":2}".utf8)
                    )
                ),
                moreInAppend: true
            ),
            // Stream changes with their sequence (format version 2).
            .streamMetadata("user-1", StreamMetadata(maxCount: 3, truncateBefore: nil), sequence: 7),
            .streamDeleted("user-1", truncateBefore: 9, sequence: 8),
        ]
        var all: [UInt8] = []
        for (index, record) in records.enumerated() {
            var frame: [UInt8] = []
            FileRecord.appendFrame(of: record.encodeBody(), to: &frame)
            all += frame
            save(frame, to: "\(directory)/seed-\(index)")
        }
        save(all, to: "\(directory)/seed-all")
        let stateRecords: [StateFile.Record] = [
            .batch(
                sequence: 3,
                changes: [
                    (
                        "orders-by-customer",
                        [
                            .put(key: "m/c-1/o-7", value: Array("{}".utf8)), .delete(key: "m/c-1/o-6"),
                            .deleteAll(prefix: "m/c-2/"),
                        ]
                    ),
                    ("checkpoints", [.put(key: "c", value: [9, 0, 0, 0, 0, 0, 0, 0])]),
                ]
            ),
            .snapshot(sequence: 2, chunk: 0, entries: [("settings", "theme", Array("dark".utf8)), ("a", "", [])]),
            .snapshotEnd(sequence: 2, chunks: 1, entries: 2),
        ]
        var allState: [UInt8] = []
        for (index, record) in stateRecords.enumerated() {
            var frame: [UInt8] = []
            FileRecord.appendFrame(of: StateFile.encode(record), to: &frame)
            allState += frame
            save(frame, to: "\(directory)/state-seed-\(index)")
        }
        save(allState, to: "\(directory)/state-seed-all")
    }

    static func save(_ bytes: [UInt8], to path: String) {
        guard let file = fopen(path, "wb") else {
            print("cannot write \(path)")
            exit(1)
        }
        _ = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
        fclose(file)
    }
}
#endif
