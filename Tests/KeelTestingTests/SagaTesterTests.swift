import KeelCore
import KeelSagas
import KeelTestSupport
import KeelTesting
import Synchronization
import Testing
import XCTest

/// A small order saga with three steps, whose effects land in a ledger.
final class Ledger: Sendable {
    private let entries = Lock<[String]>([])
    func add(_ entry: String) { self.entries.withLock { $0.append(entry) } }
    var all: [String] { self.entries.withLock { $0 } }
}

struct Checkout: Saga {
    static let name = "checkout"
    let ledger: Ledger

    func run(_ amount: Int, saga: SagaContext) async throws -> String {
        try await saga.step("reserve", .idempotent) { step in
            self.ledger.add("reserve \(step.idempotencyKey)")
        } compensate: { _ in
            self.ledger.add("release")
        }
        try await saga.step("pay", .idempotent) { step in
            self.ledger.add("pay \(step.idempotencyKey)")
        } compensate: { _ in
            self.ledger.add("refund")
        }
        try await saga.pivot("confirm") { _ in self.ledger.add("confirm") }
        return "ok"
    }
}

@Suite("SagaTester", .timeLimit(.minutes(2)))
struct SagaTesterTests {
    @Test("when a step fails, then the completed steps are compensated, newest first")
    func failStep() async throws {
        let tester = SagaTester()
        let ledger = Ledger()
        tester.failStep("confirm")
        let outcome = try await tester.run(Checkout(ledger: ledger), input: 10)
        #expect(outcome.phase == .compensated)
        let history = try await tester.history(Checkout.self)
        #expect(history.completed == ["reserve", "pay"])
        #expect(history.failed.map(\.step) == ["confirm"])
        #expect(history.failed.first?.errorType == "InjectedFailure")
        #expect(history.compensated == ["pay", "reserve"])
        #expect(ledger.all == ["reserve saga-1/reserve", "pay saga-1/pay", "refund", "release"])
    }

    @Test("a compensation that keeps failing ends in intervention")
    func failCompensation() async throws {
        let tester = SagaTester()
        let ledger = Ledger()
        tester.failStep("confirm")
        tester.failCompensation(of: "pay")
        let outcome = try await tester.run(Checkout(ledger: ledger), input: 10)
        #expect(outcome.phase == .needsIntervention)
        let history = try await tester.history(Checkout.self)
        #expect(history.compensated == ["reserve"])
        #expect(history.failedCompensations.map(\.step) == ["pay"])
        #expect(try await tester.runner.interventions().count == 1)
    }

    @Test("given a journal that stops as a step starts, a restart resumes the saga")
    func crashAndRestart() async throws {
        let tester = SagaTester()
        let ledger = Ledger()
        tester.crash(at: "pay")
        await #expect(throws: SagaError.self) { try await tester.run(Checkout(ledger: ledger), input: 10) }
        #expect(ledger.all == ["reserve saga-1/reserve"])
        let resumed = try await tester.restart()
        #expect(resumed.map(\.id) == ["saga-1"])
        #expect(try await tester.outcome(Checkout.self).output == "ok")
        #expect(ledger.all == ["reserve saga-1/reserve", "pay saga-1/pay", "confirm"])
        #expect(try await tester.history(Checkout.self).attempts["pay"] == 2)
        #expect(try await tester.timeline(Checkout.self).contains("finished: completed"))
    }
}

final class SagaTesterXCTests: TimeLimitedTestCase {
    func testAFailedStepIsCompensated() async throws {
        let tester = SagaTester()
        let ledger = Ledger()
        tester.failStep("pay", times: 1)
        let outcome = try await tester.run(Checkout(ledger: ledger), input: 10)
        XCTAssertEqual(outcome.phase, .compensated)
        let history = try await tester.history(Checkout.self)
        XCTAssertEqual(history.compensated, ["reserve"])
    }
}
