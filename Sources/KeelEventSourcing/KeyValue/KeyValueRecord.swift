/// The binary form of a key-value batch or snapshot as one event's payload.
///
/// Little-endian: a `UInt32` operation count, then per operation a tag byte (1: put, 2: delete,
/// 3: delete every key with a prefix), a `UInt32` key (or prefix) length and its UTF-8 bytes, and
/// for a put a `UInt32` value length and the value. A snapshot is a batch of puts that replaces the whole map.
enum KeyValueRecord {
    static let batchType = "keel.kv.batch"
    static let snapshotType = "keel.kv.snapshot"

    static func encode(_ operations: [KeyValueBatch.Operation]) -> [UInt8] {
        var bytes: [UInt8] = []
        self.append(UInt32(operations.count), to: &bytes)
        for operation in operations {
            switch operation {
            case .put(let key, let value):
                bytes.append(1)
                self.append(Array(key.utf8), to: &bytes)
                self.append(value, to: &bytes)
            case .delete(let key):
                bytes.append(2)
                self.append(Array(key.utf8), to: &bytes)
            case .deleteAll(let prefix):
                bytes.append(3)
                self.append(Array(prefix.utf8), to: &bytes)
            }
        }
        return bytes
    }

    /// The operations in `bytes`, or `nil` when they are not a valid record.
    static func decode(_ bytes: [UInt8]) -> [KeyValueBatch.Operation]? {
        var reader = Reader(bytes: bytes)
        guard let count = reader.uint32() else { return nil }
        var operations: [KeyValueBatch.Operation] = []
        operations.reserveCapacity(Int(min(count, 1 << 16)))
        for _ in 0..<count {
            guard let tag = reader.byte(), let keyBytes = reader.chunk(),
                let key = String(validating: keyBytes, as: UTF8.self)
            else { return nil }
            switch tag {
            case 1:
                guard let value = reader.chunk() else { return nil }
                operations.append(.put(key: key, value: value))
            case 2:
                operations.append(.delete(key: key))
            case 3:
                operations.append(.deleteAll(prefix: key))
            default:
                return nil
            }
        }
        return reader.isAtEnd ? operations : nil
    }

    private static func append(_ value: UInt32, to bytes: inout [UInt8]) {
        for shift in stride(from: 0, to: 32, by: 8) {
            bytes.append(UInt8(truncatingIfNeeded: value >> UInt32(shift)))
        }
    }

    private static func append(_ chunk: [UInt8], to bytes: inout [UInt8]) {
        self.append(UInt32(chunk.count), to: &bytes)
        bytes.append(contentsOf: chunk)
    }

    private struct Reader {
        let bytes: [UInt8]
        var offset = 0

        var isAtEnd: Bool { self.offset == self.bytes.count }

        mutating func byte() -> UInt8? {
            guard self.offset < self.bytes.count else { return nil }
            defer { self.offset += 1 }
            return self.bytes[self.offset]
        }

        mutating func uint32() -> UInt32? {
            guard self.bytes.count - self.offset >= 4 else { return nil }
            var value: UInt32 = 0
            for index in 0..<4 {
                value |= UInt32(self.bytes[self.offset + index]) << UInt32(8 * index)
            }
            self.offset += 4
            return value
        }

        mutating func chunk() -> [UInt8]? {
            guard let length = self.uint32(), self.bytes.count - self.offset >= Int(length) else { return nil }
            defer { self.offset += Int(length) }
            return Array(self.bytes[self.offset..<self.offset + Int(length)])
        }
    }
}
