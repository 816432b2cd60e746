/// Every scenario, in the order they run and are reported, with the goals the root README sets
/// and the ratios recorded for the regression gate.
///
/// A recorded ratio is the larger of the README's (2-vCPU machine, quiet, 7 rounds; only where
/// the baseline is unchanged since) and the median measured on 2026-12-06 on a 2-vCPU machine
/// shared with two other builders (load average 3 to 4.5): 12 quick runs and 2 full runs. Taking
/// the larger keeps the gate passing on a quiet machine and a busy one, whose ratios differ by up
/// to 2.5×, while a 10× regression still exceeds 3 × the reference on either. `breaker.open.lazy`,
/// whose ratio rises from about 10 to about 48 at load 7, records the geometric mean of the two
/// (22), which puts both inside the bound and a 10× regression of either outside it.
///
/// Three metrics record no ratio and are not gated, because their ratio moves more than 10× with
/// the machine's load, so no bound both passes a busy machine and catches a 10× regression:
/// `channel.request.concurrent16.oneInstance` (0.8 to 24 in one round: the baseline's 16 callers
/// on one actor either contend or run back to back) and `bus.publish.1` and `bus.publish.16`
/// against the ring buffer (5 to 200: under load the floor drains full batches while the bus wakes
/// per event). The same "ours" is gated through `channel.request.concurrent16.spread` and
/// `bus.publish.*.vs-asyncstream`.
///
/// `channel.request.sequential` and `channel.request.concurrent16.spread` are recorded since the
/// request path resolves its route once per client and request type, chooses an instance without
/// a lock and starts no span when the telemetry records none (2026-12-07): on a 2-vCPU machine
/// shared with other builders (load average 6 to 7.5), `sequential` read 3.6 to 4.5 in full runs
/// (5 rounds; median 4.2) and a median of 4.1 over 10 quick runs (2.1 to 9.0), recorded as 4.5
/// (it was 11.6, then 5.9 to 6.7 in the same hour with the previous code); `spread` read 3.4 to
/// 4.8 in full runs and a median of 3.4 over the same quick runs (2.8 to 8.9), recorded as 4.0
/// (it was 5.0, and 4.9 to 7.6 in the same hour with the previous code).
///
/// `store.append.group.16` has had a new baseline since (one SQLite writer committing every row
/// queued during its last commit in one transaction). Its goal, 0.67 (Keel at least 1.5 times the
/// single-writer SQLite's throughput), is the storage issue's, not the README's. Its recorded
/// ratio, 0.73, is the median of 18 full runs on 2026-12-06 (0.67 to 0.79, load average 0.4 to
/// 1.4); a one-round quick run reads lower (0.36 to 0.49 at load 0.6, 0.13 to 0.69 at load 2.2),
/// and so do full runs under load (0.46 to 0.55 at load 2.2), so the largest median is recorded.
/// Since the file store's zero fill (same day) full runs read 0.47 to 0.48 at load 0.6 to 1.4 and
/// quick runs 0.30 to 0.35; recorded as 0.5.
///
/// `projection.rebuild.1m` has rebuilt over a `FileEventStore` into a `FileStateStore` since
/// 2026-12-06. Its goal, 1.5, is the state-store issue's. It read 3.7 in a full run that day at
/// load 3.9 to 4.9 (7 rounds), before the runner stopped copying its page overlay once per event;
/// after that change, 2.33 in a full run (5 rounds) at load 1.2 to 1.6, recorded as 2.4. Quick
/// runs under load read higher (2.77 to 4.87 at load 4.1 before the change, once 9.94 at load 6).
/// Since the pipelined runner, values on disk and the prefix-delete reset (same day): 1.28 in a
/// full run (5 rounds) at load 0.6 to 1.2, quick runs 1.42 to 1.56; recorded as 1.5.
/// `store.append.durable.1` reads 0.76 to 0.79 since the zero fill (its baseline's file grows,
/// ours is overwritten); recorded as 0.8.
/// `bulkhead.uncontended` has measured the bulkhead's lock-free path since 2026-12-07 (two
/// compare-and-exchanges, a relaxed add and a relaxed load, against the baseline's two `Mutex`
/// sections): 24.1 to 24.6 ns against 26.7 to 27.6, 0.87 to 0.92, in four full runs (5 rounds,
/// load 6.3 to 7.2, the benchmark under `nice -n -15`), where the locked path it replaced read
/// 1.72 to 1.97 in runs interleaved with them; recorded as 1.0 (it was 1.65). `bulkhead.contended`
/// still goes through the `Mutex` state machine (its waiters are queued): 1.28 to 1.39 in the same
/// runs against 1.28 to 1.38 before; it keeps 1.3.
/// The `projection.checkpoint.growth` metrics are sizes, the same on every run of a given length:
/// their goals (the state store's file after compaction within 2 times the live read models; an
/// event log that projections do not grow) are the same issue's, and their recorded ratios those
/// of the full and quick runs (the larger where they differ: 1.04 full against 1.02 quick for the
/// file before its final compaction).
///
/// `breaker.closed` and `breaker.closed.run` are recorded since a closed breaker counts a success
/// with one compare-and-swap outside its lock (2026-12-07): 1.30 to 1.38 and 2.22 to 2.24 in nine
/// full runs (7 rounds) at load 0.8 to 1.2, recorded as 1.45 and 2.5 (they were 1.8 and 3.45; the
/// locked path read 2.03 and 2.99 that morning). `channel.request.sequential`'s goal is the kernel
/// issue's, 3 (it was 1.3); it is not met.
///
/// `pipeline.5`, `timeout.call` and `timeout.call.inline` changed with the timeout's shared timer
/// (2026-12-07). Their ratios read, at load 3.6 to 8.5 on the shared 2-vCPU machine: `pipeline.5`
/// 42 to 86 in nine full runs and 68 to 132 in three quick runs, recorded as 120 (it read 200 to
/// 250 before); `timeout.call` 19 to 114, recorded as 80; `timeout.call.inline` 1.2 to 2.5,
/// recorded as 2.5. `pipeline.5`'s goal is not a ratio but an overhead (ours minus the
/// baseline) of at most 3 µs per call, the resilience issue's: ``Metric/overheadGoal``, reported
/// in the table and the JSON, not gated.
///
/// `pg.*` and `grpc.*` (2026-12-07) measure the integrations package and record no ratio yet; their
/// goals are the cross-process issue's: `pg.append.1` and `pg.append.16` at most 1.25 (at least
/// 0.8× the raw inserts' throughput; they read 1.00 to 1.07 and 1.14 to 1.52 at load 0.7 to 1.9,
/// and 0.58 to 0.75 and 0.84 to 1.10 on 2026-12-08 once a batch whose streams the writer knows
/// is one round trip),
/// `grpc.request` at most 1.3 (1.15 to 1.19). The `pg.*` scenarios run only when
/// `KEEL_POSTGRES_HOST` names a server.
///
/// `saga.inmemory.4` and `saga.durable.16` (2026-12-07) measure KeelSagas. `saga.inmemory.4`'s goal,
/// 1.5, is the sagas issue's; it is not met. Journaled in an `InMemoryEventStore` it read 24.5 to
/// 28.7 in full runs with `JSONEncoder` writing the entries, 13.4 to 15.0 with their hand-written
/// JSON; journaled in an `InMemorySagaJournal` (entries kept as values), 3.55 to 4.24 in four full
/// runs at load 1.0 and 4.4 to 5.4 in three quick runs, and 3.66 to 3.82 in four full runs at load
/// 1.0 once its entries shrank to 128 bytes: recorded as 5, so that the gate passes and
/// a return to the event-store journal fails it (see the README's "Sagas"). `saga.durable.16` is reported only (the
/// issue sets no goal) and records no ratio: 1.25 to 1.68 in full runs and 1.30 to 1.76 in quick
/// runs at load 1.2 to 1.7, but 1.6 to 14.9 in quick runs with two spinners, as its side does more
/// CPU work between the same `fsync`s.
enum Catalog {
    /// Makes fresh instances of every scenario.
    /// - Returns: The scenarios.
    static func makeScenarios() -> [any Scenario] {
        self.kernelScenarios() + self.postgresScenarios()
    }

    /// The PostgreSQL scenarios, when a server is named (`KEEL_POSTGRES_*`, as
    /// `Integrations/Scripts/postgres-server.sh start` prints them); none otherwise.
    private static func postgresScenarios() -> [any Scenario] {
        guard PostgresBench.isConfigured else { return [] }
        return [
            PostgresAppendScenario(name: "pg.append.1", eventsPerAppend: 1, baseline: .rawInserts, goal: 1.25),
            PostgresAppendScenario(name: "pg.append.16", eventsPerAppend: 16, baseline: .rawInserts, goal: 1.25),
            PostgresAppendScenario(name: "pg.append.1.vs-file", eventsPerAppend: 1, baseline: .fileStore),
            PostgresAppendScenario(name: "pg.append.16.vs-file", eventsPerAppend: 16, baseline: .fileStore),
        ]
    }

    /// Every scenario that needs no server.
    private static func kernelScenarios() -> [any Scenario] {
        [
            RequestScenario(name: "channel.request.sequential", callers: 1, instances: 1, goal: 3.0, recorded: 4.5),
            RequestScenario(name: "channel.request.concurrent16.oneInstance", callers: 16, instances: 1, recorded: nil),
            RequestScenario(name: "channel.request.concurrent16.spread", callers: 16, instances: 16, recorded: 4.0),
            PublishScenario(name: "bus.publish.1", subscribers: 1, baseline: .ringBuffer, recorded: nil),
            PublishScenario(
                name: "bus.publish.1.vs-asyncstream",
                subscribers: 1,
                baseline: .asyncStream,
                goal: 0.25,
                recorded: 1.2
            ),
            PublishScenario(name: "bus.publish.16", subscribers: 16, baseline: .ringBuffer, recorded: nil),
            PublishScenario(
                name: "bus.publish.16.vs-asyncstream",
                subscribers: 16,
                baseline: .asyncStream,
                recorded: 0.6
            ),
            LatencyScenario(prefix: "bus.latency", recordedP50: 3.1, recordedP99: 3.4),
            BreakerScenario(name: "breaker.closed", mode: .closed, api: .permit, goal: 1.3, recorded: 1.45),
            BreakerScenario(name: "breaker.closed.run", mode: .closed, api: .run, recorded: 2.5),
            BreakerScenario(name: "breaker.open", mode: .open, api: .permit, recorded: 1.9),
            BreakerScenario(name: "breaker.open.run", mode: .open, api: .run, recorded: 1.35),
            BreakerScenario(name: "breaker.open.lazy", mode: .openLazy, api: .permit, recorded: 22),
            BulkheadScenario(name: "bulkhead.uncontended", tasks: 1, limit: 8, goal: 1.2, recorded: 1.0),
            BulkheadScenario(name: "bulkhead.contended", tasks: 64, limit: 8, goal: 1.3, recorded: 1.3),
            TimeoutScenario(name: "timeout.call", call: .actor, recorded: 80),
            TimeoutScenario(name: "timeout.call.inline", call: .inline, recorded: 2.5),
            PipelineScenario(name: "pipeline.5", overheadGoal: 3_000, recorded: 120),
            StoreAppendScenario(recorded: 0.8),
            StoreGroupCommitScenario(goal: 0.67, recorded: 0.5),
            StoreReplayScenario(recorded: 1.15),
            ProjectionRebuildScenario(goal: 1.5, recorded: 1.5),
            ProjectionCheckpointGrowthScenario(
                goal: 2.0,
                recorded: 1.0,
                recordedUncompacted: 1.04,
                eventLogGoal: 1.0,
                eventLogRecorded: 1.0
            ),
            SagaInMemoryScenario(goal: 1.5, recorded: 5),
            SagaDurableScenario(recorded: nil),
            GRPCRequestScenario(name: "grpc.request", baseline: .plainGRPC, goal: 1.3),
            GRPCRequestScenario(name: "grpc.request.vs-in-process", baseline: .inProcess),
        ]
    }
}
