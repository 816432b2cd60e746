import KeelCore

extension AggregateRepository {
    /// A snapshot that decoded at the current schema version.
    struct FoundSnapshot {
        var aggregate: A
        var streamVersion: UInt64
    }

    /// Reads and decodes the latest snapshot of aggregate `id`. Never throws: whatever goes wrong
    /// is an outcome, and the caller rebuilds from the events.
    func readSnapshot(of id: String) async -> (FoundSnapshot?, SnapshotLoadOutcome) {
        let stream = self.snapshotStreamID(for: id)
        let latest: RecordedEvent
        do {
            let records = try await self.store.readStream(stream, from: .max, direction: .backwards, limit: 1)
            guard let record = records.first else { return (nil, .notFound) }
            latest = record
        } catch {
            return (nil, self.unreadable(stream, "reading the snapshot stream failed", cause: error))
        }
        guard latest.type == Self.snapshotEventType else {
            return (
                nil,
                self.unreadable(
                    stream,
                    "the latest event at version \(latest.version) is of type \(latest.type), not a snapshot"
                )
            )
        }
        let envelope: SnapshotEnvelope
        do {
            envelope = try self.serializer.codec.decode(SnapshotEnvelope.self, from: latest.payload)
        } catch {
            return (
                nil,
                self.unreadable(stream, "the snapshot at version \(latest.version) is not an envelope", cause: error)
            )
        }
        do {
            let decoded = try envelope.decode(
                A.self,
                currentVersion: A.snapshotSchemaVersion,
                codec: self.serializer.codec
            )
            switch decoded {
            case .current(let aggregate):
                return (
                    FoundSnapshot(aggregate: aggregate, streamVersion: envelope.streamVersion),
                    .used(streamVersion: envelope.streamVersion)
                )
            case .stale(let storedVersion, let currentVersion):
                self.metrics.snapshotStale.increment(by: 1)
                return (nil, .stale(storedVersion: storedVersion, currentVersion: currentVersion))
            }
        } catch {
            return (
                nil,
                self.unreadable(
                    stream,
                    "the snapshot at stream version \(envelope.streamVersion) does not decode as \(A.self)",
                    cause: error
                )
            )
        }
    }

    private func unreadable(_ stream: StreamID, _ message: String, cause: (any Error)? = nil) -> SnapshotLoadOutcome {
        self.metrics.snapshotUnreadable.increment(by: 1)
        return .unreadable(AggregateError(code: .snapshotUnreadable, stream: stream, message: message, cause: cause))
    }

    /// Writes a snapshot of `aggregate` at `streamVersion`. Never throws: a failure is the
    /// outcome, and the caller's events are already stored.
    func writeSnapshot(of aggregate: A, id: String, streamVersion: UInt64) async -> SnapshotWriteOutcome {
        let stream = self.snapshotStreamID(for: id)
        do throws(AggregateError) {
            let data = try self.encodeSnapshot(of: aggregate, id: id, stream: stream, streamVersion: streamVersion)
            let result: AppendResult
            do {
                result = try await self.store.append([data], to: stream, expecting: .any)
            } catch {
                throw AggregateError(
                    code: .snapshotWriteFailed,
                    stream: stream,
                    message: "appending the snapshot at stream version \(streamVersion) failed",
                    cause: error
                )
            }
            if result.streamVersion == 0 {
                // The stream's first snapshot: bound what reads of it return from now on.
                do {
                    try await self.store.setStreamMetadata(
                        StreamMetadata(maxCount: self.configuration.retainedSnapshots),
                        for: stream
                    )
                } catch {
                    throw AggregateError(
                        code: .snapshotWriteFailed,
                        stream: stream,
                        message: """
                            the snapshot at stream version \(streamVersion) was written, but setting the \
                            snapshot stream's maxCount failed
                            """,
                        cause: error
                    )
                }
            }
        } catch {
            self.metrics.snapshotWriteFailed.increment(by: 1)
            return .failed(error)
        }
        self.metrics.snapshotWritten.increment(by: 1)
        return .written(streamVersion: streamVersion)
    }

    private func encodeSnapshot(
        of aggregate: A,
        id: String,
        stream: StreamID,
        streamVersion: UInt64
    ) throws(AggregateError) -> EventData {
        do {
            let envelope = try SnapshotEnvelope(
                encoding: aggregate,
                schemaVersion: A.snapshotSchemaVersion,
                streamVersion: streamVersion,
                codec: self.serializer.codec
            )
            let payload = try self.serializer.codec.encode(envelope)
            var metadata = EventMetadata.current(
                id: EventID.random(using: self.random),
                time: self.wallClock.nanosecondsSinceEpoch()
            )
            metadata.aggregateID = id
            return EventData(type: Self.snapshotEventType, schemaVersion: 1, metadata: metadata, payload: payload)
        } catch {
            throw AggregateError(
                code: .snapshotWriteFailed,
                stream: stream,
                message: "encoding the snapshot of \(A.self) at stream version \(streamVersion) failed",
                cause: error
            )
        }
    }
}
