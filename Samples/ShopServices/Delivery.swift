import Keel
import KeelEventSourcing
import KeelSagas

// Shipping an order is a choreography: nobody calls the services in turn. The order service
// publishes `order.ready-to-ship`; the delivery process manager (in the order service) reacts by
// booking a courier; the shipping service answers with `shipment.booked` or `shipment.refused`, or,
// when the courier never answers, the process manager's timeout fires. A refused or unanswered
// parcel is compensated: the stock goes back on the shelf, the payment is refunded, and once the
// payment service says `payment.refunded` the order is cancelled. Every event here is durable
// (published through the publishing service's outbox, delivered at least once by durable
// subscriptions), and the process manager's state, timeouts and effects live in the order service's
// storage, so a delivery survives a restart of the shop.

// MARK: Requests

/// Asks the order service to ship one of its orders: it publishes ``OrderReadyToShip`` and returns;
/// what becomes of the parcel arrives later, as ``OrderShipped`` or ``OrderCancelled``.
///
/// Shipping an order twice changes nothing: the second request publishes nothing and answers
/// `false`.
public struct ShipOrder: ServiceRequest {
    /// Whether this request started the order's delivery.
    public typealias Response = Bool
    /// The order's id.
    public var orderID: Int

    /// Asks to ship order `orderID`.
    /// - Parameter orderID: The order's id.
    public init(orderID: Int) {
        self.orderID = orderID
    }
}

/// Asks the shipping service to have a courier collect a parcel. The answer comes later, as
/// ``ShipmentBooked`` or ``ShipmentRefused`` (or never, when the courier does not answer).
package struct BookCourier: ServiceRequest {
    package typealias Response = Done
    /// The delivery's key (``OrderReadyToShip/delivery``).
    package var delivery: String
    /// The order's id.
    package var orderID: Int
    /// What is in the parcel.
    package var lines: [OrderLine]
}

/// Asks the payment service to give a charge back: the compensation of ``ChargePayment`` once the
/// order cannot be served. Refunding a receipt twice refunds it once; each call publishes
/// ``PaymentRefunded``.
package struct RefundPayment: ServiceRequest {
    package typealias Response = Done
    /// The delivery's key, which the refund event carries back.
    package var delivery: String
    /// The gateway's receipt of the charge.
    package var paymentID: Int
    /// How much was charged, in cents.
    package var amountCents: Int
}

// MARK: Events

/// Published durably by the order service when an order is to be shipped: it starts a delivery.
package struct OrderReadyToShip: DomainEvent {
    package static let eventType = "order.ready-to-ship"
    /// The delivery's key, unique across runs of the shop: `order-<order id>-<the second the order
    /// service started>`. The process manager's requests and events carry it as their correlation id.
    package var delivery: String
    package var orderID: Int
    package var userID: Int
    package var lines: [OrderLine]
    package var reservationID: Int
    package var paymentID: Int
    package var totalCents: Int
}

/// Published durably by the shipping service when a courier took a parcel.
package struct ShipmentBooked: DomainEvent {
    package static let eventType = "shipment.booked"
    package var delivery: String
    /// The courier's tracking number.
    package var trackingNumber: String
}

/// Published durably by the shipping service when the courier would not take a parcel.
package struct ShipmentRefused: DomainEvent {
    package static let eventType = "shipment.refused"
    package var delivery: String
    /// Why, in the courier's words.
    package var reason: String
}

/// Published durably by the payment service when it has refunded a charge.
package struct PaymentRefunded: DomainEvent {
    package static let eventType = "payment.refunded"
    package var delivery: String
    package var paymentID: Int
    package var amountCents: Int
}

/// Published durably by the delivery process manager when the order is on its way.
package struct OrderShipped: DomainEvent {
    package static let eventType = "order.shipped"
    package var orderID: Int
    package var userID: Int
    package var trackingNumber: String
}

/// Published durably by the delivery process manager when the order could not be shipped: its
/// stock is back on the shelf and the customer has their money back.
package struct OrderCancelled: DomainEvent {
    package static let eventType = "order.cancelled"
    package var orderID: Int
    package var userID: Int
    package var reason: String
    package var refundedCents: Int
}

// MARK: The process manager

/// Ships an order, or undoes it: the choreography's coordinator, in the order service.
///
/// One instance per delivery, keyed by ``OrderReadyToShip/delivery``. It books a courier and gives
/// the courier ``courierTimeout`` to answer; when the courier refuses the parcel or does not
/// answer in time, it compensates what the order's saga did (releases the stock, refunds the
/// payment) and cancels the order once the refund is confirmed. An answer that comes after the
/// instance moved on (a late booking after the timeout) is ignored; every effect is an at-least-once
/// request to an idempotent handler.
package struct DeliveryProcess: ProcessManager {
    package struct State: Codable, Sendable, Equatable {
        package enum Step: String, Codable, Sendable {
            /// The courier has been asked; no answer yet.
            case booking
            /// The order cannot be shipped; the refund has been asked for.
            case refunding
        }

        package var orderID: Int
        package var userID: Int
        package var totalCents: Int
        /// The stock the order's saga reserved, released when the order cannot be shipped.
        package var reservationID: Int
        /// The charge of the order's saga, refunded when the order cannot be shipped.
        package var paymentID: Int
        package var step: Step
        /// Why the order is being cancelled, once it is.
        package var cancelReason: String?
    }

    package static let name = "delivery"

    /// How long the courier has to answer a booking.
    package var courierTimeout: Duration

    /// Creates the process manager.
    /// - Parameter courierTimeout: How long the courier has to answer a booking.
    package init(courierTimeout: Duration) {
        self.courierTimeout = courierTimeout
    }

    package func registerHandlers(_ handlers: inout ProcessHandlers<Self>) {
        handlers.sends(BookCourier.self)
        handlers.sends(ReleaseStock.self)
        handlers.sends(RefundPayment.self)
        handlers.publishes(OrderShipped.self)
        handlers.publishes(OrderCancelled.self)

        handlers.on(OrderReadyToShip.self, correlatedBy: \.delivery) { event, state, context in
            guard state == nil else { return }
            state = State(
                orderID: event.orderID,
                userID: event.userID,
                totalCents: event.totalCents,
                reservationID: event.reservationID,
                paymentID: event.paymentID,
                step: .booking
            )
            try context.send(BookCourier(delivery: event.delivery, orderID: event.orderID, lines: event.lines))
            try context.schedule("courier", after: self.courierTimeout)
        }
        handlers.on(ShipmentBooked.self, correlatedBy: \.delivery) { event, state, context in
            guard let delivery = state, delivery.step == .booking else { return }
            context.cancelTimeout("courier")
            try context.publish(
                OrderShipped(orderID: delivery.orderID, userID: delivery.userID, trackingNumber: event.trackingNumber)
            )
            context.complete()
        }
        handlers.on(ShipmentRefused.self, correlatedBy: \.delivery) { event, state, context in
            guard state?.step == .booking else { return }
            context.cancelTimeout("courier")
            try Self.compensate(&state, context: &context, reason: "the courier refused the parcel: \(event.reason)")
        }
        handlers.on(PaymentRefunded.self, correlatedBy: \.delivery) { event, state, context in
            guard let delivery = state, delivery.step == .refunding else { return }
            try context.publish(
                OrderCancelled(
                    orderID: delivery.orderID,
                    userID: delivery.userID,
                    reason: delivery.cancelReason ?? "cancelled",
                    refundedCents: event.amountCents
                )
            )
            context.complete()
        }
    }

    package func handleTimeout(_ timeout: ProcessTimeout, state: inout State?, context: inout ProcessContext) throws {
        guard timeout.name == "courier", state?.step == .booking else { return }
        try Self.compensate(
            &state,
            context: &context,
            reason: "no courier answered within \(milliseconds(self.courierTimeout))"
        )
    }

    /// Undoes the order's saga: the stock back on the shelf first, then the refund, whose
    /// confirmation cancels the order.
    private static func compensate(_ state: inout State?, context: inout ProcessContext, reason: String) throws {
        guard var delivery = state else { return }
        delivery.step = .refunding
        delivery.cancelReason = reason
        state = delivery
        try context.send(ReleaseStock(reservationID: delivery.reservationID))
        try context.send(
            RefundPayment(
                delivery: context.correlationKey,
                paymentID: delivery.paymentID,
                amountCents: delivery.totalCents
            )
        )
    }
}
