import KeelCore
import KeelEventSourcing
import Synchronization

/// What every run of one runner shares: the journal, time, randomness, telemetry and the
/// executor preference of the tasks the runner starts.
///
/// A class: every run holds it, and a reference is one retain where the fields' copies were a
/// dozen.
final class SagaRuntime: Sendable {
    let journal: SagaJournalStore
    let clock: any Clock<Duration>
    let wallClock: WallClock
    let random: RandomSource
    let telemetry: any Telemetry
    let executor: (any TaskExecutor)?
    let configuration: SagaRunner.Configuration
    /// Called before every attempt of a step and of a compensation; what it throws fails the
    /// attempt. For KeelTesting's saga tester, which injects failures and crashes by step name.
    let interceptor: (@Sendable (SagaInterception) throws -> Void)?
    /// Wakes the runs that wait for a signal when one is sent.
    let mailbox = SagaMailbox()

    init(
        journal: SagaJournalStore,
        clock: any Clock<Duration>,
        wallClock: WallClock,
        random: RandomSource,
        telemetry: any Telemetry,
        executor: (any TaskExecutor)?,
        configuration: SagaRunner.Configuration,
        interceptor: (@Sendable (SagaInterception) throws -> Void)?
    ) {
        self.journal = journal
        self.clock = clock
        self.wallClock = wallClock
        self.random = random
        self.telemetry = telemetry
        self.executor = executor
        self.configuration = configuration
        self.interceptor = interceptor
    }

    /// The journal stream of the saga `saga` with id `id`.
    static func stream(saga: String, id: String) -> StreamID {
        StreamID("saga-\(saga):\(id)")
    }
}

/// The runs of one runner that wait for a signal, to wake when one is sent. A woken run reads its
/// journal for the signal: the journal, not the wake-up, is what counts.
final class SagaMailbox: Sendable {
    private struct State {
        var waiters: [StreamID: [Int: @Sendable () -> Void]] = [:]
        var next = 0
    }
    private let state = Lock(State())

    /// Registers `wake` for signals to `stream`.
    /// - Returns: The key to remove it with.
    func register(_ stream: StreamID, _ wake: @escaping @Sendable () -> Void) -> Int {
        self.state.withLock { state in
            defer { state.next += 1 }
            state.waiters[stream, default: [:]][state.next] = wake
            return state.next
        }
    }

    func remove(_ stream: StreamID, _ key: Int) {
        self.state.withLock { state in
            state.waiters[stream]?[key] = nil
            if state.waiters[stream]?.isEmpty == true { state.waiters[stream] = nil }
        }
    }

    /// Wakes every run waiting for a signal to `stream`.
    func wake(_ stream: StreamID) {
        let waiters = self.state.withLock { $0.waiters[stream].map { Array($0.values) } ?? [] }
        for wake in waiters { wake() }
    }
}

/// An attempt about to run, as the runner's interceptor sees it.
package struct SagaInterception: Sendable, Hashable {
    /// What is about to run.
    package enum Kind: Sendable, Hashable {
        case step
        case compensation
    }
    package var kind: Kind
    /// The saga's type name and id.
    package var saga: String
    package var id: String
    /// The step's full name.
    package var step: String
    package var attempt: Int
}
