import KeelTestSupport
import XCTest

/// The randomized saga run from XCTest, as users of XCTest write it: 500 sagas of the same
/// generator, with the same seed and checks.
final class SagaRandomizedXCTests: TimeLimitedTestCase {
    func testFiveHundredRandomSagasEndAsTheirPlansSay() async throws {
        var configuration = RandomSagaRun.Configuration.fromEnvironment(count: 500)
        configuration.count = min(configuration.count, 500)
        configuration.only = nil
        let report = await RandomSagaRun(configuration).run()
        TestLog.line(report.summary)
        XCTAssertEqual(report.signatures.count, 500)
        for failure in report.failures.prefix(20) {
            XCTFail(failure)
        }
        XCTAssertEqual(report.failures.count, 0, "rerun: \(configuration.rerun)")
    }
}
