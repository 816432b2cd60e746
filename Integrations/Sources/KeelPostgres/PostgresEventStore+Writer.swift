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

    /// What the writer knows of the head and of the streams it has read or written, as of the
    /// head after its own last commit: its commits one after another keep it true, and any other
    /// write (an append from another process, a deletion, a stream's metadata) moves the head's
    /// position or generation, which the conditional write checks, so a stale copy never writes.
    struct WriterCache {
        /// The most streams kept; past it the copy starts over.
        static let capacity = 4_096

        /// The head after the writer's last commit (or as last read).
        var head: (position: Int64, generation: Int64)?
        /// Each known stream's last version and deletion, as of ``head``; a stream known not to
        /// exist is `(nil, false)`.
        var streams: [String: (last: UInt64?, isDeleted: Bool)] = [:]

        /// The streams of `names`, if every one of them is known and the head is.
        func lookUp(
            _ names: Set<String>
        ) -> (head: (position: Int64, generation: Int64), streams: [String: (last: UInt64?, isDeleted: Bool)])? {
            guard let head = self.head, names.count <= self.streams.count else { return nil }
            var found: [String: (last: UInt64?, isDeleted: Bool)] = [:]
            found.reserveCapacity(names.count)
            for name in names {
                guard let entry = self.streams[name] else { return nil }
                found[name] = entry
            }
            return (head, found)
        }

        /// Takes in a fresh read of the head and of `names`' streams: what was known still holds
        /// only if the head has not moved since.
        mutating func read(
            head: (position: Int64, generation: Int64),
            names: Set<String>,
            streams: [String: (last: UInt64?, isDeleted: Bool)]
        ) {
            if self.head?.position != head.position || self.head?.generation != head.generation {
                self.streams = [:]
            }
            self.head = head
            for name in names { self.streams[name] = streams[name] ?? (nil, false) }
            self.trim()
        }

        /// Takes in the writer's own commit: the head moved to `position`, and `touched` streams
        /// have these last versions.
        mutating func committed(position: Int64, touched: [String: UInt64]) {
            guard let head = self.head else { return }
            self.head = (position, head.generation)
            for (name, last) in touched { self.streams[name] = (last, false) }
            self.trim()
        }

        mutating func forget() {
            self.head = nil
            self.streams = [:]
        }

        private mutating func trim() {
            if self.streams.count > Self.capacity { self.forget() }
        }
    }

    /// The writer's cache, in a box the `@Sendable` commit closure can carry: only the writer task
    /// uses it, so its lock is never contended.
    final class WriterCacheBox: Sendable {
        private let cache = Mutex(WriterCache())

        func withLock<Value: Sendable>(_ body: (inout WriterCache) -> Value) -> Value {
            self.cache.withLock { body(&$0) }
        }
    }

    /// The writer: takes batches of queued appends and commits each in one transaction, until the
    /// store closes and the queue is empty (the appends queued before ``close()`` were failed by
    /// it; a batch already taken is finished).
    func runWriter() async {
        let cache = WriterCacheBox()
        while let batch = await self.nextBatch() {
            let outcome = await self.commit(batch, cache: cache)
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
    private func commit(_ batch: [PendingAppend], cache: WriterCacheBox) async -> BatchOutcome {
        do {
            return try await self.withConnection { connection in
                do {
                    return try await self.commit(batch, on: connection, cache: cache)
                } catch {
                    cache.withLock { $0.forget() }
                    throw error
                }
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

    /// Commits `batch` on `connection`: in one round trip when the writer's cache knows the head
    /// and every stream of the batch, else in two without holding the head between them; then, if
    /// another writer moved the head since (since the writer's own last commit, for the cache), in
    /// a transaction that locks it.
    private func commit(
        _ batch: [PendingAppend],
        on connection: PostgresConnection,
        cache: WriterCacheBox
    ) async throws -> BatchOutcome {
        let known = cache.withLock { $0.lookUp(Set(batch.map(\.stream.name))) }
        if let outcome = try await self.commitUnlocked(batch, on: connection, known: known, cache: cache) {
            return outcome
        }
        for waiter in self.state.withLock({ $0.batchRetriesLocked() }) { waiter.resume() }
        cache.withLock { $0.forget() }
        return try await self.commitLocked(batch, on: connection)
    }

    /// The optimistic path: reads the head (its position and generation) and the batch's streams
    /// in one statement (or takes them from the writer's cache, `known`), checks the appends
    /// against them, then writes everything in one statement, in its own implicit transaction,
    /// that moves the head only if its position and generation are still those read: every
    /// append and every deletion moves one or the other under the head's row lock, so an
    /// unchanged head means the checks still hold. The head's row lock is held only while that
    /// statement runs and commits, never across a round trip.
    /// - Returns: The outcome; `nil` when the head had moved and nothing was written.
    private func commitUnlocked(
        _ batch: [PendingAppend],
        on connection: PostgresConnection,
        known: (head: (position: Int64, generation: Int64), streams: [String: (last: UInt64?, isDeleted: Bool)])?,
        cache: WriterCacheBox
    ) async throws
        -> BatchOutcome?
    {
        let schema = self.schema
        let logger = self.logger
        let head: (position: Int64, generation: Int64)
        var streams: [String: (last: UInt64?, isDeleted: Bool)] = [:]
        if let known {
            head = known.head
            streams = known.streams
            self.state.withLock { $0.batchPlannedFromCache() }
        } else {
            let batchNames = Set(batch.map(\.stream.name))
            var names = PostgresBindings()
            names.append(Array(batchNames))
            let rows = try await connection.checkedQuery(
                PostgresQuery(unsafeSQL: schema.readBatchState, binds: names),
                logger: logger
            )
            var read: (position: Int64, generation: Int64)?
            for try await (position, generation, name, last, isDeleted) in rows.decode(
                (Int64, Int64, String?, Int64?, Bool?).self
            ) {
                read = (position, generation)
                if let name { streams[name] = (last.map { UInt64($0) }, isDeleted ?? false) }
            }
            // A row stream ends early, without an error, when the task is cancelled (the
            // connection closed): the head row always exists.
            guard let read, !Task.isCancelled else { throw ConnectionClosedError() }
            head = read
            cache.withLock { [streams] in $0.read(head: read, names: batchNames, streams: streams) }
        }
        var plan = try self.plan(batch, head: UInt64(head.position), streams: streams)
        guard !plan.columns.isEmpty else {
            // Nothing to write, so no conditional write confirms what the cache said (a stream
            // deleted since, say): decide again on a fresh read.
            if known != nil { return try await self.commitUnlocked(batch, on: connection, known: nil, cache: cache) }
            return plan.outcome
        }
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
        guard written else {
            cache.withLock { $0.forget() }
            return nil
        }
        cache.withLock { [touched = plan.touched, next = plan.next] in
            $0.committed(position: Int64(next), touched: touched)
        }
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
