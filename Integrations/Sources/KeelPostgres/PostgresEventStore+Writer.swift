import Foundation
import KeelEventSourcing
import Logging
import PostgresNIO
import Synchronization

extension PostgresEventStore {
    /// The outcome of one batch: each append's result, in batch order, and the head after it
    /// when it committed.
    private struct BatchOutcome: Sendable {
        var results: [Result<AppendResult, EventStoreError>]
        var head: UInt64?
    }

    /// The writer: takes batches of queued appends and commits each in one transaction, until the
    /// store closes and the queue is empty (the appends queued before ``close()`` were failed by
    /// it; a batch already taken is finished).
    func runWriter() async {
        while let batch = await self.nextBatch() {
            let outcome = await self.commit(batch)
            if let head = outcome.head { self.observe(head: head) }
            let committed = outcome.head != nil
            let failed = outcome.results.allSatisfy {
                if case .failure(let error) = $0 { error.code == .io } else { false }
            }
            let acknowledged = outcome.results.count(where: { if case .success = $0 { true } else { false } })
            let waiters = self.state.withLock {
                $0.batchFinished(appends: acknowledged, committed: committed, failed: failed)
            }
            self.record(batchOf: batch.count, committed: committed, failed: failed)
            for (pending, result) in zip(batch, outcome.results) { pending.continuation.resume(returning: result) }
            for waiter in waiters { waiter.resume() }
        }
    }

    /// The next batch, waiting for appends to be queued; `nil` once the store is closed and the
    /// queue is empty.
    private func nextBatch() async -> [PendingAppend]? {
        let maxEvents = self.configuration.maxBatchEvents
        while true {
            switch self.state.withLock({ $0.takeBatch(maxEvents: maxEvents) }) {
            case .batch(let batch, let waiters):
                for waiter in waiters { waiter.resume() }
                return batch
            case .finished:
                return nil
            case .wait:
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let parked = self.state.withLock { $0.parkWriter(continuation) }
                    if !parked { continuation.resume() }
                }
            }
        }
    }

    /// Commits `batch` in one transaction: locks the head, reads the batch's streams, checks
    /// each append's expected version on its own (in batch order, so that two appends to one
    /// stream see each other), writes the accepted events, the streams and the head in one
    /// statement that also notifies the new head, and commits.
    private func commit(_ batch: [PendingAppend]) async -> BatchOutcome {
        do {
            return try await self.withConnection { connection in
                return try await self.commit(batch, on: connection)
            }
        } catch let error as CommitOutcomeUnknown {
            let failure = EventStoreError(
                code: .io,
                message: "the commit's outcome is unknown (the events may or may not have been written): "
                    + Self.describe(error.underlying),
                cause: error.underlying
            )
            self.logger.error("group commit of \(batch.count) appends: \(failure.message)")
            return BatchOutcome(results: batch.map { .failure(self.failure(failure, for: $0)) }, head: nil)
        } catch {
            let failure = self.storeError(error, during: "appending")
            self.logger.error("group commit of \(batch.count) appends: \(failure.message)")
            return BatchOutcome(results: batch.map { .failure(self.failure(failure, for: $0)) }, head: nil)
        }
    }

    /// The transaction of ``commit(_:)`` on `connection`.
    private func commit(_ batch: [PendingAppend], on connection: PostgresConnection) async throws -> BatchOutcome {
        let schema = self.schema
        let logger = self.logger
        return try await Self.transaction(on: connection, logger: logger) { connection in

            var head: Int64?
            for waiter in self.state.withLock({ $0.batchRequestsHeadLock() }) { waiter.resume() }
            let locked = try await connection.checkedQuery(PostgresQuery(unsafeSQL: schema.lockHead), logger: logger)
            for try await position in locked.decode(Int64.self) { head = position }
            // A row stream ends early, without an error, when the task is cancelled (the
            // connection closed): the head row always exists.
            guard let head, !Task.isCancelled else { throw ConnectionClosedError() }
            let waiters = self.state.withLock { $0.batchLockedHead() }
            for waiter in waiters { waiter.resume() }

            var names = PostgresBindings()
            names.append(Array(Set(batch.map(\.stream.name))))
            let rows = try await connection.checkedQuery(
                PostgresQuery(unsafeSQL: schema.readStreamStates, binds: names),
                logger: logger
            )
            var streams: [String: (last: UInt64?, isDeleted: Bool)] = [:]
            for try await (name, last, isDeleted) in rows.decode((String, Int64?, Bool).self) {
                streams[name] = (last.map { UInt64($0) }, isDeleted)
            }

            var outcome = BatchOutcome(results: [], head: nil)
            outcome.results.reserveCapacity(batch.count)
            var columns = EventRows.Columns()
            var touched: [String: UInt64] = [:]
            var next = UInt64(head)
            let encoder = JSONEncoder()
            for pending in batch {
                let entry = streams[pending.stream.name] ?? (nil, false)
                let current = entry.isDeleted ? nil : entry.last
                guard pending.expected.isSatisfied(by: current) else {
                    outcome.results.append(
                        .failure(
                            .wrongExpectedVersion(pending.stream, expected: pending.expected, actual: current)
                        )
                    )
                    continue
                }
                guard !pending.events.isEmpty else {
                    outcome.results.append(
                        .success(AppendResult(streamVersion: current, positions: next..<next))
                    )
                    continue
                }
                let first = next
                var version = entry.last.map { $0 + 1 } ?? 0
                for event in pending.events {
                    try columns.append(
                        event,
                        stream: pending.stream,
                        version: version,
                        position: next,
                        encoder: encoder
                    )
                    version += 1
                    next += 1
                }
                streams[pending.stream.name] = (version - 1, false)
                touched[pending.stream.name] = version - 1
                outcome.results.append(
                    .success(AppendResult(streamVersion: version - 1, positions: first..<next))
                )
            }
            guard !columns.isEmpty else { return outcome }

            var binds = PostgresBindings(capacity: 13)
            binds.append(columns.positions)
            binds.append(columns.streams)
            binds.append(columns.versions)
            binds.append(columns.ids)
            binds.append(columns.types)
            binds.append(columns.schemaVersions)
            binds.append(columns.times)
            binds.append(columns.metadata)
            binds.append(columns.payloads)
            binds.append(Array(touched.keys))
            binds.append(touched.values.map { Int64($0) })
            binds.append(Int64(next))
            binds.append(schema.channel)
            try await connection.checkedQuery(
                PostgresQuery(unsafeSQL: schema.writeBatch, binds: binds),
                logger: logger
            )
            outcome.head = next
            return outcome
        }
    }

    private func failure(_ error: EventStoreError, for pending: PendingAppend) -> EventStoreError {
        var error = error
        error.stream = pending.stream
        return error
    }
}
