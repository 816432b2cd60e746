import KeelCore
import KeelEventSourcing

/// Where a process manager keeps its instances in its key-value namespace (`process-<name>` of the
/// service's storage). `<key>` is the correlation key with `%` and `/` percent-encoded, so that one
/// key's prefix never matches another key's entries.
///
/// - `i/<key>`: the instance's ``InstanceRecord`` (completion, pending timeouts, counters).
/// - `s/<key>`: the instance's state, encoded by the runner's codec.
/// - `h/<key>/<message id>`: one empty entry per event the instance handled (deduplication).
/// - `t/<key>/<name>`: a pending timeout (a ``TimeoutEntry``), to re-arm it after a restart
///   without reading every instance.
/// - `o/<key>/<sequence>`: an effect to deliver (an ``OutboxEntry``), in order.
/// - `f/<key>/<sequence>`: an effect whose delivery failed for good, until it is retried.
///
/// Everything one message changes is written in one batch.
enum ProcessStorageLayout {
    static func escape(_ key: String) -> String {
        var escaped = ""
        for character in key {
            switch character {
            case "%": escaped += "%25"
            case "/": escaped += "%2F"
            default: escaped.append(character)
            }
        }
        return escaped
    }

    static func record(_ key: String) -> String { "i/" + self.escape(key) }
    static func state(_ key: String) -> String { "s/" + self.escape(key) }
    static func handledPrefix(_ key: String) -> String { "h/" + self.escape(key) + "/" }
    static func handled(_ key: String, _ messageID: String) -> String { self.handledPrefix(key) + messageID }
    static func timeoutPrefix(_ key: String) -> String { "t/" + self.escape(key) + "/" }
    static func timeout(_ key: String, _ name: String) -> String { self.timeoutPrefix(key) + self.escape(name) }
    static func outboxPrefix(_ key: String) -> String { "o/" + self.escape(key) + "/" }
    static func failedPrefix(_ key: String) -> String { "f/" + self.escape(key) + "/" }
    static let allTimeouts = "t/"
    static let allOutbox = "o/"
    static let allFailed = "f/"
    static let allRecords = "i/"

    /// A sequence number as 20 digits, so that keys sort as numbers do.
    static func sequence(_ number: UInt64) -> String {
        let digits = String(number)
        return String(repeating: "0", count: 20 - digits.count) + digits
    }
}

/// An instance's bookkeeping, stored under `i/<key>`.
struct InstanceRecord: Codable, Sendable, Hashable {
    /// The correlation key, unescaped.
    var correlationKey: String
    /// Whether a handler completed the instance.
    var isCompleted = false
    /// The pending timeouts by name, `$purge` included.
    var timeouts: [String: ProcessTimeout] = [:]
    /// The next outbox sequence number of this instance.
    var nextEffect: UInt64 = 0
    /// How many messages the instance handled.
    var handledCount = 0
}

/// A pending timeout, stored under `t/<key>/<name>` beside its instance's record.
struct TimeoutEntry: Codable, Sendable, Hashable {
    var correlationKey: String
    var timeout: ProcessTimeout
}

/// An effect in the outbox: a JSON header, a newline, and the payload's bytes as the runner's codec
/// encoded them.
struct OutboxEntry: Sendable, Hashable {
    enum Kind: String, Codable, Sendable {
        case command, publication
    }

    struct Header: Codable, Sendable, Hashable {
        var kind: Kind
        var type: String
        var correlationKey: String
        var idempotencyKey: String
        var trace: TraceContext?
        var attempts = 0
        var failure: String?
    }

    var header: Header
    var payload: [UInt8]

    init(
        kind: Kind,
        type: String,
        correlationKey: String,
        idempotencyKey: String,
        trace: TraceContext?,
        payload: [UInt8]
    ) {
        self.header = Header(
            kind: kind,
            type: type,
            correlationKey: correlationKey,
            idempotencyKey: idempotencyKey,
            trace: trace
        )
        self.payload = payload
    }

    init(header: Header, payload: [UInt8]) {
        self.header = header
        self.payload = payload
    }

    /// The stored bytes.
    func encoded() throws -> [UInt8] {
        // JSON without pretty printing never contains a raw newline.
        try JSONEventCodec().encode(self.header) + [0x0A] + self.payload
    }

    /// Decodes stored bytes.
    static func decode(_ bytes: [UInt8]) throws -> OutboxEntry {
        guard let newline = bytes.firstIndex(of: 0x0A) else {
            throw ProcessManagerError(code: .recordCorrupt, message: "an outbox entry has no header")
        }
        let header = try JSONEventCodec().decode(Header.self, from: Array(bytes[..<newline]))
        return OutboxEntry(header: header, payload: Array(bytes[(newline + 1)...]))
    }

    /// The public description.
    var effect: ProcessEffect {
        ProcessEffect(
            kind: self.header.kind == .command ? .command : .publication,
            type: self.header.type,
            correlationKey: self.header.correlationKey,
            idempotencyKey: self.header.idempotencyKey,
            attempts: self.header.attempts,
            failure: self.header.failure
        )
    }
}

/// The timeouts a user sees: by due time, then name, without the runner's own (`$…`).
func visibleTimeouts(_ timeouts: [String: ProcessTimeout]) -> [ProcessTimeout] {
    timeouts.values.filter { !$0.name.hasPrefix("$") }.sorted { ($0.dueTime, $0.name) < ($1.dueTime, $1.name) }
}

extension Duration {
    /// The duration in whole nanoseconds, clamped to `Int64`'s range.
    var clampedNanoseconds: Int64 {
        let (seconds, attoseconds) = self.components
        let product = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if product.overflow { return seconds < 0 ? .min : .max }
        let sum = product.partialValue.addingReportingOverflow(attoseconds / 1_000_000_000)
        return sum.overflow ? (seconds < 0 ? .min : .max) : sum.partialValue
    }
}
