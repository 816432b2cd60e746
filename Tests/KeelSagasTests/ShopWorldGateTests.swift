import Testing

/// `Gate.pass()` (the fixture of `ShopWorld.swift`) must resume its continuation exactly once when
/// its waiter is cancelled.
@Suite("ShopWorld's gate", .timeLimit(.minutes(2)))
struct ShopWorldGateTests {
    /// A regression test. The randomized saga run found that `pass()` once stored its
    /// continuation, released the lock, and then, if the continuation was no longer stored,
    /// resumed it with `CancellationError`; when `onCancel` ran in between, the continuation was
    /// resumed twice and the process stopped ("SWIFT TASK CONTINUATION MISUSE"). `pass()` now
    /// decides in one locked section whether to resume, refuse or store the continuation.
    @Test("cancelling a waiter as soon as it arrives resumes it once")
    func cancelRightAfterArrival() async throws {
        for _ in 0..<2_000 {
            let gate = Gate()
            // Unstructured, as in `OrderSagaTests`: the loop owns it, cancels it and awaits it.
            let task = Task { try await gate.pass() }
            await gate.arrival()
            task.cancel()
            await #expect(throws: CancellationError.self) { try await task.value }
        }
    }
}
