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
    ///
    /// It yields first: the appenders the last batch acknowledged were just resumed, and most
    /// append again at once; taken before they run, the next batch would hold only the few that
    /// were queued meanwhile, and the appenders would settle into small alternating groups. With
    /// 16 appenders it took about a third of them per batch; after the yield, the store's
    /// throughput in `pg.append.1` rose by some 60% (`Benchmarks/README.md`).
    private func nextBatch() async -> [PendingAppend]? {
        let maxEvents = self.configuration.maxBatchEvents
        await Task.yield()
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

    /// Commits `batch`: checks each append's expected version on its own, writes the accepted
    /// events, the streams and the head in one statement that also notifies the new head, and
    /// commits; see ``commit(_:on:)``.
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

    /// What a batch writes once each append's expected version is checked against the streams'
    /// last versions: the outcome (each append's result), the new events' columns, each touched
    /// stream's new last version, and the head after the batch.
    private struct Plan {
        var outcome = BatchOutcome(results: [], head: nil)
        var columns = EventRows.Columns()
        var touched: [String: UInt64] = [:]
        var next: UInt64
    }

    /// Checks each append of `batch` in batch order (so that two appends to one stream see each
    /// other) against `streams`, and lays out the accepted events from position `head` on.
    private func plan(
        _ batch: [PendingAppend],
        head: UInt64,
        streams: [String: (last: UInt64?, isDeleted: Bool)]
    ) throws -> Plan {
        var streams = streams
        var plan = Plan(next: head)
        plan.outcome.results.reserveCapacity(batch.count)
        let encoder = JSONEncoder()
        for pending in batch {
            let entry = streams[pending.stream.name] ?? (nil, false)
            let current = entry.isDeleted ? nil : entry.last
            guard pending.expected.isSatisfied(by: current) else {
                plan.outcome.results.append(
                    .failure(.wrongExpectedVersion(pending.stream, expected: pending.expected, actual: current))
                )
                continue
            }
            guard !pending.events.isEmpty else {
                plan.outcome.results.append(
                    .success(AppendResult(streamVersion: current, positions: plan.next..<plan.next))
                )
                continue
            }
            let first = plan.next
            var version = entry.last.map { $0 + 1 } ?? 0
            for event in pending.events {
                try plan.columns.append(
                    event,
                    stream: pending.stream,
                    version: version,
                    position: plan.next,
                    encoder: encoder
                )
                version += 1
                plan.next += 1
            }
            streams[pending.stream.name] = (version - 1, false)
            plan.touched[pending.stream.name] = version - 1
            plan.outcome.results.append(
                .success(AppendResult(streamVersion: version - 1, positions: first..<plan.next))
            )
        }
        return plan
    }

    /// The bindings of `writeBatch` (and of `writeBatchIfUnchanged`, which adds two).
    private func bindings(of plan: Plan) -> PostgresBindings {
        var binds = PostgresBindings(capacity: 15)
        binds.append(plan.columns.positions)
        binds.append(plan.columns.streams)
        binds.append(plan.columns.versions)
        binds.append(plan.columns.ids)
        binds.append(plan.columns.types)
        binds.append(plan.columns.schemaVersions)
        binds.append(plan.columns.times)
        binds.append(plan.columns.metadata)
        binds.append(plan.columns.payloads)
        binds.append(Array(plan.touched.keys))
        binds.append(plan.touched.values.map { Int64($0) })
        binds.append(Int64(plan.next))
        binds.append(self.schema.channel)
        return binds
    }

    /// Commits `batch` on `connection`: first in two round trips without holding the head between
    /// them, then, if another writer moved the head in between, in a transaction that locks it.
    private func commit(_ batch: [PendingAppend], on connection: PostgresConnection) async throws -> BatchOutcome {
        if let outcome = try await self.commitUnlocked(batch, on: connection) { return outcome }
        for waiter in self.state.withLock({ $0.batchRetriesLocked() }) { waiter.resume() }
        return try await self.commitLocked(batch, on: connection)
    }

    /// The optimistic path: reads the head (its position and generation) and the batch's streams
    /// in one statement, checks the appends against them, then writes everything in one
    /// statement, in its own implicit transaction, that moves the head only if its position and
    /// generation are still those read: every append and every deletion moves one or the other
    /// under the head's row lock, so an unchanged head means the checks still hold. The head's
    /// row lock is held only while that statement runs and commits, never across a round trip.
    /// - Returns: The outcome; `nil` when the head had moved and nothing was written.
    private func commitUnlocked(
        _ batch: [PendingAppend],
        on connection: PostgresConnection
    ) async throws
        -> BatchOutcome?
    {
        let schema = self.schema
        let logger = self.logger
        var names = PostgresBindings()
        names.append(Array(Set(batch.map(\.stream.name))))
        let rows = try await connection.checkedQuery(
            PostgresQuery(unsafeSQL: schema.readBatchState, binds: names),
            logger: logger
        )
        var head: (position: Int64, generation: Int64)?
        var streams: [String: (last: UInt64?, isDeleted: Bool)] = [:]
        for try await (position, generation, name, last, isDeleted) in rows.decode(
            (Int64, Int64, String?, Int64?, Bool?).self
        ) {
            head = (position, generation)
            if let name { streams[name] = (last.map { UInt64($0) }, isDeleted ?? false) }
        }
        // A row stream ends early, without an error, when the task is cancelled (the connection
        // closed): the head row always exists.
        guard let head, !Task.isCancelled else { throw ConnectionClosedError() }
        var plan = try self.plan(batch, head: UInt64(head.position), streams: streams)
        guard !plan.columns.isEmpty else { return plan.outcome }
        var binds = self.bindings(of: plan)
        binds.append(head.position)
        binds.append(head.generation)
        for waiter in self.state.withLock({ $0.batchRequestsHeadLock() }) { waiter.resume() }
        var written = false
        do {
            let result = try await connection.checkedQuery(
                PostgresQuery(unsafeSQL: schema.writeBatchIfUnchanged, binds: binds),
                logger: logger
            )
            for try await _ in result { written = true }
        } catch {
            // The statement commits by itself: once sent, whether it did is unknown.
            throw CommitOutcomeUnknown(underlying: error)
        }
        guard !Task.isCancelled else {
            throw CommitOutcomeUnknown(underlying: ConnectionClosedError())
        }
        for waiter in self.state.withLock({ $0.batchLockedHead() }) { waiter.resume() }
        guard written else { return nil }
        plan.outcome.head = plan.next
        return plan.outcome
    }

    /// The locked path: a transaction that locks the head, reads the batch's streams, checks
    /// the appends and writes them.
    private func commitLocked(_ batch: [PendingAppend], on connection: PostgresConnection) async throws -> BatchOutcome
    {
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
            var plan = try self.plan(batch, head: UInt64(head), streams: streams)
            guard !plan.columns.isEmpty else { return plan.outcome }
            try await connection.checkedQuery(
                PostgresQuery(unsafeSQL: schema.writeBatch, binds: self.bindings(of: plan)),
                logger: logger
            )
            plan.outcome.head = plan.next
            return plan.outcome
        }
    }

    private func failure(_ error: EventStoreError, for pending: PendingAppend) -> EventStoreError {
        var error = error
        error.stream = pending.stream
        return error
    }
}
