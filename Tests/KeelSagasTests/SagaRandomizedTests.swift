import KeelSagas
import KeelTestSupport
import Testing

/// Seeded randomized runs of many sagas on a `TestClock`: random step failures (transient and
/// permanent, before and after the effect), slow steps and timeouts, cancellations at a point the
/// plan chooses, parallel groups whose branches compensate, nested sagas, durable timers, pivots
/// followed by retriable steps. Every saga's outcome is checked against its plan, and the ledger of
/// money and stock is recounted.
///
/// `KEEL_SAGA_SEED` overrides the seed (decimal, or hex with `0x`), `KEEL_SAGA_COUNT` the number of
/// sagas, `KEEL_SAGA_ONLY` (comma-separated indexes) runs only those sagas of the seed's plans.
/// Every failure names the seed, the saga and its plan.
@Suite("Randomized sagas", .timeLimit(.minutes(2)))
struct SagaRandomizedTests {
    static let count = TestEnvironment.scaled(10_000)

    /// Records the report's failures (the first 20, and how many more), and what the run covered.
    static func record(_ report: RandomSagaRun.Report) {
        TestLog.line(report.summary)
        for failure in report.failures.prefix(20) {
            Issue.record(Comment(rawValue: failure))
        }
        if report.failures.count > 20 {
            Issue.record("… and \(report.failures.count - 20) more failures (rerun: \(report.configuration.rerun))")
        }
    }

    @Test("every saga ends completed, compensated or needing intervention as its plan says; the books balance")
    func randomizedRun() async throws {
        let configuration = RandomSagaRun.Configuration.fromEnvironment(count: Self.count)
        let report = await RandomSagaRun(configuration).run()
        Self.record(report)
        #expect(report.signatures.count == configuration.indexes.count)
        if configuration.only == nil, configuration.count >= 1_000 {
            // The plans exercise every feature, and every outcome occurs.
            for phase in [SagaStatus.Phase.completed, .compensated, .needsIntervention] {
                #expect(report.phases[phase, default: 0] > 0, "no saga ended \(phase.rawValue)")
            }
            let features = [
                "retried steps", "slow steps", "timeouts", "compensation retries", "cancelled",
                "cancelled past the pivot", "parallel groups", "nested sagas", "nested failures caught",
                "pivots", "interventions past the pivot", "failed compensations", "timers",
            ]
            for feature in features {
                #expect(report.features[feature, default: 0] > 0, "no saga had \(feature)")
            }
            #expect(report.virtualTime > .zero)
        }
    }

    @Test("a rerun with the same seed observes the same outcome for every saga")
    func rerunReproduces() async throws {
        var configuration = RandomSagaRun.Configuration.fromEnvironment(count: 500)
        configuration.count = min(configuration.count, 500)
        configuration.only = nil
        let first = await RandomSagaRun(configuration).run()
        var smaller = configuration
        smaller.concurrency = 7
        let second = await RandomSagaRun(smaller).run()
        #expect(first.failures.isEmpty && second.failures.isEmpty)
        #expect(first.signatures.count == configuration.count)
        for index in 0..<configuration.count where first.signatures[index] != second.signatures[index] {
            Issue.record(
                "seed \(configuration.seed) saga \(index): \(first.signatures[index] ?? "-") then \(second.signatures[index] ?? "-")"
            )
        }
    }

    @Test("journaled in memory, the same seed's sagas end as they do journaled in an event store, one by one")
    func inMemoryJournalMatchesTheStore() async throws {
        var configuration = RandomSagaRun.Configuration.fromEnvironment(count: 2_000)
        configuration.count = min(configuration.count, TestEnvironment.scaled(2_000))
        configuration.only = nil
        let store = await RandomSagaRun(configuration).run()
        configuration.inMemoryJournal = true
        let memory = await RandomSagaRun(configuration).run()
        Self.record(memory)
        #expect(store.failures.isEmpty)
        #expect(memory.signatures.count == configuration.count)
        for index in 0..<configuration.count where store.signatures[index] != memory.signatures[index] {
            Issue.record(
                "seed \(configuration.seed) saga \(index): \(store.signatures[index] ?? "-") in the store, \(memory.signatures[index] ?? "-") in memory"
            )
        }
        // Every outcome occurred in memory too.
        for phase in [SagaStatus.Phase.completed, .compensated, .needsIntervention] {
            #expect(memory.phases[phase, default: 0] > 0, "no saga ended \(phase.rawValue) in memory")
        }
    }

    @Test("a plan depends only on the seed and the saga's index")
    func plansAreSeeded() {
        let seed = RandomSagaRun.Configuration.defaultSeed
        let plans = (0..<200).map { SagaPlan.make(seed: seed, index: $0).description }
        #expect(plans == (0..<200).map { SagaPlan.make(seed: seed, index: $0).description })
        #expect(plans != (0..<200).map { SagaPlan.make(seed: seed + 1, index: $0).description })
        #expect(Set(plans).count > 190)
    }
}
