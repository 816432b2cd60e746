import KeelCore
import KeelResilience
import Synchronization
import Testing

private struct GatewayDown: Error, Equatable {
    var status = 503
}

private struct Invalid: Error, Equatable {}

private struct FallbackFailed: Error, Equatable {}

@Suite("Fallback", .timeLimit(.minutes(2)))
struct FallbackTests {
    @Test func aSuccessPassesThroughWithoutCallingTheFallback() async throws {
        let calls = Atomic<Int>(0)
        let fallback = Fallback<String>(when: { _ in true }) { _ in
            calls.add(1, ordering: .relaxed)
            return "fallback"
        }
        #expect(try await fallback.run { "primary" } == "primary")
        #expect(calls.load(ordering: .relaxed) == 0)
    }

    @Test func handlesErrorsOfTheGivenTypeWithTheTypedError() async throws {
        let fallback = Fallback.onError(CircuitBreakerError.self) { error in
            "cached (\(error.breakerName) is \(error.code))"
        }
        let value = try await fallback.run {
            throw CircuitBreakerError(code: .open, breakerName: "quotes")
        }
        #expect(value == "cached (quotes is open)")
    }

    @Test func errorsOfOtherTypesPassThroughUnchanged() async throws {
        let fallback = Fallback.onError(CircuitBreakerError.self) { _ in 0 }
        await #expect(throws: GatewayDown(status: 500)) {
            try await fallback.run { throw GatewayDown(status: 500) }
        }
    }

    @Test func theTypedPredicateNarrowsTheHandledErrors() async throws {
        let fallback = Fallback.onError(GatewayDown.self, where: { $0.status == 503 }) { error in error.status }
        #expect(try await fallback.run { throw GatewayDown(status: 503) } == 503)
        await #expect(throws: GatewayDown(status: 500)) {
            try await fallback.run { throw GatewayDown(status: 500) }
        }
    }

    @Test func handlesErrorsThePredicateAccepts() async throws {
        let fallback = Fallback<Int>(when: { $0 is GatewayDown || $0 is Invalid }) { error in
            error is Invalid ? -1 : -2
        }
        #expect(try await fallback.run { throw Invalid() } == -1)
        #expect(try await fallback.run { throw GatewayDown() } == -2)
        await #expect(throws: FallbackFailed()) {
            try await fallback.run { throw FallbackFailed() }
        }
    }

    @Test func neverHandlesCancellationError() async throws {
        let calls = Atomic<Int>(0)
        let fallback = Fallback<Int>(when: { _ in true }) { _ in
            calls.add(1, ordering: .relaxed)
            return 0
        }
        #expect(!fallback.handles(CancellationError()))
        #expect(fallback.handles(Invalid()))
        await #expect(throws: CancellationError.self) {
            try await fallback.run { throw CancellationError() }
        }
        #expect(calls.load(ordering: .relaxed) == 0)
    }

    @Test func neverHandlesAnErrorThrownWhileTheCallerIsCancelled() async throws {
        let calls = Atomic<Int>(0)
        let fallback = Fallback<Int>(when: { _ in true }) { _ in
            calls.add(1, ordering: .relaxed)
            return 0
        }
        await withTaskGroup(of: Void.self) { group in
            group.cancelAll()
            group.addTask {
                await #expect(throws: GatewayDown()) {
                    try await fallback.run { throw GatewayDown() }
                }
            }
        }
        #expect(calls.load(ordering: .relaxed) == 0)
    }

    @Test func theFallbacksOwnErrorPropagates() async throws {
        let recorder = InMemoryRecorder()
        let fallback = Fallback<Int>(name: "quotes", when: { _ in true }, telemetry: recorder) { _ in
            throw FallbackFailed()
        }
        await #expect(throws: FallbackFailed()) {
            try await fallback.run { throw GatewayDown() }
        }
        #expect(recorder.counter("keel.fallback.handled", dimensions: [("fallback", "quotes")]) == 1)
        #expect(recorder.counter("keel.fallback.failed", dimensions: [("fallback", "quotes")]) == 1)
    }

    @Test func theFallbackMaySuspend() async throws {
        actor Cache {
            var value = 42
            func read() -> Int { self.value }
        }
        let cache = Cache()
        let fallback = Fallback.onError(GatewayDown.self) { _ in await cache.read() }
        #expect(try await fallback.run { throw GatewayDown() } == 42)
    }

    @Test func countsHandledFailures() async throws {
        let recorder = InMemoryRecorder()
        let fallback = Fallback.onError(GatewayDown.self, name: "menu", telemetry: recorder) { _ in "" }
        for _ in 0..<3 {
            _ = try await fallback.run { throw GatewayDown() }
        }
        _ = try await fallback.run { "ok" }
        #expect(recorder.counter("keel.fallback.handled", dimensions: [("fallback", "menu")]) == 3)
        #expect(recorder.counter("keel.fallback.failed", dimensions: [("fallback", "menu")]) == 0)
        #expect(fallback.name == "menu")
    }

    @Test func asAStrategyItAppliesWhenTheResultTypeMatches() async throws {
        let strategy: any ResilienceStrategy = Fallback.onError(GatewayDown.self) { _ in "fallback" }
        let value = try await strategy.execute { () async throws -> String in throw GatewayDown() }
        #expect(value == "fallback")
        await #expect(throws: CancellationError.self) {
            try await strategy.execute { () async throws -> String in throw CancellationError() }
        }
    }

    @Test func asAStrategyItPassesOtherResultTypesThrough() async throws {
        let strategy: any ResilienceStrategy = Fallback.onError(GatewayDown.self) { _ in "fallback" }
        await #expect(throws: GatewayDown()) {
            try await strategy.execute { () async throws -> Int in throw GatewayDown() }
        }
        await #expect(throws: GatewayDown()) {
            try await strategy.execute { () async throws -> String? in throw GatewayDown() }
        }
        #expect(try await strategy.execute { 7 } == 7)
    }

    @Test func aFallbackOverAHedgeAnswersWhenEveryAttemptFails() async throws {
        let hedging = Hedging(configuration: .init(maxAttempts: 2, delay: .zero))
        let fallback = Fallback.onError(GatewayDown.self) { _ in "stale" }
        let value = try await fallback.run {
            try await hedging.run { _ -> String in throw GatewayDown() }
        }
        #expect(value == "stale")
    }

    @Test func manyConcurrentCallsShareOneFallback() async throws {
        let recorder = InMemoryRecorder()
        let fallback = Fallback.onError(GatewayDown.self, name: "shared", telemetry: recorder) { _ in -1 }
        let sum = try await withThrowingTaskGroup(of: Int.self) { group in
            for index in 0..<1_000 {
                group.addTask {
                    try await fallback.run {
                        if index.isMultiple(of: 2) { throw GatewayDown() }
                        return 1
                    }
                }
            }
            return try await group.reduce(0, +)
        }
        #expect(sum == 0)
        #expect(recorder.counter("keel.fallback.handled", dimensions: [("fallback", "shared")]) == 500)
    }
}
