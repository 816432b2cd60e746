import Keel
import KeelCore
import KeelEventSourcing
import KeelSagas
import KeelTesting
import Synchronization
import Testing

/// A payments service that remembers the trace of every charge it takes.
actor HostedPayments: ServiceActor {
    static let name: ServiceName = "payments"
    private(set) var traces: [TraceID] = []
    private(set) var refunds: [String] = []

    struct Charge: ServiceRequest {
        typealias Response = String
        var key: String
    }

    struct Refund: ServiceRequest {
        typealias Response = Bool
        var charge: String
    }

    struct Traces: ServiceRequest {
        typealias Response = [String]
    }

    nonisolated func registerHandlers(_ handlers: inout RequestHandlers<HostedPayments>) {
        handlers.on(Charge.self) { service, request in
            if let trace = TraceContext.current?.traceID { service.traces.append(trace) }
            return "charge-\(request.key)"
        }
        handlers.on(Refund.self) { service, request in
            service.refunds.append(request.charge)
            return true
        }
        handlers.on(Traces.self) { service, _ in service.traces.map(\.description) + service.refunds }
    }
}

/// An order service that places orders as sagas, journaled in its own storage.
actor HostedOrders: ServiceActor {
    static let name: ServiceName = "orders"
    static let dependencies: [ServiceName] = [HostedPayments.name]
    private var runner: SagaRunner?

    struct Place: ServiceRequest {
        typealias Response = String
        var id: String
        var failAfterCharge: Bool
    }

    struct Checkout: Saga {
        static let name = "orders.checkout"
        let environment: ServiceEnvironment

        func run(_ order: Place, saga: SagaContext) async throws -> String {
            let charge = try await saga.step("charge", .idempotent) { step in
                try await environment.send(HostedPayments.Charge(key: step.idempotencyKey))
            } compensate: { charge, _ in
                _ = try await environment.send(HostedPayments.Refund(charge: charge))
            }
            if order.failAfterCharge {
                try await saga.step("ship") { _ in throw Boom(what: "no courier") }
            }
            return charge
        }
    }

    func start(_ environment: ServiceEnvironment) async throws {
        let runner = try await SagaRunner.make(environment)
        runner.register(Checkout(environment: environment))
        try await runner.recover()
        self.runner = runner
    }

    func stop() async throws {
        await self.runner?.shutdown()
    }

    nonisolated func registerHandlers(_ handlers: inout RequestHandlers<HostedOrders>) {
        handlers.on(Place.self) { service, request, environment in
            guard let runner = service.runner else { throw Boom(what: "not started") }
            switch try await runner.run(Checkout(environment: environment), id: request.id, input: request) {
            case .completed(let charge): return charge
            case .compensated(let cause): return "compensated: \(cause)"
            case .needsIntervention(let intervention): return "intervention: \(intervention)"
            }
        }
    }
}

@Suite("Sagas in a service host", .timeLimit(.minutes(2)))
struct SagaHostTests {
    @Test("a service runs sagas in its own storage; steps call services in the saga's trace")
    func hosted() async throws {
        try await TestHost.with(HostedPayments(), HostedOrders()) { test in
            let charge = try await test.client.send(HostedOrders.Place(id: "o-1", failAfterCharge: false))
            #expect(charge == "charge-o-1/charge")
            let sagaSpan = try #require(test.telemetry.spans.first { $0.name == "saga orders.checkout" })
            let stepSpan = try #require(test.telemetry.spans.first { $0.name == "saga.step charge" })
            #expect(stepSpan.context.traceID == sagaSpan.context.traceID)
            #expect(stepSpan.context.parentSpanID == sagaSpan.context.spanID)
            let seen = try await test.client.send(HostedPayments.Traces())
            #expect(seen == [sagaSpan.context.traceID.description])

            let compensated = try await test.client.send(HostedOrders.Place(id: "o-2", failAfterCharge: true))
            #expect(compensated.hasPrefix("compensated: ship"))
            let afterwards = try await test.client.send(HostedPayments.Traces())
            #expect(afterwards.last == "charge-o-2/charge")
        }
    }
}
