import KeelCore

/// The counters of one fallback, made once at construction; `nil` with a telemetry that records
/// no metrics (``NoOpTelemetry``), so that the hot path pays one branch.
///
/// Metrics, each with the dimension `fallback` = name:
/// - `keel.fallback.handled` (counter): failures answered by the fallback closure;
/// - `keel.fallback.failed` (counter): fallback closures that threw.
final class FallbackInstruments: Sendable {
    let handled: any TelemetryCounter
    let failed: any TelemetryCounter

    private init(handled: any TelemetryCounter, failed: any TelemetryCounter) {
        self.handled = handled
        self.failed = failed
    }

    static func make(_ telemetry: any Telemetry, name: String) -> FallbackInstruments? {
        if !telemetry.recordsMetrics { return nil }
        let dimensions = [("fallback", name)]
        return FallbackInstruments(
            handled: telemetry.makeCounter(label: "keel.fallback.handled", dimensions: dimensions),
            failed: telemetry.makeCounter(label: "keel.fallback.failed", dimensions: dimensions)
        )
    }
}
