import Keel

/// Why the inventory service refused a reservation.
package enum InventoryError: Error, CustomStringConvertible {
    case insufficientStock(sku: String, requested: Int, available: Int)

    package var description: String {
        switch self {
        case .insufficientStock(let sku, let requested, let available):
            "only \(available) × \(sku) left, \(requested) requested"
        }
    }
}

/// Knows what is on the shelf, and hands it out.
package actor InventoryService: ServiceActor {
    package static let name: ServiceName = "inventory"

    /// What the shop has on the shelf when it opens, keyed by SKU.
    package static let openingStock = ["keyboard": 5, "mouse": 10, "monitor": 1, "cable": 40]

    /// Units on the shelf, keyed by SKU.
    private var stock: [String: Int]
    /// Reservations made so far, by id.
    private var reservations: [Int: StockReservation] = [:]
    /// The reservations released (their stock back on the shelf).
    private var released: Set<Int> = []
    /// Where the service tells what it does.
    private let say: Narrator

    /// Creates the service.
    /// - Parameters:
    ///   - stock: Units on the shelf when the service starts, keyed by SKU.
    ///   - narrator: Where the service tells what it does.
    package init(stock: [String: Int] = InventoryService.openingStock, narrator: Narrator = .standardOutput) {
        self.stock = stock
        self.say = narrator
    }

    package nonisolated func registerHandlers(_ handlers: inout RequestHandlers<InventoryService>) {
        handlers.on(CheckStock.self) { service, request in
            StockLevel(sku: request.sku, available: service.stock[request.sku, default: 0])
        }
        handlers.on(ReserveStock.self) { service, request in
            try service.reserve(request.lines)
        }
        handlers.on(ReleaseStock.self) { service, request in
            service.release(request.reservationID)
        }
    }

    /// Puts a reservation's stock back, once.
    private func release(_ id: Int) -> Bool {
        guard let reservation = self.reservations[id], self.released.insert(id).inserted else { return false }
        for line in reservation.lines {
            self.stock[line.sku, default: 0] += line.quantity
        }
        say(Self.name, "released reservation #\(id): \(describe(reservation.lines)) back on the shelf")
        return true
    }

    /// Checks every line, then takes them all; there is no `await` in between, so on this actor
    /// two orders can never both take the last unit.
    private func reserve(_ lines: [OrderLine]) throws(InventoryError) -> StockReservation {
        for line in lines {
            let available = self.stock[line.sku, default: 0]
            guard available >= line.quantity else {
                say(Self.name, "cannot reserve \(line.quantity) × \(line.sku): only \(available) left")
                throw .insufficientStock(sku: line.sku, requested: line.quantity, available: available)
            }
        }
        for line in lines {
            self.stock[line.sku, default: 0] -= line.quantity
        }
        let reservation = StockReservation(id: self.reservations.count + 1, lines: lines)
        self.reservations[reservation.id] = reservation
        say(Self.name, "reserved \(describe(lines)) (reservation #\(reservation.id))")
        return reservation
    }

    package func stop() async throws {
        say(Self.name, "stopped")
    }
}
