import Foundation
import KeelCore
import KeelEventSourcing
import KeelResilience
import KeelSagas
import KeelTesting
import Synchronization

/// A seeded randomized run of many sagas on one runner and one ``TestClock``: generates the plans,
/// runs them with bounded concurrency on virtual time, then checks every outcome against its
/// plan's ``SagaExpectation`` and recounts the ledger.
///
/// Everything a saga's outcome depends on is in its plan, and a plan depends only on the seed and
/// the saga's index, so a rerun with the same seed checks the same outcomes, whatever the
/// scheduling; `KEEL_SAGA_ONLY=<index>` reruns one saga alone.
struct RandomSagaRun: Sendable {
    struct Configuration: Sendable {
        var seed: UInt64
        var count: Int
        var concurrency = 64
        /// Run only these sagas (their plans are the same as in the full run).
        var only: [Int]?
        /// Journal in an `InMemorySagaJournal` instead of an `InMemoryEventStore`.
        var inMemoryJournal = false

        static let defaultSeed: UInt64 = 0x5A6A_2024

        /// From `KEEL_SAGA_SEED` (decimal or `0x` hex), `KEEL_SAGA_COUNT` and
        /// `KEEL_SAGA_ONLY` (comma-separated indexes), with `count` sagas by default.
        static func fromEnvironment(count: Int) -> Configuration {
            let environment = ProcessInfo.processInfo.environment
            let seed = environment["KEEL_SAGA_SEED"].flatMap(Self.parseSeed) ?? Self.defaultSeed
            let count = environment["KEEL_SAGA_COUNT"].flatMap { Int($0) } ?? count
            let only = environment["KEEL_SAGA_ONLY"].map { $0.split(separator: ",").compactMap { Int($0) } }
            var configuration = Configuration(seed: seed, count: count, only: only)
            if let concurrency = environment["KEEL_SAGA_CONCURRENCY"].flatMap({ Int($0) }) {
                configuration.concurrency = concurrency
            }
            return configuration
        }

        static func parseSeed(_ text: String) -> UInt64? {
            if text.hasPrefix("0x") { return UInt64(text.dropFirst(2), radix: 16) }
            return UInt64(text)
        }

        var indexes: [Int] { self.only ?? Array(0..<self.count) }

        /// How to rerun this configuration.
        var rerun: String {
            "KEEL_SAGA_SEED=\(self.seed) KEEL_SAGA_COUNT=\(self.count) swift test --filter SagaRandomized"
        }
    }

    /// What the run found.
    struct Report: Sendable {
        var configuration: Configuration
        /// One line per problem, each naming the seed, the saga and its plan.
        var failures: [String] = []
        /// Per saga: what was observed, in a form that a rerun with the seed must repeat.
        var signatures: [Int: String] = [:]
        var phases: [SagaStatus.Phase: Int] = [:]
        /// How often each feature of the plans occurred and took effect.
        var features: [String: Int] = [:]
        var virtualTime: Duration = .zero
        var elapsed: Duration = .zero

        var summary: String {
            let phases = [SagaStatus.Phase.completed, .compensated, .needsIntervention]
                .map { "\($0.rawValue) \(self.phases[$0, default: 0])" }.joined(separator: ", ")
            let features = self.features.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }
                .joined(separator: ", ")
            return
                "randomized sagas: seed \(self.configuration.seed), \(self.signatures.count) sagas in \(self.elapsed) "
                + "(virtual \(self.virtualTime)): \(phases); \(features)"
        }
    }

    let configuration: Configuration

    init(_ configuration: Configuration) {
        self.configuration = configuration
    }

    func run() async -> Report {
        let start = ContinuousClock.now
        let configuration = self.configuration
        let plans = configuration.indexes.map { SagaPlan.make(seed: configuration.seed, index: $0) }
        let clock = TestClock()
        let runnerConfiguration = SagaRunner.Configuration(
            compensationAttempts: SagaPlan.compensationAttempts,
            compensationBackoff: .immediate,
            retriableAttempts: SagaPlan.retriableAttempts,
            retriableBackoff: .immediate
        )
        // Durable timers are due on the wall clock: read it from the test clock.
        let wallClock = WallClock(nanosecondsSinceEpoch: { Self.nanoseconds(clock.now.offset) })
        let runner =
            configuration.inMemoryJournal
            ? SagaRunner(
                journal: InMemorySagaJournal(),
                configuration: runnerConfiguration,
                clock: clock,
                wallClock: wallClock,
                random: RandomSource(seed: configuration.seed)
            )
            : SagaRunner(
                store: InMemoryEventStore(),
                configuration: runnerConfiguration,
                clock: clock,
                wallClock: wallClock,
                random: RandomSource(seed: configuration.seed)
            )
        let ledger = SagaLedger()
        let time = VirtualTime(clock: clock, concurrency: configuration.concurrency, total: plans.count)
        let retries = [2, 3].reduce(into: [Int: Retry]()) { retries, attempts in
            retries[attempts] = Retry(
                name: "random-\(attempts)",
                configuration: .init(maxAttempts: attempts, backoff: .immediate),
                clock: clock,
                random: RandomSource(seed: configuration.seed)
            )
        }
        let outcomes = Outcomes()
        var report = Report(configuration: configuration)

        await withDiscardingTaskGroup { group in
            var next = 0
            while true {
                await time.waitForWork()
                var launched = false
                while next < plans.count, time.hasFreeSlot {
                    let plan = plans[next]
                    next += 1
                    launched = true
                    time.sagaLaunched()
                    let performer = PlanPerformer(
                        index: plan.index,
                        ledger: ledger,
                        time: time,
                        cancellation: CancelRequest(),
                        retries: retries
                    )
                    group.addTask {
                        let outcome = await Self.runOne(RandomSaga(plan: plan, performer: performer), on: runner)
                        outcomes.results.withLock { $0[plan.index] = outcome }
                        time.sagaFinished()
                    }
                }
                if launched { continue }
                switch await time.advance() {
                case .advanced:
                    continue
                case .finished:
                    return
                case .stuck(let unfinished):
                    let done = outcomes.results.withLock { Set($0.keys) }
                    let stuck = plans.filter { !done.contains($0.index) }.prefix(5)
                    report.failures.append(
                        "seed \(configuration.seed): \(unfinished) sagas are stuck, none on the clock; "
                            + "first: \(stuck.map(\.description).joined(separator: "; ")) (rerun: \(configuration.rerun))"
                    )
                    group.cancelAll()
                    return
                }
            }
        }

        let results = outcomes.results.withLock { $0 }
        for plan in plans {
            guard let result = results[plan.index] else { continue }
            self.check(plan, result, ledger: ledger, into: &report)
        }
        for problem in ledger.recount() {
            report.failures.append("seed \(configuration.seed): \(problem) (rerun: \(configuration.rerun))")
        }
        self.checkTotals(plans, results, ledger: ledger, into: &report)
        await self.checkJournal(runner, results, into: &report)
        report.virtualTime = clock.now.offset
        report.elapsed = ContinuousClock.now - start
        return report
    }

    /// The sagas' outcomes, by index, as their tasks finish.
    final class Outcomes: Sendable {
        let results = Lock([Int: Result<SagaOutcome<Int>, SagaError>]())
    }

    /// Runs one saga in a child task, and cancels that task when the saga requests it.
    static func runOne(_ saga: RandomSaga, on runner: SagaRunner) async -> Result<SagaOutcome<Int>, SagaError> {
        enum Event: Sendable {
            case finished(Result<SagaOutcome<Int>, SagaError>)
            case cancellationRequested
        }
        return await withTaskGroup(of: Event.self) { group in
            group.addTask {
                do throws(SagaError) {
                    return .finished(.success(try await runner.run(saga, id: saga.plan.id, input: saga.plan.index)))
                } catch {
                    return .finished(.failure(error))
                }
            }
            group.addTask {
                await saga.performer.cancellation.wait()
                return .cancellationRequested
            }
            var outcome: Result<SagaOutcome<Int>, SagaError>?
            while let event = await group.next() {
                // Either way the other child is done with: the saga is cancelled, or the waiter.
                group.cancelAll()
                if case .finished(let result) = event { outcome = result }
            }
            return outcome!
        }
    }

    static func nanoseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }

    // MARK: Checks

    private func check(
        _ plan: SagaPlan,
        _ result: Result<SagaOutcome<Int>, SagaError>,
        ledger: SagaLedger,
        into report: inout Report
    ) {
        let expected = SagaExpectation(plan)
        var problems: [String] = []
        let outcome: SagaOutcome<Int>
        switch result {
        case .success(let value):
            outcome = value
        case .failure(let error):
            report.failures.append(self.describe(plan, expected, ["the run threw \(error)"]))
            return
        }
        report.phases[outcome.phase, default: 0] += 1
        if outcome.phase != expected.phase {
            problems.append("ended \(outcome.phase.rawValue), expected \(expected.phase.rawValue)")
        }
        var signature = outcome.phase.rawValue
        switch outcome {
        case .completed(let output):
            if output != plan.index { problems.append("completed with output \(output)") }
        case .compensated(let cause):
            if let want = expected.cause, !want.matches(cause) {
                problems.append("compensated for \(cause), expected \(want)")
            }
        case .needsIntervention(let intervention):
            if let want = expected.cause, !want.matches(intervention.cause) {
                problems.append("needs intervention for \(intervention.cause), expected \(want)")
            }
            let failed = Set(intervention.failedCompensations.compactMap(\.step))
            let want = Set(expected.failedCompensations.map(\.name))
            if failed != want || intervention.failedCompensations.count != want.count {
                problems.append(
                    "failed compensations \(intervention.failedCompensations.map(\.description)), expected \(want.sorted())"
                )
            }
            signature += " failed \(failed.sorted())"
        }

        let completed = Set(expected.completed.map(\.name))
        let compensated = Set(expected.compensated.map(\.name))
        ledger.state.withLock { state in
            for step in plan.allSteps {
                let key = plan.key(step)
                let applications = state.applications[key, default: 0]
                let wantApplied = completed.contains(step.name) ? 1 : 0
                if applications != wantApplied {
                    problems.append("\(step.name): effect applied \(applications) times, expected \(wantApplied)")
                }
                let reversals = state.reversals[key, default: 0]
                let returns = state.undoReturns[key, default: 0]
                let wantCompensated = compensated.contains(step.name) ? 1 : 0
                if reversals != wantCompensated || returns != wantCompensated {
                    problems.append(
                        "\(step.name): compensated \(reversals) times (returned \(returns)), expected \(wantCompensated)"
                    )
                }
                let actionCalls = state.actionCalls[key, default: 0]
                if actionCalls != expected.actionCalls[step.name, default: 0] {
                    problems.append(
                        "\(step.name): action called \(actionCalls) times, expected \(expected.actionCalls[step.name, default: 0])"
                    )
                }
                let undoCalls = state.undoCalls[key, default: 0]
                if undoCalls != expected.undoCalls[step.name, default: 0] {
                    problems.append(
                        "\(step.name): compensation called \(undoCalls) times, expected \(expected.undoCalls[step.name, default: 0])"
                    )
                }
                signature += " \(step.name):\(applications)\(reversals)\(actionCalls)\(undoCalls)"
            }
            let orphans = state.orphanUndos.filter { $0.hasPrefix(plan.id + "/") }
            if !orphans.isEmpty {
                problems.append("compensated steps whose effect never applied: \(orphans)")
            }
        }
        self.count(plan, expected, outcome, into: &report)
        report.signatures[plan.index] = signature
        if !problems.isEmpty {
            report.failures.append(self.describe(plan, expected, problems))
        }
    }

    private func describe(_ plan: SagaPlan, _ expected: SagaExpectation, _ problems: [String]) -> String {
        "seed \(self.configuration.seed) saga \(plan.index): " + problems.joined(separator: "; ")
            + "\n  plan: \(plan)\n  expected: \(expected.phase.rawValue)"
            + (expected.cause.map { " (\($0))" } ?? "")
            + "\n  rerun: KEEL_SAGA_SEED=\(self.configuration.seed) KEEL_SAGA_ONLY=\(plan.index) "
            + "swift test --filter SagaRandomized"
    }

    /// The books as a whole: what the merchant holds and what is reserved is exactly what the
    /// sagas' expectations leave applied.
    private func checkTotals(
        _ plans: [SagaPlan],
        _ results: [Int: Result<SagaOutcome<Int>, SagaError>],
        ledger: SagaLedger,
        into report: inout Report
    ) {
        var money = 0
        var stock = [Int](repeating: 0, count: SagaLedger.items)
        var customers: [Int: Int] = [:]
        for plan in plans where results[plan.index] != nil {
            let expected = SagaExpectation(plan)
            money += expected.netMoney
            customers[plan.index] = expected.netMoney
            for (item, quantity) in expected.netStock { stock[item] += quantity }
        }
        let (merchant, reserved, balances) = ledger.state.withLock { ($0.merchant, $0.reserved, $0.customers) }
        if merchant != money {
            report.failures.append(
                "seed \(self.configuration.seed): the merchant holds \(merchant), the plans leave \(money) applied"
            )
        }
        if reserved != stock {
            report.failures.append(
                "seed \(self.configuration.seed): \(reserved) reserved, the plans leave \(stock) applied"
            )
        }
        for (saga, balance) in balances where SagaLedger.openingBalance - balance != customers[saga, default: 0] {
            report.failures.append(
                "seed \(self.configuration.seed) saga \(saga): the customer paid \(SagaLedger.openingBalance - balance), "
                    + "expected \(customers[saga, default: 0])"
            )
        }
    }

    /// The journal agrees: exactly the sagas that ended needing intervention are listed.
    private func checkJournal(
        _ runner: SagaRunner,
        _ results: [Int: Result<SagaOutcome<Int>, SagaError>],
        into report: inout Report
    ) async {
        let expected = Set(
            results.compactMap { index, result in
                (try? result.get())?.phase == .needsIntervention ? "s\(index)" : nil
            }
        )
        do {
            let listed = try await runner.interventions()
            if Set(listed.map(\.id)) != expected || listed.count != expected.count {
                report.failures.append(
                    "seed \(self.configuration.seed): the journal lists \(listed.count) interventions, "
                        + "the runs returned \(expected.count)"
                )
            }
        } catch {
            report.failures.append("seed \(self.configuration.seed): cannot list the interventions: \(error)")
        }
    }

    private func count(
        _ plan: SagaPlan,
        _ expected: SagaExpectation,
        _ outcome: SagaOutcome<Int>,
        into report: inout Report
    ) {
        func add(_ feature: String, _ condition: Bool = true) {
            if condition { report.features[feature, default: 0] += 1 }
        }
        let steps = plan.allSteps
        let reached = Set(expected.actionCalls.keys)
        for step in steps where reached.contains(step.name) {
            let calls = expected.actionCalls[step.name, default: 0]
            add("retried steps", calls > 1)
            if let slow = step.slow {
                add("slow steps")
                if let timeout = step.timeout, slow > timeout { add("timeouts") }
            }
        }
        add("compensation retries", expected.undoCalls.values.contains { $0 > 1 })
        add("cancelled", expected.cause?.kind == .cancellation)
        add("cancelled past the pivot", steps.contains { $0.action == .requestCancel && reached.contains($0.name) })
        add("parallel groups", plan.items.contains(where: \.isParallel))
        add("nested sagas", plan.items.contains(where: \.isNested))
        add("nested failures caught", plan.items.contains(where: \.catchesNestedFailure))
        add("pivots", plan.pivot != nil)
        let isPastPivotIntervention = expected.phase == .needsIntervention && expected.failedCompensations.isEmpty
        add("interventions past the pivot", isPastPivotIntervention)
        add("failed compensations", !expected.failedCompensations.isEmpty)
        add("timers", (plan.items + plan.afterPivot).contains { $0.hasTimer })
    }
}

extension SagaPlan.Item {
    var hasTimer: Bool {
        switch self {
        case .timer: true
        case .nested(_, let items, _): items.contains { $0.hasTimer }
        default: false
        }
    }

    var isParallel: Bool {
        if case .parallel = self { return true }
        return false
    }

    var isNested: Bool {
        if case .nested = self { return true }
        return false
    }

    var catchesNestedFailure: Bool {
        if case .nested(_, _, true) = self { return true }
        return false
    }
}
