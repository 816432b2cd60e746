/// Runs scenarios: warm-up and calibration, then interleaved measured rounds.
///
/// Each round runs both sides once; even rounds run ours first, odd rounds the baseline first,
/// so that drift on a shared machine (another process waking up, frequency changes) falls on
/// both sides alike. The reported value of each side is the median over rounds.
struct Harness {
    /// The settings of one kind of run.
    let options: Options

    /// How long one side of a calibrated round should take.
    private var targetRoundTime: Duration { self.options.quick ? .milliseconds(15) : .milliseconds(120) }

    /// The most units a calibrated round may do, whatever the calibration says.
    private static let maximumCount = 5_000_000

    /// Measures one scenario.
    /// - Parameters:
    ///   - scenario: The scenario.
    ///   - progress: Called with a line of progress for the user.
    /// - Returns: One result per metric of the scenario, in its order.
    /// - Throws: What the scenario throws.
    func measure(_ scenario: any Scenario, progress: (String) -> Void) async throws -> [Comparison] {
        let clock = ContinuousClock()
        let start = clock.now
        try await scenario.setUp()
        do {
            let results = try await self.measureRounds(scenario, progress: progress)
            await scenario.tearDown()
            let seconds = start.duration(to: clock.now).nanoseconds / 1e9
            let names = scenario.metrics.map(\.name).joined(separator: ", ")
            progress("\(names): done in \(Report.fixed(seconds, decimals: 1)) s")
            return results
        } catch {
            await scenario.tearDown()
            throw error
        }
    }

    private func measureRounds(_ scenario: any Scenario, progress: (String) -> Void) async throws -> [Comparison] {
        let oursCount: Int
        let baselineCount: Int
        var rounds = self.options.rounds
        switch scenario.workload {
        case .fixed(let full, let quick):
            oursCount = self.options.quick ? quick : full
            baselineCount = oursCount
            // Warm-up: caches, allocator, the executor's threads.
            _ = try await scenario.runOurs(max(oursCount / 4, 1))
            _ = try await scenario.runBaseline(max(baselineCount / 4, 1))
        case .calibrated(let minimum):
            oursCount = try await self.calibrate(minimum: minimum) { try await scenario.runOurs($0) }
            baselineCount = try await self.calibrate(minimum: minimum) { try await scenario.runBaseline($0) }
        case .once(let full, let quick):
            oursCount = self.options.quick ? quick : full
            baselineCount = oursCount
            rounds = 1
        }
        let names = scenario.metrics.map(\.name).joined(separator: ", ")
        let counts = "\(oursCount) ours / \(baselineCount) baseline"
        progress("\(names): rounds \(rounds), units per round \(counts)")

        var ours: [[Double]] = []
        var baseline: [[Double]] = []
        for round in 0..<rounds {
            if round % 2 == 0 {
                ours.append(try await scenario.runOurs(oursCount))
                baseline.append(try await scenario.runBaseline(baselineCount))
            } else {
                baseline.append(try await scenario.runBaseline(baselineCount))
                ours.append(try await scenario.runOurs(oursCount))
            }
        }
        return scenario.metrics.enumerated().map { index, metric in
            Comparison(
                metric: metric,
                ours: ours.map { $0[index] },
                baseline: baseline.map { $0[index] }
            )
        }
    }

    /// Learns the cost of one unit of `side`: runs it with `minimum` units, then four times as
    /// many until a run lasts an eighth of the target time. Outside a quick run, runs it once more
    /// at the resulting count, as warm-up, and corrects the count with that run's cost.
    /// - Returns: The units per measured round.
    private func calibrate(minimum: Int, _ side: (Int) async throws -> [Double]) async throws -> Int {
        let target = self.targetRoundTime.nanoseconds
        func count(costing nanoseconds: Double) -> Int {
            let wanted = nanoseconds > 0 ? target / nanoseconds : Double(Self.maximumCount)
            return Int(min(max(wanted, Double(minimum)), Double(Self.maximumCount)))
        }
        var probe = minimum
        var cost = try await side(probe)[0]
        while cost * Double(probe) < target / 8 && probe < Self.maximumCount {
            probe = min(probe * 4, Self.maximumCount)
            cost = try await side(probe)[0]
        }
        guard !self.options.quick else { return count(costing: cost) }
        return count(costing: try await side(count(costing: cost))[0])
    }
}
