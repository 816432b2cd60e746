import KeelCore

/// The counters of one hedging strategy, made once at construction; `nil` with a telemetry that
/// records no metrics (``NoOpTelemetry``), so that the hot path pays one branch.
///
/// Metrics, each with the dimension `hedging` = name:
/// - `keel.hedging.attempts` (counter): attempts started, the first of each call included;
/// - `keel.hedging.hedges` (counter, dimension `reason`: `delay`, `failure`): attempts started
///   after the first, by why they were started;
/// - `keel.hedging.hedge_won` (counter): calls won by an attempt other than the first;
/// - `keel.hedging.exhausted` (counter): calls in which every attempt failed.
final class HedgingInstruments: Sendable {
    let attempts: any TelemetryCounter
    let hedgedAfterDelay: any TelemetryCounter
    let hedgedAfterFailure: any TelemetryCounter
    let hedgeWon: any TelemetryCounter
    let exhausted: any TelemetryCounter

    private init(
        attempts: any TelemetryCounter,
        hedgedAfterDelay: any TelemetryCounter,
        hedgedAfterFailure: any TelemetryCounter,
        hedgeWon: any TelemetryCounter,
        exhausted: any TelemetryCounter
    ) {
        self.attempts = attempts
        self.hedgedAfterDelay = hedgedAfterDelay
        self.hedgedAfterFailure = hedgedAfterFailure
        self.hedgeWon = hedgeWon
        self.exhausted = exhausted
    }

    static func make(_ telemetry: any Telemetry, name: String) -> HedgingInstruments? {
        if !telemetry.recordsMetrics { return nil }
        let dimensions = [("hedging", name)]
        func counter(_ label: String, _ extra: [(String, String)] = []) -> any TelemetryCounter {
            telemetry.makeCounter(label: label, dimensions: dimensions + extra)
        }
        return HedgingInstruments(
            attempts: counter("keel.hedging.attempts"),
            hedgedAfterDelay: counter("keel.hedging.hedges", [("reason", "delay")]),
            hedgedAfterFailure: counter("keel.hedging.hedges", [("reason", "failure")]),
            hedgeWon: counter("keel.hedging.hedge_won"),
            exhausted: counter("keel.hedging.exhausted")
        )
    }
}
