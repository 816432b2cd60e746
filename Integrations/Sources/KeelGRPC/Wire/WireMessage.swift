import Foundation
import GRPCCore

/// A message of ``RequestsRPC``: its bytes on the wire, written and read by hand (no protoc).
protocol WireMessage: Sendable {
    /// The message's bytes.
    func encoded() throws -> [UInt8]

    /// Reads a message from its bytes.
    /// - Throws: An `RPCError` with code `invalidArgument` when the bytes are not such a message.
    init(decoding bytes: UnsafeRawBufferPointer) throws
}

/// A message that travels as its JSON.
protocol JSONWireMessage: WireMessage, Codable {}

extension JSONWireMessage {
    func encoded() throws -> [UInt8] {
        Array(try JSONEncoder().encode(self))
    }

    init(decoding bytes: UnsafeRawBufferPointer) throws {
        do {
            self = try JSONDecoder().decode(Self.self, from: Data(bytes))
        } catch {
            throw RPCError(code: .invalidArgument, message: "a malformed \(Self.self): \(error)")
        }
    }
}

/// Writes a ``WireMessage`` for gRPC.
struct WireSerializer<Message: WireMessage>: MessageSerializer {
    func serialize<Bytes: GRPCContiguousBytes>(_ message: Message) throws -> Bytes {
        Bytes(try message.encoded())
    }
}

/// Reads a ``WireMessage`` for gRPC.
struct WireDeserializer<Message: WireMessage>: MessageDeserializer {
    func deserialize<Bytes: GRPCContiguousBytes>(_ serializedMessageBytes: Bytes) throws -> Message {
        try serializedMessageBytes.withUnsafeBytes { try Message(decoding: $0) }
    }
}
