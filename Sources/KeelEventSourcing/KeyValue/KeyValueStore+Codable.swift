extension KeyValueStore {
    /// The value under `key`, decoded as `type` from JSON.
    ///
    /// The typed twin of ``value(forKey:)`` for values written with ``set(_:forKey:codec:)`` (or as
    /// the JSON of a `type`). Suspends while the store reads.
    ///
    /// ```swift
    /// struct Settings: Codable { var checkoutEnabled: Bool }
    /// try await keyValueStore.set(Settings(checkoutEnabled: true), forKey: "settings")
    /// let settings = try await keyValueStore.value(Settings.self, forKey: "settings")
    /// ```
    /// - Parameters:
    ///   - type: The type to decode.
    ///   - key: The key.
    ///   - codec: How the value was encoded; JSON by default.
    /// - Returns: The value, or `nil` when there is none.
    /// - Throws: ``KeyValueStoreError`` with ``KeyValueStoreError/Code/decodingFailed`` when the
    ///   stored bytes do not decode as `type` (``KeyValueStoreError/key`` names the key), or what
    ///   ``value(forKey:)`` throws.
    public func value<Value: Decodable>(
        _ type: Value.Type,
        forKey key: String,
        codec: any EventCodec = JSONEventCodec()
    ) async throws(KeyValueStoreError) -> Value? {
        guard let bytes = try await self.value(forKey: key) else { return nil }
        return try codec.decodeValue(type, from: bytes, key: key, namespace: self.namespace)
    }

    /// Stores `value` under `key`, encoded as JSON, durably; a batch of one put.
    ///
    /// The typed twin of ``put(_:forKey:)``: read it back with ``value(_:forKey:codec:)``.
    /// Suspends while the store commits.
    /// - Parameters:
    ///   - value: The value.
    ///   - key: The key.
    ///   - codec: How to encode the value; JSON with sorted keys by default.
    /// - Throws: ``KeyValueStoreError`` with ``KeyValueStoreError/Code/encodingFailed`` when the
    ///   value does not encode (then nothing is written), or what ``commit(_:)`` throws.
    public func set(
        _ value: some Encodable,
        forKey key: String,
        codec: any EventCodec = JSONEventCodec()
    ) async throws(KeyValueStoreError) {
        let bytes = try codec.encodeValue(value, key: key, namespace: self.namespace)
        try await self.put(bytes, forKey: key)
    }
}

extension EventCodec {
    /// Encodes a key-value store's typed value, failing with ``KeyValueStoreError``.
    func encodeValue(
        _ value: some Encodable,
        key: String,
        namespace: String
    ) throws(KeyValueStoreError) -> [UInt8] {
        do {
            return try self.encode(value)
        } catch {
            throw KeyValueStoreError(
                code: .encodingFailed,
                namespace: namespace,
                key: key,
                message: "a \(type(of: value)) does not encode",
                cause: error
            )
        }
    }

    /// Decodes a key-value store's typed value, failing with ``KeyValueStoreError``.
    func decodeValue<Value: Decodable>(
        _ type: Value.Type,
        from bytes: [UInt8],
        key: String,
        namespace: String
    ) throws(KeyValueStoreError) -> Value {
        do {
            return try self.decode(type, from: bytes)
        } catch {
            throw KeyValueStoreError(
                code: .decodingFailed,
                namespace: namespace,
                key: key,
                message: "the \(bytes.count) bytes stored do not decode as \(Value.self)",
                cause: error
            )
        }
    }
}
