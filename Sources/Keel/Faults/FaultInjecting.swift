import KeelCore

/// What a host asks before each attempt of a request and each delivery of an event, when a fault
/// injector was configured (KeelTesting's `FaultInjector`, through
/// `ServiceHost.Configuration.faultInjector`).
///
/// Keel only carries out the answer; the rules, their matching and their random draws are the
/// injector's. A host without an injector pays one `nil` check per call and per delivery.
///
/// Every method is called synchronously on the path of a call or a publication, so it must be
/// short and must never suspend or call user code under a lock of its own.
package protocol FaultInjecting: AnyObject, Sendable {
    /// Binds the injector to the host's random source, once, when the host is made: every random
    /// draw of the injector derives from `random`'s seed.
    /// - Parameter random: The host's random source.
    func attach(to random: RandomSource)

    /// Whether any rule for requests is in force. When `false`, the router may call handlers on
    /// its fast path without asking ``requestFault(for:service:)``; a rule added later applies
    /// from the next call on.
    var isInjectingRequestFaults: Bool { get }

    /// Whether any rule for deliveries is in force. When `false`, the bus delivers without asking
    /// ``deliveryFault(topic:subscription:name:)``.
    var isInjectingDeliveryFaults: Bool { get }

    /// The fault to inject into one attempt of a request, if any.
    ///
    /// Called once per attempt (a retry on the route asks again), in the attempt's task, after an
    /// instance was chosen and before its handler is called.
    /// - Parameters:
    ///   - request: The request's type.
    ///   - service: The service that handles it.
    /// - Returns: The fault, or `nil` to call the handler as usual.
    func requestFault(for request: any ServiceRequest.Type, service: ServiceName) -> RequestFaultAction?

    /// The fault to inject into the delivery of one published event to one subscription, if any.
    ///
    /// Called once per matching subscription, in the publisher's task, in subscription order,
    /// before the event is offered to the subscription's mailbox. Replayed dead letters are not
    /// asked about.
    /// - Parameters:
    ///   - topic: The event's topic.
    ///   - subscription: The subscription's id.
    ///   - name: The subscription's name.
    /// - Returns: The fault, or `nil` to deliver as usual.
    func deliveryFault(topic: String, subscription: SubscriptionID, name: String) -> DeliveryFaultAction?
}

/// A fault injected into one attempt of a request.
package enum RequestFaultAction: Sendable {
    /// Waits `after` on the host's clock, then fails the attempt as if its handler had thrown
    /// `error`.
    case fail(any Error, after: Duration)
    /// Waits on the host's clock, then calls the handler.
    case delay(Duration)
    /// Never answers: the attempt waits until it is cancelled (by the caller, its deadline or a
    /// timeout on the route).
    case timeout
}

/// A fault injected into the delivery of one event to one subscription.
package enum DeliveryFaultAction: Sendable {
    /// The subscription never receives the event; the drop is counted as an overflow drop is.
    case drop
    /// The subscription's task waits on the bus's clock before handling the event.
    case delay(Duration)
    /// The subscription handles the event twice, with the same envelope.
    case duplicate
}
