import Foundation
import KeelTestSupport
import XCTest

/// A few of the saga crash trials, as XCTest runs them (see ``SagaCrashTrialTests`` for the full
/// set).
final class SagaCrashTrialXCTests: TimeLimitedTestCase {
    func testSagasSurviveSIGKILL() async throws {
        await CrashTrialLane.enter()
        defer { CrashTrialLane.leave() }
        let seed = UInt64.random(in: 0...UInt64.max)
        let report = try await SagaCrashTrials.run(trials: 5, seed: seed)
        XCTAssertEqual(report.trials, 5)
        XCTAssertEqual(report.problems, [], "seed \(seed) (KEEL_CRASH_SEED replays it in SagaCrashTrialTests)")
    }
}
