import Keel
import KeelCore
import KeelTesting
import Synchronization
import Testing

/// What a handler saw: Keel's context, and the telemetry's own "current span".
private struct Seen: Sendable, Hashable {
    var context: TraceContext?
    var active: SpanID?

    static var now: Seen { Seen(context: TraceContext.current, active: ReassigningTelemetry.activeSpan) }
}

private final class Sightings: Sendable {
    private let seen = Mutex<[String: [Seen]]>([:])

    func record(_ key: String) {
        let now = Seen.now
        self.seen.withLock { $0[key, default: []].append(now) }
    }

    /// What the handler saw the first time.
    subscript(key: String) -> Seen? { self.seen.withLock { $0[key]?.first } }

    /// What the handler saw each time.
    func all(_ key: String) -> [Seen] { self.seen.withLock { $0[key] ?? [] } }
}

private struct Noted: Event {
    static let topic = "test.noted"
}

private struct Outer: ServiceRequest {
    typealias Response = Int
}

private struct Inner: ServiceRequest {
    typealias Response = Int
}

private actor Front: ServiceActor {
    static let name: ServiceName = "front"
    static let dependencies: [ServiceName] = ["back"]
    private let sightings: Sightings
    private var environment: ServiceEnvironment?

    init(_ sightings: Sightings) { self.sightings = sightings }

    func start(_ environment: ServiceEnvironment) async throws { self.environment = environment }

    nonisolated func registerHandlers(_ handlers: inout RequestHandlers<Front>) {
        handlers.on(Outer.self) { front, _ in
            front.sightings.record("outer")
            let requests = try #require(front.environment?.requests)
            let inner = try await requests.send(Inner())
            try await front.environment?.bus.publish(Noted())
            return inner + 1
        }
    }
}

private actor Back: ServiceActor {
    static let name: ServiceName = "back"
    private let sightings: Sightings

    init(_ sightings: Sightings) { self.sightings = sightings }

    nonisolated func registerHandlers(_ handlers: inout RequestHandlers<Back>) {
        handlers.on(Inner.self) { back, _ in
            back.sightings.record("inner")
            return 1
        }
    }
}

/// A telemetry whose tracer assigns its own ids: Keel runs each handler under the ids of its
/// span, and binds the telemetry's own current span around it.
@Suite("Tracer-assigned ids", .timeLimit(.minutes(2)))
struct TracerAssignedIDsTests {
    @Test("requests, the bus and withSpan run under the span's ids, with the span bound as current")
    func handlersRunUnderTheSpansIDs() async throws {
        let telemetry = ReassigningTelemetry()
        let sightings = Sightings()
        let host = ServiceHost(
            configuration: TestHost.defaultConfiguration,
            clock: TestClock(),
            telemetry: telemetry,
            random: RandomSource(seed: 21)
        )
        try await host.register(Front(sightings))
        try await host.register(Back(sightings))
        let delivered = Sightings.Handshake()
        try host.bus.subscribe(to: Noted.self, name: "watcher") { _, envelope in
            sightings.record("event")
            delivered.arrive(envelope)
        }
        try await host.start()
        #expect(try await host.client.send(Outer()) == 2)
        let envelope = await delivered.wait()
        // The slow path (a deadline) binds the span too.
        #expect(try await host.client.send(Inner(), timeout: .seconds(5)) == 1)
        await host.shutdown()

        let spans = telemetry.spans
        func assigned(_ name: String) throws -> TraceContext {
            try #require(spans.first { $0.name == name }?.assigned)
        }
        let outerSpan = try assigned("front.Outer")
        let innerSpan = try #require(spans.filter { $0.name == "back.Inner" }.first)
        let publishSpan = try #require(spans.first { $0.name.hasPrefix("publish") })
        let consumerSpan = try #require(spans.first { $0.name.hasPrefix("handle") })

        // Each handler runs under its span's ids, with that span bound as the telemetry's own.
        let outer = try #require(sightings["outer"])
        #expect(outer.context?.traceID == ReassigningTelemetry.traceID)
        #expect(outer.context?.spanID == outerSpan.spanID)
        #expect(outer.active == outerSpan.spanID)
        let inner = try #require(sightings["inner"])
        #expect(inner.active == innerSpan.assigned.spanID)
        // The children were started under the parent's assigned ids, not Keel's own.
        #expect(innerSpan.given.parentSpanID == outerSpan.spanID)
        #expect(innerSpan.given.traceID == ReassigningTelemetry.traceID)
        #expect(publishSpan.given.parentSpanID == outerSpan.spanID)
        // The envelope carries the producer span's ids; the consumer span is its child.
        #expect(envelope.traceID == ReassigningTelemetry.traceID)
        #expect(envelope.spanID == publishSpan.assigned.spanID)
        #expect(consumerSpan.given.parentSpanID == publishSpan.assigned.spanID)
        let event = try #require(sightings["event"])
        #expect(event.context?.spanID == consumerSpan.assigned.spanID)
        #expect(event.active == consumerSpan.assigned.spanID)
        // Correlation and causation stay Keel's: the correlation follows the trace it started.
        #expect(outer.context?.correlationID == outerSpan.correlationID)
        // The request with a deadline went through the slow path, under its own span.
        let timed = try #require(spans.filter { $0.name == "back.Inner" }.last)
        #expect(timed.assigned.spanID != innerSpan.assigned.spanID)
        #expect(sightings.all("inner").map(\.active) == [innerSpan.assigned.spanID, timed.assigned.spanID])
    }

    @Test("withSpan binds the span's ids and its own current span for the body")
    func withSpanAdopts() async throws {
        let telemetry = ReassigningTelemetry()
        let seen = await telemetry.withSpan("work", random: RandomSource(seed: 2)) { _ in Seen.now }
        let span = try #require(telemetry.spans.first)
        #expect(seen.context == span.assigned)
        #expect(seen.active == span.assigned.spanID)
        #expect(Seen.now == Seen(context: nil, active: nil), "nothing stays bound after the body")
    }
}

extension Sightings {
    /// Hands the first delivered envelope to a waiting test.
    final class Handshake: Sendable {
        private let state = Mutex<(envelope: EventEnvelope?, waiter: CheckedContinuation<EventEnvelope, Never>?)>(
            (nil, nil)
        )

        func arrive(_ envelope: EventEnvelope) {
            let waiter = self.state.withLock { state -> CheckedContinuation<EventEnvelope, Never>? in
                guard state.envelope == nil else { return nil }
                state.envelope = envelope
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume(returning: envelope)
        }

        func wait() async -> EventEnvelope {
            await withCheckedContinuation { continuation in
                let ready = self.state.withLock { state -> EventEnvelope? in
                    if let envelope = state.envelope { return envelope }
                    state.waiter = continuation
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
        }
    }
}
