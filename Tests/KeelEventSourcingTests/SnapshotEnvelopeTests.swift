import Foundation
import KeelEventSourcing
import Testing

@Suite("Snapshot envelopes", .timeLimit(.minutes(2)))
struct SnapshotEnvelopeTests {
    struct Cart: Codable, Equatable {
        static let snapshotVersion = 2
        var items: [String: Int]
        var total: Int
    }

    static let cart = Cart(items: ["P-1": 2, "P-2": 1], total: 700)

    @Test("a snapshot at the current version decodes", arguments: [false, true])
    func current(_ tagged: Bool) throws {
        let codec: any EventCodec = tagged ? TaggedJSONCodec() : JSONEventCodec()
        let envelope = try SnapshotEnvelope(encoding: Self.cart, schemaVersion: 2, streamVersion: 41, codec: codec)
        #expect(envelope.schemaVersion == 2)
        #expect(envelope.streamVersion == 41)
        #expect((envelope.payload.first == TaggedJSONCodec.tag) == tagged)
        let result = try envelope.decode(Cart.self, currentVersion: Cart.snapshotVersion, codec: codec)
        #expect(result == .current(Self.cart))
        #expect(result.state == Self.cart)
        #expect(!result.isStale)
    }

    @Test("a snapshot of another version is stale, not an error, and its payload is not decoded")
    func stale() throws {
        // The payload would not even decode as today's Cart: a stale snapshot is never decoded.
        let older = SnapshotEnvelope(schemaVersion: 1, streamVersion: 9, payload: Array(#"{"lines":[]}"#.utf8))
        let result = try older.decode(Cart.self, currentVersion: Cart.snapshotVersion)
        #expect(result == .stale(storedVersion: 1, currentVersion: 2))
        #expect(result.isStale)
        #expect(result.state == nil)

        let newer = try SnapshotEnvelope(encoding: Self.cart, schemaVersion: 3, streamVersion: 9)
        #expect(try newer.decode(Cart.self, currentVersion: 2) == .stale(storedVersion: 3, currentVersion: 2))
    }

    @Test("a corrupt snapshot at the current version is a decoding failure")
    func corrupt() {
        let envelope = SnapshotEnvelope(schemaVersion: 2, streamVersion: 5, payload: Array("{\"items\":".utf8))
        let error = #expect(throws: EventCodecError.self) {
            try envelope.decode(Cart.self, currentVersion: 2)
        }
        #expect(error?.code == .decodingFailed)
        #expect(error?.schemaVersion == 2)
        #expect(error?.eventType == nil)
        #expect(error?.cause is DecodingError)
    }

    @Test("a state the codec cannot encode is an encoding failure")
    func encodingFailure() {
        let error = #expect(throws: EventCodecError.self) {
            try SnapshotEnvelope(encoding: ["ratio": Double.nan], schemaVersion: 1, streamVersion: 0)
        }
        #expect(error?.code == .encodingFailed)
        #expect(error?.schemaVersion == 1)
    }

    @Test("the envelope itself is Codable, so it can be stored anywhere")
    func envelopeIsCodable() throws {
        let envelope = try SnapshotEnvelope(encoding: Self.cart, schemaVersion: 2, streamVersion: 41)
        let codec = JSONEventCodec()
        let stored = try codec.encode(envelope)
        let loaded = try codec.decode(SnapshotEnvelope.self, from: stored)
        #expect(loaded == envelope)
        #expect(try loaded.decode(Cart.self, currentVersion: 2).state == Self.cart)
    }
}
