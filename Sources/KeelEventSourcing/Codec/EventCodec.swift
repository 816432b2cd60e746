/// Turns values into payload bytes and back: the format events and snapshots are stored in.
///
/// ``JSONEventCodec`` is the default. Write your own to store another format (a binary encoding,
/// compressed or encrypted JSON); an ``EventSerializer`` takes any codec, and typed
/// ``EventUpcaster``s decode and encode through the serializer's codec, so they keep working
/// when the format changes. Raw upcasters see the bytes themselves and must understand the
/// format.
///
/// ```swift
/// /// JSON behind a one-byte format tag.
/// struct TaggedJSONCodec: EventCodec {
///     let json = JSONEventCodec()
///
///     func encode<Value: Encodable>(_ value: Value) throws -> [UInt8] {
///         [0x01] + (try self.json.encode(value))
///     }
///
///     func decode<Value: Decodable>(_ type: Value.Type, from bytes: [UInt8]) throws -> Value {
///         guard bytes.first == 0x01 else { throw UnknownFormat() }
///         return try self.json.decode(type, from: Array(bytes.dropFirst()))
///     }
/// }
/// ```
///
/// Both methods may be called from many tasks at once; they must not suspend or block. Encoding
/// the same value twice should give the same bytes (sort keys, avoid unordered containers), so
/// that payloads can be compared and hashed.
public protocol EventCodec: Sendable {
    /// Encodes `value`.
    /// - Parameter value: The value.
    /// - Returns: Its bytes.
    /// - Throws: Whatever the format's encoder throws, such as `EncodingError`.
    func encode<Value: Encodable>(_ value: Value) throws -> [UInt8]

    /// Decodes a value of `type` from `bytes`.
    /// - Parameters:
    ///   - type: The type to decode.
    ///   - bytes: What ``encode(_:)`` produced.
    /// - Returns: The value.
    /// - Throws: Whatever the format's decoder throws, such as `DecodingError`, when the bytes are
    ///   not a valid encoding of `type`.
    func decode<Value: Decodable>(_ type: Value.Type, from bytes: [UInt8]) throws -> Value
}
