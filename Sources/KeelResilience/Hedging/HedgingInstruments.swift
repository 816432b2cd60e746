import KeelCore

/// The counters of one hedging strategy, made once at construction; `nil` with
/// ``NoOpInstrumentation``, so that the hot path pays one branch.
///
/// Metrics, each with the dimension `hedging` = name:
/// - `keel.hedging.attempts` (counter): attempts started, the first of each call included;
/// - `keel.hedging.hedges` (counter, dimension `reason`: `delay`, `failure`): attempts started
///   after the first, by why they were started;
/// - `keel.hedging.hedge_won` (counter): calls won by an attempt other than the first;
/// - `keel.hedging.exhausted` (counter): calls in which every attempt failed.
final class HedgingInstruments: Sendable {
    let attempts: any CounterHandler
    let hedgedAfterDelay: any CounterHandler
    let hedgedAfterFailure: any CounterHandler
    let hedgeWon: any CounterHandler
    let exhausted: any CounterHandler

    private init(
        attempts: any CounterHandler,
        hedgedAfterDelay: any CounterHandler,
        hedgedAfterFailure: any CounterHandler,
        hedgeWon: any CounterHandler,
        exhausted: any CounterHandler
    ) {
        self.attempts = attempts
        self.hedgedAfterDelay = hedgedAfterDelay
        self.hedgedAfterFailure = hedgedAfterFailure
        self.hedgeWon = hedgeWon
        self.exhausted = exhausted
    }

    static func make(_ instrumentation: any Instrumentation, name: String) -> HedgingInstruments? {
        if instrumentation is NoOpInstrumentation { return nil }
        let dimensions = [("hedging", name)]
        func counter(_ label: String, _ extra: [(String, String)] = []) -> any CounterHandler {
            instrumentation.makeCounter(label: label, dimensions: dimensions + extra)
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
