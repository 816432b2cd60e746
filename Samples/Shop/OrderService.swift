import Keel

/// Why the order service refused an order, in the shop's own words.
enum OrderError: Error, CustomStringConvertible {
    case emptyOrder
    case unknownUser(id: Int)
    case unknownProduct(sku: String)
    case outOfStock(sku: String, requested: Int, available: Int)
    /// Another service failed for a reason that is not the customer's (a deadline, a shutdown…).
    case upstream(RequestError)

    var description: String {
        switch self {
        case .emptyOrder: "the order has no lines"
        case .unknownUser(let id): "there is no customer with id \(id)"
        case .unknownProduct(let sku): "the shop does not sell \"\(sku)\""
        case .outOfStock(let sku, let requested, let available):
            "\(requested) × \(sku) requested, but only \(available) left in stock"
        case .upstream(let error): "another service failed: \(error)"
        }
    }
}

/// Places orders: validates the customer, prices the lines, reserves the stock, records the order
/// and tells everyone who listens.
///
/// It reaches the other services only by request, through `environment.send`, and only those it
/// declares in `dependencies`; a request to any other service fails with `undeclaredDependency`.
actor OrderService: ServiceActor {
    static let name: ServiceName = "order"
    static let dependencies: [ServiceName] = [UserService.name, CatalogService.name, InventoryService.name]

    /// The orders placed so far, by id.
    private var orders: [Int: Order] = [:]

    nonisolated func registerHandlers(_ handlers: inout RequestHandlers<OrderService>) {
        // The three-argument form hands the handler the environment the service was started with.
        handlers.on(PlaceOrder.self) { service, request, environment in
            try await service.place(request, in: environment)
        }
    }

    func stop() async throws {
        say(Self.name, "stopped (\(self.orders.count) orders on record)")
    }

    /// Places an order, or publishes `order.rejected` and throws an `OrderError` saying why not.
    private func place(_ request: PlaceOrder, in environment: ServiceEnvironment) async throws(OrderError) -> Order {
        say(Self.name, "customer \(request.userID) orders \(describe(request.lines))")
        do {
            return try await self.place(request, environment: environment)
        } catch {
            say(Self.name, "refused: \(error)")
            do {
                try await environment.publish(OrderRejected(userID: request.userID, reason: error.description))
            } catch {
                say(Self.name, "could not publish \(OrderRejected.topic): \(error)")
            }
            throw error
        }
    }

    private func place(_ request: PlaceOrder, environment: ServiceEnvironment) async throws(OrderError) -> Order {
        guard !request.lines.isEmpty else { throw .emptyOrder }

        // 1. Validate the customer. The user service throws `UserError`; it reaches us as the
        //    `underlying` cause of a `RequestError` with code `handlerFailed`.
        do {
            _ = try await environment.send(GetUser(id: request.userID))
        } catch {
            throw Self.translate(error)
        }

        // 2. Price every line from the catalog.
        var items: [Order.Item] = []
        for line in request.lines {
            do {
                let product = try await environment.send(GetProduct(sku: line.sku))
                items.append(
                    Order.Item(
                        sku: product.sku,
                        name: product.name,
                        quantity: line.quantity,
                        unitPriceCents: product.priceCents
                    )
                )
            } catch {
                throw Self.translate(error)
            }
        }

        // 3. Reserve the stock: the inventory checks and takes all lines in one step.
        let reservation: StockReservation
        do {
            reservation = try await environment.send(ReserveStock(lines: request.lines))
        } catch {
            throw Self.translate(error)
        }

        // 4. Record the order. The id is chosen and the order stored with no `await` in between,
        //    so concurrent `place` calls, which interleave on this actor at every `await` above,
        //    never share an id.
        let order = Order(
            id: self.orders.count + 1,
            userID: request.userID,
            items: items,
            reservationID: reservation.id
        )
        self.orders[order.id] = order
        say(Self.name, "created order #\(order.id), total \(dollars(order.totalCents))")

        // 5. Tell whoever listens. `publish` returns once subscribers' mailboxes have the event;
        //    it does not wait for their handlers. (If it fails, the order stands but nobody hears
        //    of it: a saga or an outbox would close that gap; the sample keeps it simple.)
        do {
            try await environment.publish(
                OrderCreated(orderID: order.id, userID: order.userID, items: order.items, totalCents: order.totalCents)
            )
        } catch {
            say(Self.name, "could not publish \(OrderCreated.topic): \(error)")
        }
        return order
    }

    /// Turns another service's failure into the order service's own words.
    private static func translate(_ error: RequestError) -> OrderError {
        switch error.underlying {
        case UserError.unknownUser(let id)?:
            return .unknownUser(id: id)
        case CatalogError.unknownProduct(let sku)?:
            return .unknownProduct(sku: sku)
        case InventoryError.insufficientStock(let sku, let requested, let available)?:
            return .outOfStock(sku: sku, requested: requested, available: available)
        default:
            // Not a business failure (a deadline, a shutdown…): let it through as it is.
            return .upstream(error)
        }
    }
}
