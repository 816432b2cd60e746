import Foundation
import KeelCore
import KeelEventSourcing
import NIOCore
import PostgresNIO

/// How events become rows and rows become events.
enum EventRows {
    /// The metadata fields that have no column of their own, kept as JSON in `metadata`.
    private struct StoredMetadata: Codable {
        var correlationID: String?
        var causationID: String?
        var traceID: TraceID?
        var spanID: SpanID?
        var custom: [String: String]?
    }

    /// The columns of a batch's new events, one array per column, in the order `writeBatch` binds
    /// them.
    struct Columns {
        var positions: [Int64] = []
        var streams: [String] = []
        var versions: [Int64] = []
        var ids: [UUID] = []
        var types: [String] = []
        var schemaVersions: [Int32] = []
        var times: [Int64] = []
        var metadata: [String] = []
        var payloads: [ByteBuffer] = []

        var isEmpty: Bool { self.positions.isEmpty }

        mutating func append(
            _ event: EventData,
            stream: StreamID,
            version: UInt64,
            position: UInt64,
            encoder: JSONEncoder
        )
            throws
        {
            self.positions.append(Int64(position))
            self.streams.append(stream.name)
            self.versions.append(Int64(version))
            self.ids.append(EventRows.uuid(event.metadata.id))
            self.types.append(event.type)
            self.schemaVersions.append(Int32(clamping: event.schemaVersion))
            self.times.append(event.metadata.time)
            self.metadata.append(try EventRows.encodeMetadata(event.metadata, encoder: encoder))
            self.payloads.append(ByteBuffer(bytes: event.payload))
        }
    }

    static func uuid(_ id: EventID) -> UUID {
        let h = id.high.bigEndian
        let l = id.low.bigEndian
        return withUnsafeBytes(of: (h, l)) { bytes in
            UUID(
                uuid: (
                    bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
                    bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]
                )
            )
        }
    }

    static func eventID(_ uuid: UUID) -> EventID {
        withUnsafeBytes(of: uuid.uuid) { bytes in
            EventID(
                high: UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
                low: UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
            )
        }
    }

    static func encodeMetadata(_ metadata: EventMetadata, encoder: JSONEncoder) throws -> String {
        let stored = StoredMetadata(
            correlationID: metadata.correlationID,
            causationID: metadata.causationID,
            traceID: metadata.traceID,
            spanID: metadata.spanID,
            custom: metadata.custom.isEmpty ? nil : metadata.custom
        )
        return String(decoding: try encoder.encode(stored), as: UTF8.self)
    }

    /// Decodes one row of `PostgresSchema.eventColumns`.
    static func decode(_ row: PostgresRow, decoder: JSONDecoder) throws -> RecordedEvent {
        let (position, stream, version, id, type, schemaVersion, time, metadataText, payload) = try row.decode(
            (Int64, String, Int64, UUID, String, Int32, Int64, String, ByteBuffer).self
        )
        let stored = try decoder.decode(StoredMetadata.self, from: Data(metadataText.utf8))
        let metadata = EventMetadata(
            id: Self.eventID(id),
            time: time,
            correlationID: stored.correlationID,
            causationID: stored.causationID,
            traceID: stored.traceID,
            spanID: stored.spanID,
            custom: stored.custom ?? [:]
        )
        return RecordedEvent(
            stream: StreamID(stream),
            version: UInt64(version),
            position: UInt64(position),
            data: EventData(
                type: type,
                schemaVersion: Int(schemaVersion),
                metadata: metadata,
                payload: Array(payload.readableBytesView)
            )
        )
    }
}
