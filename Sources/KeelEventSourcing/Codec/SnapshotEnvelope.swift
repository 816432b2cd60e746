/// A snapshot of some state (an aggregate's, a projection's) encoded with the schema version of
/// the state's type and the stream version it includes.
///
/// A snapshot is a cache: the events stay the truth. So a snapshot is never upcast. When the
/// state's type changes shape, raise its schema version; a snapshot written at another version
/// then decodes as ``SnapshotDecodingResult/stale(storedVersion:currentVersion:)``, which is not
/// an error: ignore it, rebuild the state from the events, and write a fresh snapshot.
///
/// ```swift
/// struct Cart: Codable { static let snapshotVersion = 2; var items: [String: Int] }
///
/// let envelope = try SnapshotEnvelope(encoding: cart, schemaVersion: Cart.snapshotVersion, streamVersion: 41)
///
/// switch try envelope.decode(Cart.self, currentVersion: Cart.snapshotVersion) {
/// case .current(let cart):
///     // replay the events after envelope.streamVersion onto `cart`
/// case .stale:
///     // replay the whole stream, then save a new snapshot
/// }
/// ```
///
/// The envelope is a `Codable` value, so it can be stored wherever the application keeps
/// snapshots. Encoding and decoding run synchronously on the calling task and may be called from
/// any number of tasks at once.
public struct SnapshotEnvelope: Sendable, Hashable, Codable {
    /// The schema version of the state's type when the snapshot was taken, from 1.
    public var schemaVersion: Int
    /// The version of the last event of the stream that the state includes.
    public var streamVersion: UInt64
    /// The state, encoded by an ``EventCodec``.
    public var payload: [UInt8]

    /// Makes an envelope from parts already encoded.
    /// - Parameters:
    ///   - schemaVersion: The state's schema version.
    ///   - streamVersion: The stream version the state includes.
    ///   - payload: The encoded state.
    public init(schemaVersion: Int, streamVersion: UInt64, payload: [UInt8]) {
        self.schemaVersion = schemaVersion
        self.streamVersion = streamVersion
        self.payload = payload
    }

    /// Encodes `state` into an envelope.
    /// - Parameters:
    ///   - state: The state.
    ///   - schemaVersion: The current schema version of the state's type.
    ///   - streamVersion: The version of the last event the state includes.
    ///   - codec: The payload format; ``JSONEventCodec`` by default (pass the serializer's codec to
    ///     share its configuration).
    /// - Throws: ``EventCodecError`` with ``EventCodecError/Code/encodingFailed`` when the codec
    ///   fails.
    public init<State: Encodable>(
        encoding state: State,
        schemaVersion: Int,
        streamVersion: UInt64,
        codec: any EventCodec = JSONEventCodec()
    ) throws(EventCodecError) {
        do {
            self.payload = try codec.encode(state)
        } catch {
            throw EventCodecError(
                code: .encodingFailed,
                schemaVersion: schemaVersion,
                message: "the codec could not encode a snapshot of \(State.self)",
                cause: error
            )
        }
        self.schemaVersion = schemaVersion
        self.streamVersion = streamVersion
    }

    /// Decodes the state, if the snapshot was written at `currentVersion`.
    /// - Parameters:
    ///   - type: The state's type.
    ///   - currentVersion: The current schema version of `type`.
    ///   - codec: The codec the envelope was encoded with; ``JSONEventCodec`` by default.
    /// - Returns: ``SnapshotDecodingResult/current(_:)`` with the state, or
    ///   ``SnapshotDecodingResult/stale(storedVersion:currentVersion:)`` when the snapshot's
    ///   version is another (older or newer); a stale payload is not decoded.
    /// - Throws: ``EventCodecError`` with ``EventCodecError/Code/decodingFailed`` when the
    ///   versions match but the payload does not decode (a corrupt snapshot, or a change to the
    ///   type made without raising its version); the codec's error is the cause.
    public func decode<State: Decodable>(
        _ type: State.Type,
        currentVersion: Int,
        codec: any EventCodec = JSONEventCodec()
    ) throws(EventCodecError) -> SnapshotDecodingResult<State> {
        guard self.schemaVersion == currentVersion else {
            return .stale(storedVersion: self.schemaVersion, currentVersion: currentVersion)
        }
        do {
            return .current(try codec.decode(type, from: self.payload))
        } catch {
            throw EventCodecError(
                code: .decodingFailed,
                schemaVersion: self.schemaVersion,
                currentSchemaVersion: currentVersion,
                message: "the snapshot at stream version \(self.streamVersion) is not a valid \(State.self)",
                cause: error
            )
        }
    }
}
