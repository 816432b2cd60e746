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
        try await scenario.setUp()
        do {
            let results = try await self.measureSetUp(scenario, progress: progress)
            await scenario.tearDown()
            return results
        } catch {
            await scenario.tearDown()
            throw error
        }
    }

    private func measureSetUp(_ scenario: any Scenario, progress: (String) -> Void) async throws -> [Comparison] {
        let oursCount: Int
        let baselineCount: Int
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
        }
        let names = scenario.metrics.map(\.name).joined(separator: ", ")
        progress("\(names): \(self.options.rounds) rounds, \(oursCount) / \(baselineCount) units per round")

        var ours: [[Double]] = []
        var baseline: [[Double]] = []
        for round in 0..<self.options.rounds {
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

    /// Runs `side` once with `minimum` units to learn its cost, then (outside a quick run) once
    /// more at the calibrated count as warm-up.
    /// - Returns: The units per measured round.
    private func calibrate(minimum: Int, _ side: (Int) async throws -> [Double]) async throws -> Int {
        let probe = try await side(minimum)[0]
        let wanted = probe > 0 ? self.targetRoundTime.nanoseconds / probe : Double(Self.maximumCount)
        let count = min(max(Int(wanted), minimum), Self.maximumCount)
        if !self.options.quick {
            _ = try await side(count)
        }
        return count
    }
}
