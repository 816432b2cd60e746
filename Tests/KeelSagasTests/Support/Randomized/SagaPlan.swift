/// SplitMix64, the randomized run's own generator: each saga's plan is drawn from a generator
/// seeded by the run's seed and the saga's index, so a plan depends on nothing else (not on the
/// other plans, nor on the order the sagas ran in) and can be replayed alone.
struct SplitMix: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) {
        self.state = seed
    }

    /// The generator of saga `index` of the run seeded with `seed`.
    init(seed: UInt64, index: Int) {
        self.init(seed: seed ^ (UInt64(index) &* 0xD1B5_4A32_D192_ED03))
        _ = self.next()
    }

    mutating func next() -> UInt64 {
        self.state &+= 0x9E37_79B9_7F4A_7C15
        var z = self.state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// `true` with `percent` % probability.
    mutating func chance(_ percent: Int) -> Bool {
        Int.random(in: 0..<100, using: &self) < percent
    }

    mutating func int(_ range: ClosedRange<Int>) -> Int {
        Int.random(in: range, using: &self)
    }

    /// A multiple of 100 ms, from `range` tenths of a second: coarse, so that several sagas wake at
    /// the same virtual instant.
    mutating func tenths(_ range: ClosedRange<Int>) -> Duration {
        .milliseconds(100 * self.int(range))
    }
}

/// One randomized saga: what its body calls, and how each call behaves. Everything that decides
/// the saga's outcome is here: failures are by attempt number, slowness and timeouts by virtual
/// durations, cancellation by the step that requests it.
struct SagaPlan: Sendable, CustomStringConvertible {
    /// What a step does to the ledger when it applies: money from the saga's customer to the
    /// merchant, or stock from the shelf into reservation. Its compensation moves it back.
    enum Effect: Sendable, Hashable {
        case money(Int)
        case stock(item: Int, quantity: Int)
    }

    /// How a step's action behaves, by attempt.
    enum Action: Sendable, Hashable {
        case succeed
        /// Attempts `1...times` throw; with `afterEffect`, after applying the effect (the
        /// response was lost), so that the retry must not apply it again.
        case failTransiently(times: Int, afterEffect: Bool)
        /// Every attempt throws, before the effect.
        case failPermanently
        /// Requests the cancellation of the saga's task and waits until it arrives: the step
        /// fails with `CancellationError`.
        case cancelSaga
        /// Requests the cancellation of the saga's task and succeeds (a retriable step past the
        /// pivot, which cancellation does not reach).
        case requestCancel
    }

    /// How a step's compensation behaves, by attempt.
    enum Undo: Sendable, Hashable {
        case succeed
        /// Attempts `1...times` throw (`times` < the runner's compensation attempts); with
        /// `afterEffect`, after undoing.
        case failTransiently(times: Int, afterEffect: Bool)
        /// Every attempt throws: the saga needs intervention.
        case failPermanently
    }

    struct Step: Sendable, Hashable {
        /// The name the body passes to the step call.
        var localName: String
        /// The name the runner gives it: a nested saga's steps carry its name in front.
        var name: String
        var effect: Effect?
        var action: Action
        /// Used when the step has an effect (only those have a compensation).
        var undo: Undo
        /// The first attempt sleeps this long on the test clock before it acts.
        var slow: Duration?
        var timeout: Duration?
        /// The attempts of the step's retry strategy (1: none). For a retriable step, the
        /// runner's ``RandomSagaRun/retriableAttempts``.
        var attempts: Int
        /// In a parallel branch: the step fails (or cancels), so it first waits until every
        /// sibling branch has finished or reached its own failing step, which makes the set of
        /// completed branch steps a function of the plan.
        var waitsForSiblings = false
    }

    indirect enum Item: Sendable, Hashable {
        case step(Step)
        case parallel(name: String, branches: [[Step]])
        /// A nested saga's items (steps, timers, a cancellation); with `catches`, the body
        /// catches the nested saga's step failure and goes on.
        case nested(name: String, items: [Item], catches: Bool)
        case timer(name: String, Duration)
        /// The body requests its saga's cancellation between steps and waits until it arrives.
        case cancel
    }

    var index: Int
    var items: [Item]
    var pivot: Step?
    /// Retriable steps and timers, after the pivot.
    var afterPivot: [Item] = []

    var id: String { "s\(self.index)" }

    func key(_ step: Step) -> String { "\(self.id)/\(step.name)" }

    /// Every step of the plan, reached or not.
    var allSteps: [Step] {
        func steps(_ items: [Item]) -> [Step] {
            items.flatMap { item -> [Step] in
                switch item {
                case .step(let step): [step]
                case .parallel(_, let branches): branches.flatMap { $0 }
                case .nested(_, let items, _): steps(items)
                case .timer, .cancel: []
                }
            }
        }
        return steps(self.items) + (self.pivot.map { [$0] } ?? []) + steps(self.afterPivot)
    }

    var description: String {
        var text = "#\(self.index) [" + self.items.map(\.description).joined(separator: ", ") + "]"
        if let pivot { text += " pivot \(pivot)" }
        if !self.afterPivot.isEmpty {
            text += " then [" + self.afterPivot.map(\.description).joined(separator: ", ") + "]"
        }
        return text
    }
}

extension SagaPlan.Step: CustomStringConvertible {
    var description: String {
        var parts = [self.localName]
        switch self.effect {
        case .money(let amount): parts.append("$\(amount)")
        case .stock(let item, let quantity): parts.append("sku\(item)x\(quantity)")
        case nil: break
        }
        switch self.action {
        case .succeed: break
        case .failTransiently(let times, let after): parts.append("fails\(times)\(after ? "-after-effect" : "")")
        case .failPermanently: parts.append("fails")
        case .cancelSaga: parts.append("cancels")
        case .requestCancel: parts.append("requests-cancel")
        }
        if let slow { parts.append("slow \(slow)") }
        if let timeout { parts.append("timeout \(timeout)") }
        if self.attempts > 1 { parts.append("attempts \(self.attempts)") }
        if self.waitsForSiblings { parts.append("waits-for-siblings") }
        if self.effect != nil {
            switch self.undo {
            case .succeed: break
            case .failTransiently(let times, let after):
                parts.append("undo-fails\(times)\(after ? "-after-undo" : "")")
            case .failPermanently: parts.append("undo-fails")
            }
        }
        return parts.joined(separator: " ")
    }
}

extension SagaPlan.Item: CustomStringConvertible {
    private static func describe(_ branch: [SagaPlan.Step]) -> String {
        "[" + branch.map(\.description).joined(separator: "; ") + "]"
    }

    var description: String {
        switch self {
        case .step(let step): "(\(step))"
        case .parallel(let name, let branches):
            "\(name){" + branches.map(Self.describe).joined(separator: " | ") + "}"
        case .nested(let name, let items, let catches):
            "\(name)\(catches ? " caught" : ""){" + items.map(\.description).joined(separator: ", ") + "}"
        case .timer(let name, let duration): "\(name) sleep \(duration)"
        case .cancel: "cancel"
        }
    }
}

// MARK: - Generation

extension SagaPlan {
    /// The runner's compensation attempts in the randomized run.
    static let compensationAttempts = 3
    /// The runner's retriable attempts in the randomized run.
    static let retriableAttempts = 3

    /// Saga `index` of the run seeded with `seed`.
    static func make(seed: UInt64, index: Int) -> SagaPlan {
        var generator = Generator(random: SplitMix(seed: seed, index: index))
        return generator.plan(index: index)
    }

    private struct Generator {
        var random: SplitMix
        var counter = 0

        mutating func name(_ prefix: String) -> String {
            self.counter += 1
            return "\(prefix)\(self.counter)"
        }

        mutating func plan(index: Int) -> SagaPlan {
            var items: [Item] = []
            for _ in 0..<self.random.int(1...4) {
                let roll = self.random.int(0...99)
                if roll < 58 {
                    items.append(.step(self.step(prefix: "", inBranch: false)))
                } else if roll < 74 {
                    items.append(self.parallel())
                } else if roll < 90 {
                    items.append(self.nested())
                } else {
                    items.append(.timer(name: self.name("t"), self.random.tenths(1...10)))
                }
            }
            var plan = SagaPlan(index: index, items: items)
            if self.random.chance(65) {
                var pivot = self.step(prefix: "", inBranch: false)
                pivot.localName = self.name("p")
                pivot.name = pivot.localName
                pivot.undo = .succeed  // a pivot has no compensation
                plan.pivot = pivot
                for _ in 0..<self.random.int(0...2) {
                    plan.afterPivot.append(.step(self.retriable()))
                }
                if self.random.chance(25) {
                    plan.afterPivot.insert(
                        .timer(name: self.name("t"), self.random.tenths(1...10)),
                        at: self.random.int(0...plan.afterPivot.count)
                    )
                }
            }
            if self.random.chance(14) {
                self.placeCancellation(in: &plan)
            }
            return plan
        }

        mutating func effect() -> Effect? {
            guard self.random.chance(80) else { return nil }
            if self.random.chance(60) { return .money(self.random.int(1...40)) }
            return .stock(item: self.random.int(0...3), quantity: self.random.int(1...5))
        }

        mutating func undo() -> Undo {
            let roll = self.random.int(0...99)
            if roll < 80 { return .succeed }
            if roll < 90 {
                return .failTransiently(
                    times: self.random.int(1...(SagaPlan.compensationAttempts - 1)),
                    afterEffect: self.random.chance(50)
                )
            }
            return .failPermanently
        }

        /// A step before the pivot (or the pivot itself). In a parallel branch, a failing step is
        /// fast and waits for its siblings, and every other step ends up succeeding.
        mutating func step(prefix: String, inBranch: Bool) -> Step {
            let local = self.name("a")
            var step = Step(
                localName: local,
                name: prefix + local,
                effect: self.effect(),
                action: .succeed,
                undo: self.undo(),
                attempts: self.random.chance(50) ? 1 : self.random.int(2...3)
            )
            let roll = self.random.int(0...99)
            if roll < 10 {
                step.action = .failPermanently
            } else if roll < 28 {
                let times = self.random.int(1...2)
                let afterEffect = self.random.chance(50)
                step.action = .failTransiently(times: times, afterEffect: afterEffect)
                // An effect applied by a failed attempt must be kept by a later one: a step
                // that failed for good would leave it applied and uncompensated.
                if afterEffect || inBranch { step.attempts = max(step.attempts, times + 1) }
            }
            if inBranch, step.action == .failPermanently {
                step.attempts = 1
                step.waitsForSiblings = true
                return step
            }
            if self.random.chance(inBranch ? 20 : 25) {
                let tenths = self.random.int(1...10)
                let slow = Duration.milliseconds(100 * tenths)
                step.slow = slow
                if self.random.chance(60) {
                    if tenths >= 2, self.random.chance(50) {
                        // Runs past its timeout on the first attempt; only a retry can save it.
                        step.timeout = .milliseconds(100 * self.random.int(1...(tenths - 1)))
                        if inBranch || step.action.appliesBeforeFailing {
                            step.attempts = max(step.attempts, 2, step.action.transientTimes + 1)
                        }
                    } else {
                        step.timeout = slow + self.random.tenths(1...5)
                    }
                }
            } else if self.random.chance(10) {
                step.timeout = self.random.tenths(1...10)
            }
            return step
        }

        mutating func retriable() -> Step {
            let local = self.name("r")
            var step = Step(
                localName: local,
                name: local,
                effect: self.random.chance(50) ? self.effect() : nil,
                action: .succeed,
                undo: .succeed,
                attempts: SagaPlan.retriableAttempts
            )
            let roll = self.random.int(0...99)
            if roll < 30 {
                step.action = .failTransiently(times: self.random.int(1...2), afterEffect: self.random.chance(50))
            } else if roll < 40 {
                step.action = .failTransiently(times: SagaPlan.retriableAttempts, afterEffect: false)
            }
            if self.random.chance(20) {
                let slow = self.random.tenths(2...10)
                step.slow = slow
                step.timeout =
                    self.random.chance(50) ? slow + self.random.tenths(1...3) : slow - .milliseconds(100)
            }
            return step
        }

        mutating func parallel() -> Item {
            let name = self.name("g")
            let branches = (0..<self.random.int(2...3)).map { _ in
                (0..<self.random.int(1...2)).map { _ in self.step(prefix: "", inBranch: true) }
            }
            return .parallel(name: name, branches: branches)
        }

        mutating func nested() -> Item {
            let name = self.name("n")
            var items: [Item] = []
            for _ in 0..<self.random.int(1...3) {
                if self.random.chance(85) {
                    items.append(.step(self.step(prefix: name + "/", inBranch: false)))
                } else {
                    items.append(.timer(name: self.name("t"), self.random.tenths(1...10)))
                }
            }
            return .nested(name: name, items: items, catches: self.random.chance(30))
        }

        /// Puts one cancellation somewhere: at a step before the pivot (in the body, a nested
        /// saga or a parallel branch), at the pivot, between two items, or past the pivot (at a
        /// retriable step, when no timer follows the pivot: a cancelled timer past the pivot
        /// ends the run in intervention, which is another test's subject).
        mutating func placeCancellation(in plan: inout SagaPlan) {
            func cancelling(_ step: Step) -> Step {
                var step = step
                step.action = .cancelSaga
                step.slow = nil
                step.timeout = nil
                step.attempts = 1
                return step
            }
            let roll = self.random.int(0...99)
            if roll < 15, let pivot = plan.pivot {
                plan.pivot = cancelling(pivot)
                return
            }
            if roll < 30, plan.pivot != nil, !plan.afterPivot.contains(where: \.isTimer) {
                let retriables = plan.afterPivot.indices.filter { !plan.afterPivot[$0].isTimer }
                if let at = retriables.randomElement(using: &self.random), case .step(var step) = plan.afterPivot[at] {
                    step.action = .requestCancel
                    plan.afterPivot[at] = .step(step)
                    return
                }
            }
            if roll < 45 {
                plan.items.insert(.cancel, at: self.random.int(0...plan.items.count))
                return
            }
            let at = self.random.int(0...(plan.items.count - 1))
            switch plan.items[at] {
            case .step(let step):
                plan.items[at] = .step(cancelling(step))
            case .timer:
                plan.items[at] = .cancel
            case .cancel:
                break
            case .parallel(let name, var branches):
                let branch = self.random.int(0...(branches.count - 1))
                let position = self.random.int(0...(branches[branch].count - 1))
                var step = cancelling(branches[branch][position])
                step.waitsForSiblings = true
                branches[branch][position] = step
                plan.items[at] = .parallel(name: name, branches: branches)
            case .nested(let name, var items, _):
                let position = self.random.int(0...(items.count - 1))
                if case .step(let step) = items[position] {
                    items[position] = .step(cancelling(step))
                } else {
                    items[position] = .cancel
                }
                plan.items[at] = .nested(name: name, items: items, catches: false)
            }
        }
    }
}

extension SagaPlan.Action {
    /// Whether a failed attempt may have applied the effect.
    var appliesBeforeFailing: Bool {
        if case .failTransiently(_, true) = self { return true }
        return false
    }

    var transientTimes: Int {
        if case .failTransiently(let times, _) = self { return times }
        return 0
    }
}

extension SagaPlan.Item {
    var isTimer: Bool {
        if case .timer = self { return true }
        return false
    }
}
