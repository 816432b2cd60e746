import KeelCore
import KeelEventSourcing

/// What every run of one runner shares: the journal's store, time, randomness, telemetry and the
/// executor preference of the tasks the runner starts.
struct SagaRuntime: Sendable {
    let store: any EventStore
    let clock: any Clock<Duration>
    let wallClock: WallClock
    let random: RandomSource
    let telemetry: any Telemetry
    let executor: (any TaskExecutor)?
    let configuration: SagaRunner.Configuration

    /// The journal stream of the saga `saga` with id `id`.
    static func stream(saga: String, id: String) -> StreamID {
        StreamID("saga-\(saga):\(id)")
    }
}
