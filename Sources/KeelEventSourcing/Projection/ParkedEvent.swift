/// An event a projection could not handle, parked so that the runner could go on.
///
/// ``ProjectionRunner`` records it, in the same atomic commit that moves the checkpoint past
/// the event, when every attempt the ``ProjectionRunner/Configuration/maxAttempts`` allows has
/// thrown and the policy is ``ProjectionRunner/PoisonEventPolicy/park``. List them with
/// ``ProjectionRunner/parkedEvents()`` and retry one with
/// ``ProjectionRunner/retryParkedEvent(at:)`` once the cause is fixed.
///
/// A parked event is stored in the projection's ``ProjectionStore``, as JSON whose keys are the
/// property names; stores written when this type was called `DeadLetter` read unchanged. It is not
/// the event bus's `DeadLetter` (module Keel), an event held in memory after a subscriber's
/// handler kept failing: a parked event is durable and belongs to one projection.
public struct ParkedEvent: Sendable, Hashable, Codable {
    /// The event's global position.
    public var position: UInt64
    /// The event's stream.
    public var stream: StreamID
    /// The event's version in its stream.
    public var version: UInt64
    /// The event's type name.
    public var eventType: String
    /// The last error the projection threw, in words.
    public var error: String
    /// How many times the projection was called with the event.
    public var attempts: Int

    /// Creates a parked event.
    /// - Parameters:
    ///   - position: The event's global position.
    ///   - stream: The event's stream.
    ///   - version: The event's version in the stream.
    ///   - eventType: The event's type name.
    ///   - error: The last error, in words.
    ///   - attempts: How many times handling was tried.
    public init(position: UInt64, stream: StreamID, version: UInt64, eventType: String, error: String, attempts: Int) {
        self.position = position
        self.stream = stream
        self.version = version
        self.eventType = eventType
        self.error = error
        self.attempts = attempts
    }
}
