import KeelCore
import KeelEventSourcing
import KeelSagas
import KeelTestSupport
import KeelTesting
import XCTest

/// Sagas from an `XCTestCase`: async tests work the same way.
final class SagaXCTests: TimeLimitedTestCase {
    func testAFailedPaymentCompensatesTheValidation() async throws {
        let world = ShopWorld()
        world.fail("reserve")
        let runner = SagaRunner(store: InMemoryEventStore(), clock: TestClock(), random: RandomSource(seed: 1))
        let outcome = try await runner.run(OrderSaga(world: world), id: "o-1", input: OrderDraft(id: "o-1"))
        guard case .compensated(let cause) = outcome else {
            return XCTFail("expected compensated, got \(outcome.phase)")
        }
        XCTAssertEqual(cause.step, "reserve")
        XCTAssertEqual(world.log, ["validate", "pay", "reserve failed", "refund"])
        XCTAssertEqual(world.balance, 100)
    }

    func testRecoveryResumesAnInterruptedSaga() async throws {
        let world = ShopWorld()
        let store = InMemoryEventStore()
        do {
            _ = try await SagaRunner(store: CrashingStore(base: store, crashAtAppend: 6), clock: TestClock())
                .run(OrderSaga(world: world), id: "o-1", input: OrderDraft(id: "o-1"))
            XCTFail("the crash went unnoticed")
        } catch {
            XCTAssertEqual(error.code, .journalUnavailable)
        }
        let runner = SagaRunner(store: store, clock: TestClock())
        runner.register(OrderSaga(world: world))
        let resumed = try await runner.recover()
        XCTAssertEqual(resumed.map(\.id), ["o-1"])
        let outcome = try await runner.outcome(OrderSaga.self, id: "o-1")
        XCTAssertEqual(outcome.output, "receipt-o-1")
        XCTAssertEqual(world.applications, ["o-1/pay": 1, "o-1/reserve": 1])
    }
}
