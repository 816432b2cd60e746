import KeelCore
import KeelEventSourcing

/// The behaviour every ``/KeelEventSourcing/EventStore`` must have, as checks you run against
/// your own store from XCTest or Swift Testing.
///
/// Keel's two stores pass these checks in Keel's own test suite. A store of yours (on a database,
/// on object storage) passes them too before it is trusted with events:
///
/// ```swift
/// @Test(arguments: EventStoreConformance.checks)
/// func conformance(_ check: EventStoreConformance.Check) async throws {
///     try await check.run(on: try await MyStore.makeEmptyForTesting())
/// }
/// ```
///
/// Each check takes a new, empty store, works on its own streams, and throws an
/// ``EventStoreConformanceFailure`` naming what went wrong. The checks cover expected versions
/// and conflicts (nothing written on a conflict), atomic multi-event appends, reads forwards and
/// backwards with limits, the global log, stream metadata, soft deletion and re-creation,
/// argument validation, catch-up subscriptions switching to live with no gap and no duplicate,
/// stream subscriptions, cancelling a subscription parked in ``/KeelEventSourcing/EventStore/waitForHead(beyond:)``
/// (it ends, having delivered exactly the events before), and 16 concurrent appenders to distinct
/// streams and to one stream (no lost or duplicated event, contiguous versions, conflicts detected).
///
/// A store that never ends a wait its caller cancelled makes the cancellation check hang rather
/// than fail: run the checks under a time limit (`.timeLimit` in Swift Testing,
/// `executionTimeAllowance` in XCTest).
public enum EventStoreConformance {
    /// One named check.
    public struct Check: Sendable, CustomStringConvertible {
        /// The check's name, such as `expected versions`.
        public let name: String
        let body: @Sendable (any EventStore) async throws -> Void

        /// Runs the check on `store`, which must be empty.
        /// - Parameter store: A new, empty store.
        /// - Throws: ``EventStoreConformanceFailure`` when the store misbehaves, or the store's own
        ///   error where a call was expected to succeed.
        public func run(on store: any EventStore) async throws {
            try await self.body(store)
        }

        /// The name.
        public var description: String { self.name }
    }

    /// Every check.
    public static let checks: [Check] = [
        Check(name: "append and read back", body: appendAndReadBack),
        Check(name: "expected versions", body: expectedVersions),
        Check(name: "reads with direction and limit", body: readsWithDirectionAndLimit),
        Check(name: "global log", body: globalLog),
        Check(name: "stream metadata", body: streamMetadata),
        Check(name: "soft deletion", body: softDeletion),
        Check(name: "invalid arguments", body: invalidArguments),
        Check(name: "catch-up then live", body: catchUpThenLive),
        Check(name: "stream subscription", body: streamSubscription),
        Check(name: "subscription cancellation", body: subscriptionCancellation),
        Check(name: "concurrent appenders", body: concurrentAppenders),
    ]

    /// Runs every check, each on a store from `makeStore`.
    /// - Parameter makeStore: Makes a new, empty store.
    /// - Throws: The first failure.
    public static func runAll(_ makeStore: () async throws -> any EventStore) async throws {
        for check in self.checks {
            try await check.run(on: try await makeStore())
        }
    }

    // MARK: Fixtures

    /// An event with a recognisable payload.
    static func event(_ tag: String, type: String = "test.happened", schemaVersion: Int = 1) -> EventData {
        var hash: UInt64 = 1_469_598_103_934_665_603
        for byte in tag.utf8 {
            hash = (hash ^ UInt64(byte)) &* 1_099_511_628_211
        }
        return EventData(
            type: type,
            schemaVersion: schemaVersion,
            metadata: EventMetadata(
                id: EventID(high: hash, low: ~hash),
                time: 1_700_000_000_000_000_000,
                correlationID: "c-\(tag)",
                causationID: nil,
                custom: ["tag": tag]
            ),
            payload: Array("{\"tag\":\"\(tag)\"}".utf8) + [0, 255, 10]
        )
    }

    static func expect(
        _ condition: Bool,
        _ message: @autoclosure () -> String,
        line: UInt = #line
    ) throws(EventStoreConformanceFailure) {
        guard condition else { throw EventStoreConformanceFailure(message: message(), line: line) }
    }

    /// Runs `body`, which must throw an ``EventStoreError`` with `code`; returns the error.
    @discardableResult
    static func expectError(
        _ code: EventStoreError.Code,
        line: UInt = #line,
        _ body: () async throws -> Void
    ) async throws -> EventStoreError {
        do {
            try await body()
        } catch let error as EventStoreError {
            try expect(error.code == code, "expected \(code), got \(error)", line: line)
            return error
        }
        throw EventStoreConformanceFailure(message: "expected \(code), but the call succeeded", line: line)
    }

    // MARK: Checks

    static func appendAndReadBack(_ store: any EventStore) async throws {
        let events = (0..<3).map { event("a\($0)") }
        let result = try await store.append(events, to: "order-1", expecting: .noStream)
        try expect(
            result.streamVersion == 2,
            "stream version after 3 events: \(String(describing: result.streamVersion))"
        )
        try expect(result.positions == 0..<3, "positions \(result.positions), expected 0..<3")
        let read = try await store.readStream("order-1")
        try expect(read.map(\.version) == [0, 1, 2], "versions \(read.map(\.version))")
        try expect(read.map(\.position) == [0, 1, 2], "positions \(read.map(\.position))")
        try expect(read.map(\.data) == events, "read events differ from the appended ones")
        try expect(read.allSatisfy { $0.stream == "order-1" }, "wrong stream on a read event")
        try expect(try await store.streamVersion("order-1") == 2, "streamVersion is not 2")
        try expect(try await store.streamVersion("order-2") == nil, "a stream never written has a version")
        try expect(try await store.readStream("order-2").isEmpty, "a stream never written is not empty")
        try expect(try await store.headPosition() == 3, "head is not 3")
        let empty = try await store.append([], to: "order-1", expecting: .exactly(2))
        try expect(empty.streamVersion == 2 && empty.positions.isEmpty, "an empty append wrote: \(empty)")
        try expect(try await store.headPosition() == 3, "an empty append moved the head")
    }

    static func expectedVersions(_ store: any EventStore) async throws {
        try await store.append(event("e0"), to: "user-1", expecting: .noStream)
        var error = try await expectError(.wrongExpectedVersion) {
            _ = try await store.append([event("x")], to: "user-1", expecting: .noStream)
        }
        try expect(
            error.actualVersion == 0 && error.stream == "user-1",
            "conflict without the actual version: \(error)"
        )
        error = try await expectError(.wrongExpectedVersion) {
            _ = try await store.append([event("x"), event("y")], to: "user-1", expecting: .exactly(5))
        }
        try expect(error.actualVersion == 0 && error.expected == .exactly(5), "conflict details: \(error)")
        error = try await expectError(.wrongExpectedVersion) {
            _ = try await store.append([event("x")], to: "user-2", expecting: .streamExists)
        }
        try expect(error.actualVersion == nil, "a missing stream's actual version is not nil: \(error)")
        try await expectError(.wrongExpectedVersion) {
            _ = try await store.append([event("x")], to: "user-2", expecting: .exactly(0))
        }
        try expect(try await store.headPosition() == 1, "a conflicting append wrote something")
        try await store.append(event("e1"), to: "user-1", expecting: .exactly(0))
        try await store.append(event("e2"), to: "user-1", expecting: .streamExists)
        try await store.append(event("e3"), to: "user-1", expecting: .any)
        try await store.append(event("f0"), to: "user-2", expecting: .any)
        try expect(try await store.streamVersion("user-1") == 3, "user-1 is not at version 3")
        try expect(try await store.streamVersion("user-2") == 0, "user-2 is not at version 0")
    }

    static func readsWithDirectionAndLimit(_ store: any EventStore) async throws {
        try await store.append((0..<10).map { event("r\($0)") }, to: "cart-1", expecting: .noStream)
        func versions(_ from: UInt64, _ direction: ReadDirection, _ limit: Int) async throws -> [UInt64] {
            try await store.readStream("cart-1", from: from, direction: direction, limit: limit).map(\.version)
        }
        try expect(try await versions(0, .forwards, 3) == [0, 1, 2], "forwards from 0, 3")
        try expect(try await versions(8, .forwards, 5) == [8, 9], "forwards from 8, 5")
        try expect(try await versions(10, .forwards, 5) == [], "forwards past the end")
        try expect(try await versions(.max, .backwards, 3) == [9, 8, 7], "backwards from the end, 3")
        try expect(try await versions(2, .backwards, 10) == [2, 1, 0], "backwards from 2")
        try expect(try await versions(4, .backwards, 1) == [4], "backwards from 4, 1")
    }

    static func globalLog(_ store: any EventStore) async throws {
        for index in 0..<6 {
            try await store.append(event("g\(index)"), to: StreamID("s-\(index % 3)"))
        }
        let all = try await store.readAll(from: 0, limit: 100)
        try expect(all.map(\.position) == Array(0..<6), "positions \(all.map(\.position))")
        try expect(all.map(\.stream.name) == ["s-0", "s-1", "s-2", "s-0", "s-1", "s-2"], "stream order")
        try expect(all.map(\.version) == [0, 0, 0, 1, 1, 1], "versions \(all.map(\.version))")
        let tail = try await store.readAll(from: 4, limit: 100)
        try expect(tail.map(\.position) == [4, 5], "readAll from 4")
        let page = try await store.readAll(from: 1, limit: 2)
        try expect(page.map(\.position) == [1, 2], "readAll from 1, limit 2")
        try expect(try await store.readAll(from: 6, limit: 10).isEmpty, "readAll past the head")
    }

    static func streamMetadata(_ store: any EventStore) async throws {
        try await store.append((0..<10).map { event("m\($0)") }, to: "log-1", expecting: .noStream)
        try expect(try await store.streamMetadata(for: "log-1") == StreamMetadata(), "fresh metadata is not empty")
        try await store.setStreamMetadata(StreamMetadata(maxCount: 3), for: "log-1")
        try expect(try await store.streamMetadata(for: "log-1").maxCount == 3, "maxCount not kept")
        var read = try await store.readStream("log-1")
        try expect(read.map(\.version) == [7, 8, 9], "maxCount 3 reads \(read.map(\.version))")
        try await store.setStreamMetadata(StreamMetadata(truncateBefore: 5), for: "log-1")
        read = try await store.readStream("log-1")
        try expect(read.map(\.version) == Array(5...9), "truncateBefore 5 reads \(read.map(\.version))")
        read = try await store.readStream("log-1", from: .max, direction: .backwards, limit: 100)
        try expect(read.map(\.version) == Array((5...9).reversed()), "backwards with truncateBefore 5")
        try await store.setStreamMetadata(StreamMetadata(maxCount: 2, truncateBefore: 5), for: "log-1")
        read = try await store.readStream("log-1")
        try expect(read.map(\.version) == [8, 9], "both bounds read \(read.map(\.version))")
        try expect(try await store.readAll(from: 0, limit: 100).count == 10, "metadata hid events from readAll")
        try await store.append(event("m10"), to: "log-1", expecting: .exactly(9))
        read = try await store.readStream("log-1")
        try expect(read.map(\.version) == [9, 10], "maxCount follows new events: \(read.map(\.version))")
        try await expectError(.invalidArgument) {
            try await store.setStreamMetadata(StreamMetadata(maxCount: 0), for: "log-1")
        }
    }

    static func softDeletion(_ store: any EventStore) async throws {
        try await store.append([event("d0"), event("d1")], to: "temp-1", expecting: .noStream)
        try await store.append(event("other"), to: "temp-2")
        try await expectError(.wrongExpectedVersion) {
            try await store.deleteStream("temp-1", expecting: .exactly(0))
        }
        try await store.deleteStream("temp-1", expecting: .exactly(1))
        try await expectError(.streamDeleted) { _ = try await store.readStream("temp-1") }
        try expect(try await store.streamVersion("temp-1") == nil, "a deleted stream has a version")
        try expect(try await store.readAll(from: 0, limit: 10).count == 3, "deletion removed events from the log")
        try expect(try await store.readStream("temp-2").count == 1, "deletion touched another stream")
        let again = try await store.append([event("d2")], to: "temp-1", expecting: .noStream)
        try expect(again.streamVersion == 2, "versions restart after deletion: \(again)")
        let read = try await store.readStream("temp-1")
        try expect(read.map(\.version) == [2], "events from before the deletion are visible: \(read.map(\.version))")
    }

    static func invalidArguments(_ store: any EventStore) async throws {
        try await expectError(.invalidArgument) { _ = try await store.append([event("x")], to: "", expecting: .any) }
        try await expectError(.invalidArgument) {
            _ = try await store.append([event("x", type: "")], to: "v-1", expecting: .any)
        }
        try await expectError(.invalidArgument) {
            _ = try await store.append([event("x", schemaVersion: 0)], to: "v-1", expecting: .any)
        }
        try await expectError(.invalidArgument) {
            _ = try await store.readStream("v-1", from: 0, direction: .forwards, limit: 0)
        }
        try await expectError(.invalidArgument) { _ = try await store.readAll(from: 0, limit: 0) }
        try expect(try await store.headPosition() == 0, "an invalid append wrote something")
        try await expectError(.invalidArgument) {
            _ = try await store.append([event("ok"), event("bad", type: "")], to: "v-1", expecting: .any)
        }
        try expect(try await store.headPosition() == 0, "half of an invalid batch was written")
    }

    static func catchUpThenLive(_ store: any EventStore) async throws {
        for index in 0..<5 {
            try await store.append(event("c\(index)"), to: StreamID("live-\(index % 2)"))
        }
        let total = 40
        let received = try await withThrowingTaskGroup(of: [UInt64].self) { group in
            group.addTask {
                var positions: [UInt64] = []
                for try await event in store.subscribe(from: 2, pageSize: 3) {
                    positions.append(event.position)
                    if positions.count == total - 2 { break }
                }
                return positions
            }
            group.addTask {
                for index in 5..<total {
                    try await store.append(event("c\(index)"), to: StreamID("live-\(index % 2)"))
                    if index.isMultiple(of: 7) { await Task.yield() }
                }
                return []
            }
            var result: [UInt64] = []
            for try await positions in group where !positions.isEmpty { result = positions }
            return result
        }
        try expect(received == Array(2..<UInt64(total)), "subscription delivered \(received)")
    }

    static func streamSubscription(_ store: any EventStore) async throws {
        try await store.append([event("s0"), event("s1")], to: "watch-1", expecting: .noStream)
        try await store.append(event("noise"), to: "watch-2")
        let received = try await withThrowingTaskGroup(of: [UInt64].self) { group in
            group.addTask {
                var versions: [UInt64] = []
                for try await event in store.subscribe(to: "watch-1", from: 1, pageSize: 2) {
                    try expect(event.stream == "watch-1", "a stream subscription delivered \(event.stream)")
                    versions.append(event.version)
                    if versions.count == 10 { break }
                }
                return versions
            }
            group.addTask {
                for index in 2..<11 {
                    try await store.append(event("noise\(index)"), to: "watch-2")
                    try await store.append(event("s\(index)"), to: "watch-1", expecting: .exactly(UInt64(index - 1)))
                }
                return []
            }
            var result: [UInt64] = []
            for try await versions in group where !versions.isEmpty { result = versions }
            return result
        }
        try expect(received == Array(1...10), "stream subscription delivered \(received)")
    }

    static func subscriptionCancellation(_ store: any EventStore) async throws {
        try await store.append(event("only"), to: "quiet-1")
        // The probe signals when the subscription, having delivered the one event, asks the store
        // to wait for a second: the cancel below lands on a subscription that is parked in the
        // store's `waitForHead` or about to park there, which the store must honour either way.
        let probe = ParkingProbe(store, signallingWaitsBeyond: 1)
        let delivered = OneShotSignal()
        let outcome = try await withThrowingTaskGroup(of: Int.self) { group in
            group.addTask {
                var count = 0
                for try await _ in probe.subscribe(from: 0) {
                    count += 1
                    delivered.signal()
                }
                return count
            }
            await delivered.wait()
            await probe.parking.wait()
            group.cancelAll()
            // The subscription must end: a store whose wait ignores cancellation hangs here, and
            // the test's time limit reports it.
            return try await group.next()
        }
        try expect(
            outcome == 1,
            "a subscription cancelled while waiting delivered \(String(describing: outcome)) events, expected exactly 1"
        )
        try await store.append(event("after"), to: "quiet-1")
        try expect(try await store.headPosition() == 2, "the store stopped appending after a cancelled subscription")
    }

    static func concurrentAppenders(_ store: any EventStore) async throws {
        let appenders = 16
        let perAppender = 25
        // Distinct streams: every append succeeds.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for appender in 0..<appenders {
                group.addTask {
                    for index in 0..<perAppender {
                        try await store.append(
                            event("d\(appender)-\(index)"),
                            to: StreamID("own-\(appender)"),
                            expecting: index == 0 ? ExpectedVersion.noStream : .exactly(UInt64(index - 1))
                        )
                    }
                }
            }
            try await group.waitForAll()
        }
        for appender in 0..<appenders {
            let read = try await store.readStream(StreamID("own-\(appender)"))
            try expect(read.map(\.version) == Array(0..<UInt64(perAppender)), "own-\(appender) versions")
            let tags = read.map { $0.metadata.custom["tag"] ?? "" }
            try expect(tags == (0..<perAppender).map { "d\(appender)-\($0)" }, "own-\(appender) order")
        }
        // One stream: appenders race with expected versions and retry on conflict.
        let conflicts = try await withThrowingTaskGroup(of: Int.self) { group in
            for appender in 0..<appenders {
                group.addTask {
                    var conflicts = 0
                    for index in 0..<perAppender {
                        while true {
                            let current = try await store.streamVersion("shared-1")
                            let expected: ExpectedVersion = current.map { .exactly($0) } ?? .noStream
                            do {
                                try await store.append(
                                    event("s\(appender)-\(index)"),
                                    to: "shared-1",
                                    expecting: expected
                                )
                                break
                            } catch let error as EventStoreError where error.code == .wrongExpectedVersion {
                                conflicts += 1
                                await Task.yield()
                            }
                        }
                    }
                    return conflicts
                }
            }
            return try await group.reduce(0, +)
        }
        let shared = try await store.readStream("shared-1")
        let total = appenders * perAppender
        try expect(shared.map(\.version) == Array(0..<UInt64(total)), "shared versions are not contiguous")
        let tags = Set(shared.map { $0.metadata.custom["tag"] ?? "" })
        try expect(tags.count == total, "lost or duplicated events on the shared stream: \(tags.count) of \(total)")
        let all = try await store.readAll(from: 0, limit: .max)
        try expect(all.count == 2 * total, "the log holds \(all.count) events, expected \(2 * total)")
        try expect(all.map(\.position) == Array(0..<UInt64(2 * total)), "global positions are not contiguous")
        _ = conflicts  // how many races there were depends on scheduling; correctness does not
    }
}

/// A failed ``EventStoreConformance`` check: what the store did wrong.
public struct EventStoreConformanceFailure: Error, Sendable, CustomStringConvertible {
    /// What went wrong.
    public var message: String
    /// The line of the check that failed, in `EventStoreConformance.swift`.
    public var line: UInt

    /// Creates a failure.
    /// - Parameters:
    ///   - message: What went wrong.
    ///   - line: Where the check failed.
    public init(message: String, line: UInt) {
        self.message = message
        self.line = line
    }

    /// The message and the line.
    public var description: String {
        "event store conformance: \(self.message) (EventStoreConformance.swift:\(self.line))"
    }
}
