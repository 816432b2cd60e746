/// Why a host refused to register, start or stop.
public struct HostError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure. New codes may be added; switch with a `default`.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case missingDependency, dependencyCycle, conflictingRegistration, duplicateHandler
            case startFailed, stopFailed, invalidState, undeclaredPublication, duplicateSubscription
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// A service depends on a service that is not registered. ``HostError/services`` holds
        /// the dependent service, then the missing one.
        public static let missingDependency = Code(.missingDependency)
        /// Dependencies form a cycle. ``HostError/services`` lists it in order, the first service
        /// repeated at the end.
        public static let dependencyCycle = Code(.dependencyCycle)
        /// Two different service types share a name, or two services handle one request type.
        public static let conflictingRegistration = Code(.conflictingRegistration)
        /// A service declared two handlers for one request type.
        public static let duplicateHandler = Code(.duplicateHandler)
        /// A service's `start` threw; what had started was stopped in reverse order.
        /// ``HostError/underlying`` is what it threw.
        public static let startFailed = Code(.startFailed)
        /// A service's `stop` threw; the host went on stopping the others.
        public static let stopFailed = Code(.stopFailed)
        /// The operation is not allowed in the host's current state (registering after start,
        /// starting twice).
        public static let invalidState = Code(.invalidState)
        /// A durable event crosses a service boundary without being declared: a service
        /// subscribes durably to a type that no registered service lists in its
        /// ``ServiceActor/publishes``, or publishes durably a type that it does not list there.
        /// ``HostError/services`` holds the service that subscribed or published.
        public static let undeclaredPublication = Code(.undeclaredPublication)
        /// A service subscribed durably under a name one of its running durable subscriptions
        /// already has: the two would share one checkpoint. ``HostError/services`` holds the
        /// service.
        public static let duplicateSubscription = Code(.duplicateSubscription)

        /// The code's name.
        public var description: String { self.base.rawValue }
    }

    /// What kind of failure.
    public var code: Code
    /// The services concerned, in the order the code describes.
    public var services: [ServiceName]
    /// An explanation that names them.
    public var message: String
    /// The cause, where there is one.
    public var underlying: (any Error)?

    /// Creates an error.
    /// - Parameters:
    ///   - code: What kind of failure.
    ///   - services: The services concerned.
    ///   - message: An explanation.
    ///   - underlying: The cause.
    public init(code: Code, services: [ServiceName], message: String, underlying: (any Error)? = nil) {
        self.code = code
        self.services = services
        self.message = message
        self.underlying = underlying
    }

    /// `HostError(code): message (cause)`.
    public var description: String {
        var text = "HostError(\(self.code)): \(self.message)"
        if let underlying { text += " (cause: \(underlying))" }
        return text
    }
}
