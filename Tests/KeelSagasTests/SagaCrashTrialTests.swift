import Foundation
import KeelSagas
import KeelTestSupport
import Testing

/// Kill -9 trials of durable sagas: a child process runs order sagas on a `FileEventStore`, the
/// test kills it with SIGKILL at random moments and runs it again, which recovers, and after a
/// last clean recovery it checks that every saga reached a final state and that the services'
/// effects agree with it: no effect applied twice, every effect of a compensated saga undone,
/// every effect of a completed saga there once, and nothing but a non-idempotent, compensatable
/// step found in doubt needing an operator (see ``SagaCrashTrials``).
///
/// `KEEL_CRASH_TRIALS` sets the number of trials (default 200), `KEEL_CRASH_SEED` the run's seed
/// (printed at the start): it decides every trial's kill points and sagas.
@Suite("Saga crash trials", .timeLimit(.minutes(10)))
struct SagaCrashTrialTests {
    @Test("sagas killed with SIGKILL at random moments reach a final state with every effect once or undone")
    func crashTrials() async throws {
        await CrashTrialLane.enter()
        defer { CrashTrialLane.leave() }
        let environment = ProcessInfo.processInfo.environment
        let trials = environment["KEEL_CRASH_TRIALS"].flatMap(Int.init) ?? 200
        let seed = environment["KEEL_CRASH_SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 0...UInt64.max)
        TestLog.line("saga crash trials: seed \(seed) (KEEL_CRASH_SEED to replay)")
        let report = try await SagaCrashTrials.run(trials: trials, seed: seed)
        TestLog.line("saga crash trials: \(report.summary)")
        for problem in report.problems {
            Issue.record("seed \(seed), \(problem)")
        }
        #expect(report.trials == trials)
        // The trials must exercise what they check: sagas of each final phase.
        #expect(report.phases[.completed, default: 0] > 0)
        #expect(report.phases[.compensated, default: 0] > 0)
    }
}
