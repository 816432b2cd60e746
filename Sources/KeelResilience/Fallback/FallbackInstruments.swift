import KeelCore

/// The counters of one fallback, made once at construction; `nil` with ``NoOpInstrumentation``,
/// so that the hot path pays one branch.
///
/// Metrics, each with the dimension `fallback` = name:
/// - `keel.fallback.handled` (counter): failures answered by the fallback closure;
/// - `keel.fallback.failed` (counter): fallback closures that threw.
final class FallbackInstruments: Sendable {
    let handled: any CounterHandler
    let failed: any CounterHandler

    private init(handled: any CounterHandler, failed: any CounterHandler) {
        self.handled = handled
        self.failed = failed
    }

    static func make(_ instrumentation: any Instrumentation, name: String) -> FallbackInstruments? {
        if instrumentation is NoOpInstrumentation { return nil }
        let dimensions = [("fallback", name)]
        return FallbackInstruments(
            handled: instrumentation.makeCounter(label: "keel.fallback.handled", dimensions: dimensions),
            failed: instrumentation.makeCounter(label: "keel.fallback.failed", dimensions: dimensions)
        )
    }
}
