/// Every scenario, in the order they run and are reported, with the goals the root README sets
/// and the ratios recorded on the project's machine kind (2 vCPU) for the regression gate.
enum Catalog {
    /// Makes fresh instances of every scenario.
    /// - Returns: The scenarios.
    static func makeScenarios() -> [any Scenario] {
        [
            RequestScenario(name: "channel.request.sequential", callers: 1, instances: 1, goal: 1.3, recorded: 11.6),
            RequestScenario(name: "channel.request.concurrent16.oneInstance", callers: 16, instances: 1, recorded: 1.0),
            RequestScenario(name: "channel.request.concurrent16.spread", callers: 16, instances: 16, recorded: nil),
            PublishScenario(name: "bus.publish.1", subscribers: 1, baseline: .ringBuffer, recorded: nil),
            PublishScenario(
                name: "bus.publish.1.vs-asyncstream",
                subscribers: 1,
                baseline: .asyncStream,
                goal: 0.25,
                recorded: 0.44
            ),
            PublishScenario(name: "bus.publish.16", subscribers: 16, baseline: .ringBuffer, recorded: nil),
            PublishScenario(
                name: "bus.publish.16.vs-asyncstream",
                subscribers: 16,
                baseline: .asyncStream,
                recorded: nil
            ),
            LatencyScenario(prefix: "bus.latency", recordedP50: 3.1, recordedP99: 3.4),
            BreakerScenario(name: "breaker.closed", mode: .closed, api: .permit, goal: 1.3, recorded: 1.74),
            BreakerScenario(name: "breaker.closed.run", mode: .closed, api: .run, recorded: 3.45),
            BreakerScenario(name: "breaker.open", mode: .open, api: .permit, recorded: nil),
            BreakerScenario(name: "breaker.open.run", mode: .open, api: .run, recorded: nil),
            BreakerScenario(name: "breaker.open.lazy", mode: .openLazy, api: .permit, recorded: nil),
            BulkheadScenario(name: "bulkhead.uncontended", tasks: 1, limit: 8, goal: 1.2, recorded: 1.28),
            BulkheadScenario(name: "bulkhead.contended", tasks: 64, limit: 8, goal: 1.3, recorded: nil),
            PipelineScenario(name: "pipeline.5", recorded: nil),
            StoreAppendScenario(recorded: nil),
            StoreGroupCommitScenario(recorded: nil),
            StoreReplayScenario(recorded: nil),
            ProjectionRebuildScenario(recorded: nil),
        ]
    }
}
