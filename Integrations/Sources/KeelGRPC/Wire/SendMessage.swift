import GRPCCore

/// The message of `keel.v1.Requests/Send`: which request, and the request itself as JSON.
///
/// Layout: the name's length in UTF-8 bytes as a big-endian `UInt32`, the name, then the payload
/// to the end of the message. The payload is never copied into another container (no base64, no
/// second JSON layer).
struct SendMessage: WireMessage, Hashable {
    /// The request type's name, `ServiceRequest.name`.
    var name: String
    /// The request, JSON-encoded.
    var payload: [UInt8]

    func encoded() -> [UInt8] {
        let name = Array(self.name.utf8)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(4 + name.count + self.payload.count)
        let length = UInt32(name.count)
        bytes.append(UInt8(truncatingIfNeeded: length >> 24))
        bytes.append(UInt8(truncatingIfNeeded: length >> 16))
        bytes.append(UInt8(truncatingIfNeeded: length >> 8))
        bytes.append(UInt8(truncatingIfNeeded: length))
        bytes.append(contentsOf: name)
        bytes.append(contentsOf: self.payload)
        return bytes
    }

    init(name: String, payload: [UInt8]) {
        self.name = name
        self.payload = payload
    }

    init(decoding bytes: UnsafeRawBufferPointer) throws {
        guard bytes.count >= 4 else {
            throw RPCError(code: .invalidArgument, message: "a Send message of \(bytes.count) bytes has no name")
        }
        let length = Int(bytes[0]) << 24 | Int(bytes[1]) << 16 | Int(bytes[2]) << 8 | Int(bytes[3])
        guard length <= bytes.count - 4 else {
            throw RPCError(
                code: .invalidArgument,
                message: "a Send message of \(bytes.count) bytes announces a name of \(length) bytes"
            )
        }
        self.name = String(decoding: bytes[4..<(4 + length)], as: UTF8.self)
        self.payload = Array(bytes[(4 + length)...])
    }
}
