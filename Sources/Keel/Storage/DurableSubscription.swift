import Foundation
import KeelCore
import KeelEventSourcing

/// A subscription to durable events that survives restarts: made by
/// ``ServiceEnvironment/subscribeDurably(to:name:configuration:_:)``.
///
/// It delivers every event of its type that a service declaring the type in
/// ``ServiceActor/publishes`` appended — events published with
/// ``ServiceEnvironment/publishDurably(_:)`` and the events its aggregates append, which are
/// publications in the same append as the aggregate's state change — at least once, in the
/// store's global order. Events of services that do not declare the type are not its, whatever
/// their type name. Its checkpoint and its failed deliveries live in the subscribing
/// service's own storage: after a restart it goes on after the last delivered event. A handler
/// that keeps failing parks the event as a failed publication (see
/// ``/KeelEventSourcing/ProjectionRunner/Configuration``) and the subscription goes on;
/// ``resubmit(position:)`` delivers it again.
///
/// The host stops the subscription before it stops the subscribing service.
public struct DurableSubscription: Sendable {
    /// The subscription's name, unique within its service.
    public let name: String
    /// The runner that delivers the events (a projection whose "read model" is the handler's
    /// effect and whose checkpoint is the subscription's).
    public let runner: ProjectionRunner
    /// The events of the subscription's type, in the namespaces of the services that declare it.
    let view: FilteredEventView

    /// Where delivery stands.
    /// - Returns: The first position not yet delivered, how many positions of the log are after
    ///   it, and the failed publications.
    /// - Throws: ``/KeelEventSourcing/ProjectionError`` when the subscription's storage cannot
    ///   be read.
    public func status() async throws(ProjectionError) -> DurableSubscriptionStatus {
        let checkpoint = try await self.runner.checkpoint()
        let lag = try await self.runner.lag()
        let failed = try await self.runner.parkedEvents()
        return DurableSubscriptionStatus(deliveredUpTo: checkpoint, positionsBehind: lag, failed: failed)
    }

    /// Each publication of the subscription's type at or after `position`, with its state.
    /// - Parameters:
    ///   - position: The first position to list.
    ///   - limit: The most publications to list.
    /// - Returns: The publications, oldest first.
    /// - Throws: ``/KeelEventSourcing/ProjectionError`` or ``/KeelEventSourcing/EventStoreError``.
    public func publications(from position: UInt64 = 0, limit: Int = 100) async throws -> [Publication] {
        let status = try await self.status()
        let failed = Set(status.failed.map(\.position))
        let events = try await self.view.readAll(from: position, limit: limit)
        return events.map { event in
            let state: Publication.State =
                failed.contains(event.position)
                ? .failed : event.position < status.deliveredUpTo ? .completed : .pending
            return Publication(position: event.position, stream: event.stream, eventType: event.type, state: state)
        }
    }

    /// Delivers a failed publication again; on success it leaves the failed list.
    /// - Parameter position: The failed publication's position.
    /// - Returns: Whether the handler succeeded this time.
    /// - Throws: ``/KeelEventSourcing/ProjectionError`` (``/KeelEventSourcing/ProjectionError/Code/parkedEventNotFound``
    ///   when nothing failed at `position`).
    @discardableResult
    public func resubmit(position: UInt64) async throws(ProjectionError) -> Bool {
        try await self.runner.retryParkedEvent(at: position)
    }

    /// Waits until every publication up to `position` has been delivered (or parked as failed).
    /// - Parameter position: A publication's position, such as from
    ///   ``ServiceEnvironment/publishDurably(_:)``.
    /// - Throws: `CancellationError`, or ``/KeelEventSourcing/ProjectionError`` when the
    ///   subscription stops first.
    public func waitUntilDelivered(through position: UInt64) async throws {
        try await self.runner.waitUntilCaughtUp(to: position)
    }
}

/// Where a ``DurableSubscription`` stands.
public struct DurableSubscriptionStatus: Sendable, Hashable {
    /// The first global position not yet delivered.
    public var deliveredUpTo: UInt64
    /// How many positions of the log lie at or after it (events of every type, so an upper bound
    /// on the pending publications).
    public var positionsBehind: UInt64
    /// The publications whose delivery failed, parked with their error.
    public var failed: [ParkedEvent]
}

/// One durable publication, as a subscription sees it.
public struct Publication: Sendable, Hashable {
    /// Where a publication stands for one subscription.
    public enum State: Sendable, Hashable {
        /// Not delivered yet.
        case pending
        /// Delivered: the handler returned.
        case completed
        /// The handler kept failing; ``DurableSubscription/resubmit(position:)`` delivers it again.
        case failed
    }

    /// The event's global position.
    public var position: UInt64
    /// The stream it was appended to (with the publishing service's namespace in front).
    public var stream: StreamID
    /// The event's type name.
    public var eventType: String
    /// Its state for this subscription.
    public var state: State
}

/// Delivers the events of one type to a handler, as a projection whose effect is the handler's.
///
/// The handler runs in the publisher's trace, as a bus subscriber's does: the context bound is a
/// child of the span that published the event (from the event's metadata), with its correlation
/// id and the event's id as causation; an event published outside any trace gets a new trace,
/// still caused by the event.
struct DeliveryProjection<E: DomainEvent>: Projection {
    let name: String
    let serializer: EventSerializer
    /// The source of the handler's span ids.
    let random: RandomSource
    let handler: @Sendable (E, RecordedEvent) async throws -> Void

    func apply(_ event: RecordedEvent, to transaction: inout ReadModelTransaction) async throws {
        guard event.type == E.eventType else { return }
        let decoded = try self.serializer.decode(event, as: E.self)
        try await TraceContext.$current.withValue(Self.handlerContext(of: event.metadata, using: self.random)) {
            try await self.handler(decoded, event)
        }
    }

    /// The context a handler of an event with `metadata` runs with.
    static func handlerContext(of metadata: EventMetadata, using random: RandomSource) -> TraceContext {
        let causation = LazyID(.uuid(metadata.id.high, metadata.id.low))
        var context: TraceContext
        if let traceID = metadata.traceID {
            context = TraceContext(
                traceID: traceID,
                spanID: .random(using: random),
                parentSpanID: metadata.spanID,
                correlation: metadata.correlationID.map(LazyID.init),
                causation: causation
            )
        } else {
            context = TraceContext.makeRoot(using: random, correlationID: metadata.correlationID)
            context.causation = causation
        }
        context.isInHandler = true
        return context
    }
}
