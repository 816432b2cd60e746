import Keel

/// The event of the bus scenarios.
struct Tick: Event {
    static let topic = "bench.tick"

    var sequence: Int
}
