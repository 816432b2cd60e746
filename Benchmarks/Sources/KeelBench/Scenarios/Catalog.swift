/// Every scenario, in the order they run and are reported.
enum Catalog {
    /// Makes fresh instances of every scenario.
    /// - Returns: The scenarios.
    static func makeScenarios() -> [any Scenario] {
        [
            RequestScenario(name: "channel.request.sequential", callers: 1),
            RequestScenario(name: "channel.request.concurrent16", callers: 16),
            PublishScenario(name: "bus.publish.1", subscribers: 1),
            PublishScenario(name: "bus.publish.16", subscribers: 16),
            LatencyScenario(prefix: "bus.latency"),
            BreakerScenario(name: "breaker.closed", mode: .closed, api: .permit),
            BreakerScenario(name: "breaker.closed.run", mode: .closed, api: .run),
            BreakerScenario(name: "breaker.open", mode: .open, api: .permit),
            BreakerScenario(name: "breaker.open.run", mode: .open, api: .run),
            BreakerScenario(name: "breaker.open.lazy", mode: .openLazy, api: .permit),
            BulkheadScenario(name: "bulkhead.uncontended", tasks: 1, limit: 8),
            BulkheadScenario(name: "bulkhead.contended", tasks: 64, limit: 8),
            PipelineScenario(name: "pipeline.5"),
            StoreAppendScenario(),
            StoreGroupCommitScenario(),
            StoreReplayScenario(),
            ProjectionRebuildScenario(),
        ]
    }
}
