import Keel
import KeelTesting
import Testing

/// The testing article's health-check example, as it is written there: `checkHealth()` runs a
/// round and returns when every instance has answered, with no clock to drive.
@Suite("Testing article: health checks", .timeLimit(.minutes(2)))
struct HealthCheckArticleTests {
    struct Quote: ServiceRequest {
        typealias Response = Int
        var sku: String
    }

    actor PricingService: ServiceActor {
        static let name: ServiceName = "pricing"
        private var isOverloaded = false

        func overload() { self.isOverloaded = true }

        func health() async -> HealthReport {
            self.isOverloaded ? .notReady("shedding load") : .healthy
        }

        nonisolated func registerHandlers(_ handlers: inout RequestHandlers<PricingService>) {
            handlers.on(Quote.self) { _, _ in 100 }
        }
    }

    @Test func anOverloadedInstanceLeavesTheRotation() async throws {
        let pricing = PricingService()

        try await TestHost.with(pricing) { test in
            let price = try await test.client.send(Quote(sku: "keyboard"))
            #expect(price == 100)

            await pricing.overload()
            await test.host.checkHealth()  // one round, over when every instance has answered

            let error = await #expect(throws: RequestError.self) {
                try await test.client.send(Quote(sku: "keyboard"))
            }
            #expect(error?.code == .noHealthyInstance)
        }
    }

    @Test("the periodic loop with no health timeout: sleeping again means the round is over")
    func periodicRound() async throws {
        var configuration = TestHost.defaultConfiguration
        configuration.healthCheckInterval = .seconds(5)
        configuration.healthCheckTimeout = nil
        let pricing = PricingService()

        try await TestHost.with(pricing, configuration: configuration) { test in
            await pricing.overload()
            await test.clock.waitForSleepers(count: 1)  // the loop waits for its next check
            test.clock.advance(by: .seconds(5))
            await test.clock.waitForSleepers(count: 1)  // it checked, and sleeps again

            let error = await #expect(throws: RequestError.self) {
                try await test.client.send(Quote(sku: "keyboard"))
            }
            #expect(error?.code == .noHealthyInstance)
        }
    }
}
