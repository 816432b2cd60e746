#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The default ``EventCodec``: JSON, with sorted keys, so that one value always encodes to the
/// same bytes.
///
/// The codec holds one `JSONEncoder` and one `JSONDecoder`, configured when it is made and never
/// changed afterwards; each call to `encode` or `decode` works on state of its own, so a codec may
/// be shared by any number of tasks.
///
/// ```swift
/// let codec = JSONEventCodec()
/// let bytes = try codec.encode(UserRegistered(email: "ada@example.com", name: "Ada"))
/// // {"email":"ada@example.com","name":"Ada"}
/// ```
///
/// To change how dates, data or non-finite numbers are encoded, configure an encoder and a
/// decoder and pass them to ``init(encoder:decoder:)``. Change such strategies only together with
/// a schema version: events already stored keep their old encoding.
public struct JSONEventCodec: EventCodec {
    private let encoder: JSONEncoder
    private let decoder: JSONDecoder

    /// Makes a codec with Foundation's default strategies and sorted keys.
    public init() {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        self.encoder = encoder
        self.decoder = JSONDecoder()
    }

    /// Makes a codec from a configured encoder and decoder.
    ///
    /// The codec takes them over: it adds `.sortedKeys` to the encoder's output formatting, and
    /// neither may be changed afterwards (changing one while another task encodes is a data race).
    /// - Parameters:
    ///   - encoder: The encoder, with the strategies to use.
    ///   - decoder: The decoder, with the matching strategies.
    public init(encoder: JSONEncoder, decoder: JSONDecoder) {
        encoder.outputFormatting.insert(.sortedKeys)
        self.encoder = encoder
        self.decoder = decoder
    }

    /// Encodes `value` as JSON with sorted keys.
    /// - Parameter value: The value.
    /// - Returns: The UTF-8 bytes of its JSON.
    /// - Throws: `EncodingError` when the value cannot be represented (a non-finite number with
    ///   the default strategy, for example).
    public func encode<Value: Encodable>(_ value: Value) throws -> [UInt8] {
        Array(try self.encoder.encode(value))
    }

    /// Decodes a value of `type` from JSON.
    /// - Parameters:
    ///   - type: The type to decode.
    ///   - bytes: UTF-8 JSON.
    /// - Returns: The value.
    /// - Throws: `DecodingError` when the bytes are not JSON or do not match `type`.
    public func decode<Value: Decodable>(_ type: Value.Type, from bytes: [UInt8]) throws -> Value {
        try self.decoder.decode(type, from: Data(bytes))
    }
}
