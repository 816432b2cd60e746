import Foundation
import KeelCore
import KeelEventSourcing
import KeelSagas
import KeelTestSupport

/// Kill -9 trials of durable sagas, shared by the Swift Testing and the XCTest suites.
///
/// A trial runs the tool `KeelCrashSaga` (see its header) on a fresh store directory one to three
/// times, each time killing it with SIGKILL after a random number of lines (each line is a
/// durable transition: a journal entry, an effect, an outcome), then once more to recover
/// everything, cleanly. It then reopens the store and checks every saga's journal against the
/// effects its services recorded. A trial's seed decides its kill points and every saga's plan;
/// the run's seed decides the trials' seeds.
struct SagaCrashTrials {
    /// The same type as the tool's: what one saga does wrong.
    struct Plan: Hashable {
        var amount: Int
        var quantity: Int
        var failAt: String?
    }

    /// The same type as the tool's: one effect of a service.
    struct Effect: Codable, Hashable {
        var operation: String
        var saga: String
        var key: String
        var amount: Int
        var undoes: String?
    }

    /// What the trials saw: the phases sagas ended in, and the problems found.
    struct Report {
        var trials = 0
        var kills = 0
        var sagas = 0
        var phases: [SagaStatus.Phase: Int] = [:]
        /// Sagas that ended by a step found in doubt after a kill.
        var inDoubt = 0
        var problems: [String] = []
        var summary: String {
            let phases = self.phases.sorted { $0.key.rawValue < $1.key.rawValue }
                .map { "\($0.value) \($0.key.rawValue)" }.joined(separator: ", ")
            return "\(self.trials) trials, \(self.kills) kills, \(self.sagas) sagas (\(phases)), "
                + "\(self.inDoubt) ended by a step in doubt"
        }
    }

    struct Failure: Error, CustomStringConvertible {
        var message: String
        var description: String { self.message }
    }

    static let saga = "crash.order"
    /// The steps in the order the saga runs them, and the undo of each that has one.
    static let steps = ["pay", "reserve", "notify", "hold", "confirm", "ship"]
    static let undos = ["pay": "refund", "reserve": "release", "hold": "unhold"]
    /// New sagas per child; the children of a trial each start this many.
    static let sagasPerChild = 3

    /// The plan of saga `id` in a trial seeded with `seed`: the same function as the tool's
    /// `crashPlan(seed:id:)`.
    static func plan(seed: UInt64, id: String) -> Plan {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in "\(seed)/\(id)".utf8 {
            hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3
        }
        let failures = ["pay", "reserve", "notify", "hold", "confirm"]
        let failure = Int((hash >> 16) % 10)
        return Plan(
            amount: 10 + Int(hash % 20),
            quantity: 1 + Int((hash >> 8) % 3),
            failAt: failure < failures.count ? failures[failure] : nil
        )
    }

    /// Runs `trials` trials from the run seed `seed`.
    static func run(trials: Int, seed: UInt64) async throws -> Report {
        let random = RandomSource(seed: seed)
        var report = Report()
        for trial in 0..<trials {
            let trialSeed = random.next()
            let directory = TemporaryDirectory("saga-crash-\(trial)")
            defer { directory.remove() }
            do {
                try await Self.trial(directory.path, seed: trialSeed, random: random, into: &report)
            } catch {
                report.problems.append("trial \(trial) (seed \(trialSeed)): \(error)")
            }
            report.trials += 1
        }
        return report
    }

    /// What the children said that the checks use.
    struct Said {
        /// Outcomes the children reported: each must still be the saga's phase at the end.
        var outcomes: [String: String] = [:]
        /// Sagas whose start the children reported as journaled.
        var started: Set<String> = []
        var finished = false

        mutating func read(_ line: String) throws {
            let fields = line.split(separator: " ").map(String.init)
            switch fields.first {
            case "done", "recovered":
                guard fields.count == 3 else { throw Failure(message: "unexpected line \(line)") }
                if let earlier = self.outcomes[fields[1]], earlier != fields[2] {
                    throw Failure(message: "\(fields[1]) was reported \(earlier), then \(fields[2])")
                }
                self.outcomes[fields[1]] = fields[2]
                self.started.insert(fields[1])
            case "started":
                self.started.insert(fields[1])
            case "finished":
                self.finished = true
            case "error":
                throw Failure(message: "the child failed: \(line)")
            case "ready", "append", "resumed", "idle":
                break
            default:
                throw Failure(message: "unexpected line \(line)")
            }
        }
    }

    /// One trial in `directory`: kills, the final recovery, the checks.
    static func trial(_ directory: String, seed: UInt64, random: RandomSource, into report: inout Report) async throws {
        var said = Said()
        let kills = 1 + random.next(upperBound: 3)
        let concurrency = 2 + random.next(upperBound: 2)
        // About 20 lines per saga: kill points spread over the whole life of a child, recovery
        // included, and some after it is idle.
        let lastLine = Self.sagasPerChild * 20 + 10
        for round in 0..<kills {
            let child = try CrashChild(
                tool: "KeelCrashSaga",
                arguments: [directory, String(seed), "k\(round)", String(Self.sagasPerChild), String(concurrency)]
            )
            let killAt = random.next(upperBound: lastLine)
            var lines = 0
            while lines < killAt, let line = await child.nextLine() {
                lines += 1
                try said.read(line)
                if line == "idle" { break }
            }
            let stderr = child.sigkill()
            // Lines written before the kill still count: each was written after what it reports.
            while let line = await child.nextLine() { try said.read(line) }
            if CrashChild.hasSanitizerReport(stderr) {
                throw Failure(message: "child \(round) reported\n\(stderr)")
            }
            report.kills += 1
        }
        let child = try CrashChild(tool: "KeelCrashSaga", arguments: [directory, String(seed), "final", "0", "1"])
        while !said.finished, let line = await child.nextLine() { try said.read(line) }
        let stderr = child.sigkill()
        if CrashChild.hasSanitizerReport(stderr) { throw Failure(message: "the last child reported\n\(stderr)") }
        guard said.finished else { throw Failure(message: "the last child did not finish recovery: \(stderr)") }

        let store = try FileEventStore(directory: directory)
        let events = try await store.readAll(from: 0, limit: .max)
        let runner = SagaRunner(store: store)
        var problems: [String] = []
        do {
            try await Self.check(events, runner: runner, seed: seed, said: said, into: &report, problems: &problems)
        } catch {
            problems.append("\(error)")
        }
        await store.close()
        if !problems.isEmpty { throw Failure(message: problems.joined(separator: "\n    ")) }
    }

    /// Checks every saga of the store: a final phase, the one its plan and the kills allow, and
    /// effects that match it.
    static func check(
        _ events: [RecordedEvent],
        runner: SagaRunner,
        seed: UInt64,
        said: Said,
        into report: inout Report,
        problems: inout [String]
    ) async throws {
        let journalPrefix = "saga-\(Self.saga):"
        var journals: Set<String> = []
        var effects: [String: [(position: UInt64, effect: Effect)]] = [:]
        for event in events {
            if event.stream.name.hasPrefix(journalPrefix) {
                journals.insert(String(event.stream.name.dropFirst(journalPrefix.count)))
            } else if event.stream.category == "effect" {
                let effect = try JSONDecoder().decode(Effect.self, from: Data(event.payload))
                effects[effect.key, default: []].append((event.position, effect))
            }
        }
        let ids = journals.sorted()
        // Idempotent or not, no step and no compensation applies its effect twice: the runner runs
        // an idempotent step again with the same key (its service finds the effect), and never
        // runs a step in doubt that is not idempotent.
        for (key, applied) in effects where applied.count > 1 {
            problems.append("\(key) applied \(applied.count) times")
        }
        for id in said.started.subtracting(journals).sorted() {
            problems.append("\(id) was reported started, but its journal is missing")
        }
        var interventions: Set<String> = []
        var merchant = 0
        var shelved = 0
        var expectedMerchant = 0
        var expectedShelved = 0
        for id in ids {
            report.sagas += 1
            let plan = Self.plan(seed: seed, id: id)
            guard let status = try await runner.status(Self.saga, id: id) else {
                problems.append("\(id): no status")
                continue
            }
            report.phases[status.phase, default: 0] += 1
            if let reported = said.outcomes[id], reported != status.phase.rawValue {
                problems.append("\(id) was reported \(reported), its journal says \(status.phase.rawValue)")
            }
            func applied(_ step: String) -> [(position: UInt64, effect: Effect)] {
                effects["\(id)/\(step)"] ?? []
            }
            func undone(_ step: String) -> [(position: UInt64, effect: Effect)] {
                effects["\(id)/\(step)/compensate"] ?? []
            }
            for effect in applied("pay") { merchant += effect.effect.amount }
            for effect in undone("pay") { merchant -= effect.effect.amount }
            for effect in applied("reserve") { shelved -= effect.effect.amount }
            for effect in undone("reserve") { shelved += effect.effect.amount }
            // No undo without the effect it undoes: the undo names its key, and the key's effect
            // came first.
            for step in Self.undos.keys {
                for undo in undone(step) {
                    guard let forward = applied(step).first else {
                        problems.append("\(id): \(step) was compensated but never applied")
                        continue
                    }
                    if undo.effect.undoes != forward.effect.key || undo.position < forward.position {
                        problems.append("\(id): the undo of \(step) does not follow its effect")
                    }
                }
            }
            let inDoubt = status.cause?.message.hasPrefix("stepInDoubt") == true
            if inDoubt { report.inDoubt += 1 }
            switch status.phase {
            case .completed:
                // Every effect exactly once, nothing undone.
                expectedMerchant += plan.amount
                expectedShelved -= plan.quantity
                if plan.failAt != nil { problems.append("\(id) completed although \(plan.failAt!) rejects it") }
                for step in Self.steps where applied(step).count != 1 {
                    problems.append("\(id) completed with \(applied(step).count) effects of \(step)")
                }
                for step in Self.undos.keys where !undone(step).isEmpty {
                    problems.append("\(id) completed, yet \(step) was compensated")
                }
            case .compensated, .needsIntervention:
                // The failure is the planned rejection, or a step in doubt after a kill that is not
                // idempotent: `notify` (nothing to undo: the saga compensates) or `hold` (it has a
                // compensation: the saga needs an operator). Nothing else needs one.
                let failed = status.cause?.step ?? "none"
                let expectedPhase: SagaStatus.Phase
                switch (failed, inDoubt) {
                case ("notify", true): expectedPhase = .compensated
                case ("hold", true): expectedPhase = .needsIntervention
                case (plan.failAt ?? "none", false): expectedPhase = .compensated
                default:
                    problems.append(
                        "\(id) \(status.phase.rawValue): unexpected cause \(status.cause.map { "\($0)" } ?? "none")"
                    )
                    continue
                }
                if status.phase != expectedPhase {
                    problems.append(
                        "\(id): \(status.phase.rawValue) where \(expectedPhase.rawValue) was due (\(status))"
                    )
                }
                if let planned = plan.failAt, Self.steps.firstIndex(of: failed)! > Self.steps.firstIndex(of: planned)! {
                    problems.append("\(id) failed at \(failed), past the rejection of \(planned)")
                }
                if !status.failedCompensations.isEmpty {
                    problems.append("\(id): compensations failed: \(status.failedCompensations)")
                }
                if status.phase == .needsIntervention { interventions.insert(id) }
                // Every applied effect before the failure is undone, newest first; the in-doubt
                // `hold` is the one effect that may stay, and nobody undoes it; nothing past the
                // failure ran.
                let failedIndex = Self.steps.firstIndex(of: failed)!
                for step in Self.steps[failedIndex...] where step != failed || !inDoubt {
                    if !applied(step).isEmpty {
                        problems.append("\(id): \(step) applied after the failure at \(failed)")
                    }
                }
                for step in Self.undos.keys where step != failed {
                    if undone(step).count != applied(step).count {
                        problems.append(
                            "\(id): \(step) applied \(applied(step).count) times, undone \(undone(step).count) times"
                        )
                    }
                }
                if failed == "hold", !undone("hold").isEmpty {
                    problems.append("\(id): the hold in doubt was compensated")
                }
                let undoOrder = ["hold", "reserve", "pay"].compactMap { undone($0).first?.position }
                if undoOrder != undoOrder.sorted() {
                    problems.append("\(id): compensations out of order")
                }
            case .running, .resolved:
                problems.append("\(id) ended \(status.phase.rawValue) after the last recovery")
            }
        }
        // A recount from the effects: the money the merchant holds and the stock off the shelf are
        // exactly those of the completed sagas.
        if merchant != expectedMerchant || shelved != expectedShelved {
            problems.append(
                "recount: merchant \(merchant) (completed sagas paid \(expectedMerchant)), "
                    + "stock moved \(shelved) (completed sagas took \(-expectedShelved))"
            )
        }
        let listed = Set(try await runner.interventions().map(\.id))
        if listed != interventions {
            problems.append("interventions() lists \(listed.sorted()), the journals \(interventions.sorted())")
        }
        for key in effects.keys where !ids.contains(where: { key.hasPrefix("\($0)/") }) {
            problems.append("\(key) has an effect but no saga")
        }
    }
}

/// A fresh directory under the system's temporary directory, removed by ``remove()``.
struct TemporaryDirectory: Sendable {
    let path: String

    init(_ label: String) {
        let base = FileManager.default.temporaryDirectory.path
        self.path = "\(base)/keel-\(label)-\(UInt64.random(in: 0...UInt64.max))"
        try? FileManager.default.createDirectory(atPath: self.path, withIntermediateDirectories: true)
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: self.path)
    }
}
