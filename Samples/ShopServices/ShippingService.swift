import Keel
import KeelCore
import KeelEventSourcing

/// A stand-in for a courier's booking API, outside the process: the shipping service reaches it,
/// and the program makes it misbehave on command, as it does the payment gateway.
public actor Courier {
    /// How the courier answers a booking.
    public enum Behaviour: Sendable, CustomStringConvertible {
        /// Every parcel is collected.
        case reliable
        /// Parcels holding this product are refused; others are collected.
        case refuses(sku: String)
        /// The booking is taken and never answered.
        case unresponsive

        /// The behaviour in a few words.
        public var description: String {
            switch self {
            case .reliable: "reliable"
            case .refuses(let sku): "refuses parcels with a \(sku)"
            case .unresponsive: "unresponsive"
            }
        }
    }

    /// What the courier said to a booking.
    package enum Answer: Sendable, Equatable {
        /// Collected, with this tracking number.
        case collected(trackingNumber: String)
        /// Refused, for this reason.
        case refused(reason: String)
        /// No answer (and none will come).
        case none
    }

    private var behaviour = Behaviour.reliable
    /// Parcels collected so far; the next tracking number is one more.
    private var collected = 0
    /// The answer given to each delivery already booked: a booking made again gets the same one.
    private var answers: [String: Answer] = [:]
    /// Bookings received so far, including repeated ones.
    package private(set) var bookings = 0
    /// Callers of ``waitForBookings(_:)``, with the count each waits for.
    private var waiters: [(count: Int, continuation: CheckedContinuation<Void, Never>)] = []

    /// Creates a reliable courier.
    public init() {}

    /// Changes how the courier answers from the next booking on.
    /// - Parameter behaviour: The new behaviour.
    public func behave(_ behaviour: Behaviour) {
        self.behaviour = behaviour
    }

    /// Books the collection of the parcel of delivery `delivery`; booking it again answers as the
    /// first time.
    package func book(_ delivery: String, lines: [OrderLine]) -> Answer {
        self.bookings += 1
        let ready = self.waiters.filter { $0.count <= self.bookings }
        self.waiters.removeAll { $0.count <= self.bookings }
        for waiter in ready { waiter.continuation.resume() }
        if let answer = self.answers[delivery] { return answer }
        let answer: Answer
        switch self.behaviour {
        case .reliable:
            self.collected += 1
            answer = .collected(trackingNumber: "KC\(1000 + self.collected)")
        case .refuses(let sku) where lines.contains(where: { $0.sku == sku }):
            answer = .refused(reason: "it does not carry a \(sku)")
        case .refuses:
            self.collected += 1
            answer = .collected(trackingNumber: "KC\(1000 + self.collected)")
        case .unresponsive:
            answer = .none
        }
        self.answers[delivery] = answer
        return answer
    }

    /// Suspends until the courier has received `count` bookings (for tests; not cancellable).
    package func waitForBookings(_ count: Int) async {
        guard self.bookings < count else { return }
        await withCheckedContinuation { self.waiters.append((count, $0)) }
    }
}

/// Books couriers for parcels, and tells the shop what they said.
///
/// It takes part in the delivery choreography only through events: it answers a ``BookCourier``
/// request with nothing but its success, and publishes the courier's answer durably as
/// `shipment.booked` or `shipment.refused`, for the order service's delivery process manager.
package actor ShippingService: ServiceActor {
    package static let name: ServiceName = "shipping"
    package static let publishes: [any DomainEvent.Type] = [ShipmentBooked.self, ShipmentRefused.self]

    /// The courier's booking API.
    private let courier: Courier
    /// Where the service tells what it does.
    private let say: Narrator

    /// Creates the service.
    /// - Parameters:
    ///   - courier: The courier it books.
    ///   - narrator: Where the service tells what it does.
    package init(courier: Courier, narrator: Narrator = .standardOutput) {
        self.courier = courier
        self.say = narrator
    }

    package nonisolated func registerHandlers(_ handlers: inout RequestHandlers<ShippingService>) {
        handlers.on(BookCourier.self) { service, request, environment in
            try await service.book(request, environment)
        }
    }

    /// Books the courier, and publishes its answer, if any. A request delivered again (the process
    /// manager's effects are at least once) gets the courier's first answer, published again; the
    /// process manager ignores the copy.
    private func book(_ request: BookCourier, _ environment: ServiceEnvironment) async throws {
        say(Self.name, "asks the courier to collect order #\(request.orderID) (\(describe(request.lines)))")
        switch await self.courier.book(request.delivery, lines: request.lines) {
        case .collected(let trackingNumber):
            say(Self.name, "the courier collects it: tracking number \(trackingNumber)")
            try await environment.publishDurably(
                ShipmentBooked(delivery: request.delivery, trackingNumber: trackingNumber)
            )
        case .refused(let reason):
            say(Self.name, "the courier refuses it: \(reason)")
            try await environment.publishDurably(ShipmentRefused(delivery: request.delivery, reason: reason))
        case .none:
            say(Self.name, "the courier does not answer")
        }
    }

    package func stop() async throws {
        say(Self.name, "stopped")
    }
}
