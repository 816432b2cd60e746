import InMemoryTracing
import Instrumentation
import Keel
import KeelCore
import Synchronization
import Tracing

/// Services, an event and a tracer for the tracing bridge's tests.
enum TracingFixtures {
    struct Noted: Event {
        static let topic = "test.noted"
    }

    struct Outer: ServiceRequest {
        typealias Response = Int
        var fail = false
    }

    struct Inner: ServiceRequest {
        typealias Response = Int
        var fail = false
    }

    struct Refused: Error {}

    /// What a handler saw: Keel's context and swift-distributed-tracing's.
    struct Seen: Sendable {
        var keel: TraceContext?
        var tracing: InMemorySpanContext?

        static var now: Seen {
            Seen(keel: TraceContext.current, tracing: InstrumentationContext.current?.inMemorySpanContext)
        }
    }

    final class Sightings: Sendable {
        private let seen = Mutex<[String: Seen]>([:])

        func record(_ key: String) {
            let now = Seen.now
            self.seen.withLock { $0[key] = now }
        }

        subscript(key: String) -> Seen? { self.seen.withLock { $0[key] } }
    }

    /// Calls ``Back`` and publishes ``Noted``.
    actor Front: ServiceActor {
        static let name: ServiceName = "front"
        static let dependencies: [ServiceName] = ["back"]
        private let sightings: Sightings
        private var environment: ServiceEnvironment?

        init(_ sightings: Sightings) { self.sightings = sightings }

        func start(_ environment: ServiceEnvironment) async throws { self.environment = environment }

        nonisolated func registerHandlers(_ handlers: inout RequestHandlers<Front>) {
            handlers.on(Outer.self) { front, request in
                front.sightings.record("outer")
                guard let environment = front.environment else { throw Refused() }
                let inner = try await environment.requests.send(Inner(fail: request.fail))
                try await environment.bus.publish(Noted())
                return inner + 1
            }
        }
    }

    /// Starts a span of its own with swift-distributed-tracing, and logs through its logger.
    actor Back: ServiceActor {
        static let name: ServiceName = "back"
        private let sightings: Sightings
        private let tracer: any Tracer
        private var environment: ServiceEnvironment?

        init(_ sightings: Sightings, tracer: any Tracer) {
            self.sightings = sightings
            self.tracer = tracer
        }

        func start(_ environment: ServiceEnvironment) async throws { self.environment = environment }

        nonisolated func registerHandlers(_ handlers: inout RequestHandlers<Back>) {
            handlers.on(Inner.self) { back, request in
                back.sightings.record("inner")
                back.environment?.logger.info("handling inner")
                back.tracer.withSpan("db query") { _ in back.sightings.record("query") }
                if request.fail { throw Refused() }
                return 1
            }
        }
    }
}
