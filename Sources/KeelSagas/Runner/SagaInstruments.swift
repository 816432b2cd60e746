import KeelCore

/// The metrics of one saga type, made once per type and runner.
struct SagaInstruments: Sendable {
    let started: any TelemetryCounter
    let completed: any TelemetryCounter
    let compensated: any TelemetryCounter
    let needsIntervention: any TelemetryCounter
    let inFlight: any TelemetryGauge
    let stepDuration: any TelemetryTimer
    let stepRetries: any TelemetryCounter
    let compensationRetries: any TelemetryCounter

    init(_ telemetry: any Telemetry, saga: String) {
        let dimensions = [("saga", saga)]
        self.started = telemetry.makeCounter(label: "keel.saga.started", dimensions: dimensions)
        self.completed = telemetry.makeCounter(label: "keel.saga.completed", dimensions: dimensions)
        self.compensated = telemetry.makeCounter(label: "keel.saga.compensated", dimensions: dimensions)
        self.needsIntervention = telemetry.makeCounter(label: "keel.saga.needs_intervention", dimensions: dimensions)
        self.inFlight = telemetry.makeGauge(label: "keel.saga.in_flight", dimensions: dimensions)
        self.stepDuration = telemetry.makeTimer(label: "keel.saga.step.duration", dimensions: dimensions)
        self.stepRetries = telemetry.makeCounter(label: "keel.saga.step.retries", dimensions: dimensions)
        self.compensationRetries = telemetry.makeCounter(
            label: "keel.saga.compensation.retries",
            dimensions: dimensions
        )
    }
}
