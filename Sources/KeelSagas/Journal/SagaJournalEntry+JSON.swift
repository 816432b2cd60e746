extension SagaJournalEntry {
    /// The entry as JSON: the same document `JSONEncoder` writes for it (the same keys, absent
    /// optionals left out), written by hand because a saga writes ten entries or more and
    /// `JSONEncoder` made most of a saga's own cost. `JSONDecoder` reads it back.
    /// - Throws: ``SagaError`` with ``SagaError/Code-swift.struct/encodingFailed`` when a kept
    ///   payload does not encode.
    func jsonBytes() throws(SagaError) -> [UInt8] {
        var writer = JSONObjectWriter()
        writer.string("kind", self.kind.rawValue)
        writer.integer("run", Int64(self.run))
        writer.integer("time", self.time)
        writer.optionalString("saga", self.saga)
        writer.optionalString("id", self.id)
        writer.optionalString("payload", try self.payload?.jsonText(what: "the payload of \(self.kind)"))
        if let dueTime = self.dueTime { writer.integer("dueTime", dueTime) }
        if let item = self.item {
            writer.key("item")
            var nested = JSONObjectWriter()
            nested.string("scope", item.scope)
            nested.integer("index", Int64(item.index))
            writer.raw(nested.finish())
        }
        writer.optionalString("name", self.name)
        writer.optionalString("itemKind", self.itemKind?.rawValue)
        if let idempotent = self.idempotent { writer.boolean("idempotent", idempotent) }
        if let attempt = self.attempt { writer.integer("attempt", Int64(attempt)) }
        if let failure = self.failure {
            writer.key("failure")
            var nested = JSONObjectWriter()
            nested.optionalString("step", failure.step)
            nested.string("errorType", failure.errorType)
            nested.string("message", failure.message)
            writer.raw(nested.finish())
        }
        if let inDoubt = self.inDoubt { writer.boolean("inDoubt", inDoubt) }
        writer.optionalString("outcome", self.outcome?.rawValue)
        writer.optionalString("note", self.note)
        if let sagaVersion = self.sagaVersion { writer.integer("sagaVersion", Int64(sagaVersion)) }
        return writer.finish()
    }
}

/// Writes one JSON object, member by member.
struct JSONObjectWriter {
    private var bytes: [UInt8] = [UInt8(ascii: "{")]
    private var isFirst = true

    mutating func key(_ key: String) {
        if !self.isFirst { self.bytes.append(UInt8(ascii: ",")) }
        self.isFirst = false
        self.append(quoted: key)
        self.bytes.append(UInt8(ascii: ":"))
    }

    mutating func string(_ key: String, _ value: String) {
        self.key(key)
        self.append(quoted: value)
    }

    mutating func optionalString(_ key: String, _ value: String?) {
        if let value { self.string(key, value) }
    }

    mutating func integer(_ key: String, _ value: Int64) {
        self.key(key)
        self.bytes.append(contentsOf: String(value).utf8)
    }

    mutating func boolean(_ key: String, _ value: Bool) {
        self.key(key)
        self.bytes.append(contentsOf: (value ? "true" : "false").utf8)
    }

    /// Appends an already-written value (a nested object) after ``key(_:)``.
    mutating func raw(_ value: [UInt8]) {
        self.bytes.append(contentsOf: value)
    }

    mutating func finish() -> [UInt8] {
        self.bytes.append(UInt8(ascii: "}"))
        return self.bytes
    }

    /// Appends `text` as a JSON string: quotes, backslashes and control characters escaped,
    /// everything else as its UTF-8 bytes.
    private mutating func append(quoted text: String) {
        self.bytes.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): self.bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            case UInt8(ascii: "\\"): self.bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case UInt8(ascii: "\n"): self.bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case UInt8(ascii: "\r"): self.bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
            case UInt8(ascii: "\t"): self.bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
            case 0..<0x20:
                let hex: [UInt8] = Array("0123456789abcdef".utf8)
                self.bytes.append(contentsOf: [
                    UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"),
                    hex[Int(byte >> 4)], hex[Int(byte & 0xF)],
                ])
            default:
                self.bytes.append(byte)
            }
        }
        self.bytes.append(UInt8(ascii: "\""))
    }
}
