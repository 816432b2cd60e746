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

    /// An in-memory tracer that propagates W3C trace context, as swift-otel's does: hex ids, and
    /// `traceparent` in and out.
    struct W3CTracer: Tracer {
        let base: InMemoryTracer

        init() {
            let next = Atomic<UInt64>(0)
            self.base = InMemoryTracer(
                idGenerator: .init(
                    nextTraceID: {
                        let value = next.add(1, ordering: .relaxed).newValue
                        return TraceID(high: 0xAB, low: value).description
                    },
                    nextSpanID: { SpanID(rawValue: 0xC000 + next.add(1, ordering: .relaxed).newValue).description }
                )
            )
        }

        func startSpan<Instant: TracerInstant>(
            _ operationName: String,
            context: @autoclosure () -> InstrumentationContext,
            ofKind kind: SpanKind,
            at instant: @autoclosure () -> Instant,
            function: String,
            file fileID: String,
            line: UInt
        ) -> InMemorySpan {
            self.base.startSpan(
                operationName,
                context: context(),
                ofKind: kind,
                at: instant(),
                function: function,
                file: fileID,
                line: line
            )
        }

        func forceFlush() {}

        func inject<Carrier, Inject: Injector>(
            _ context: InstrumentationContext,
            into carrier: inout Carrier,
            using injector: Inject
        ) where Inject.Carrier == Carrier {
            guard let span = context.inMemorySpanContext else { return }
            injector.inject("00-\(span.traceID)-\(span.spanID)-01", forKey: "traceparent", into: &carrier)
        }

        func extract<Carrier, Extract: Extractor>(
            _ carrier: Carrier,
            into context: inout InstrumentationContext,
            using extractor: Extract
        ) where Extract.Carrier == Carrier {
            guard let header = extractor.extract(key: "traceparent", from: carrier),
                let remote = TraceContext(traceparent: header)
            else { return }
            context.inMemorySpanContext = InMemorySpanContext(
                traceID: remote.traceID.description,
                spanID: remote.spanID.description,
                parentSpanID: nil
            )
        }
    }
}
