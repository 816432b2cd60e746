import Keel
import KeelEventSourcing

/// Why the inventory service refused a reservation.
package enum InventoryError: Error, Codable, CustomStringConvertible {
    case insufficientStock(sku: String, requested: Int, available: Int)
    /// The reservation's key was given up with `CancelReservation`.
    case cancelled(key: String)

    package var description: String {
        switch self {
        case .insufficientStock(let sku, let requested, let available):
            "only \(available) × \(sku) left, \(requested) requested"
        case .cancelled(let key): "the reservation under \(key) was cancelled"
        }
    }
}

/// Knows what is on the shelf, and hands it out.
///
/// A durable inventory (`durable: true`) keeps every reservation in the service's key-value
/// storage, committed before the request is answered, and counts the stock on the shelf at start
/// as the opening stock less the reservations not released: a reservation it acknowledged
/// survives a crash, and stock is neither lost nor made. Each commit writes one reservation's
/// record, so concurrent commits need no order among themselves. An in-memory inventory (the
/// walk-through's, so that every run tells the same story) starts from the opening stock each
/// time.
package actor InventoryService: ServiceActor {
    package static let name: ServiceName = "inventory"

    /// What the shop has on the shelf when it opens, keyed by SKU.
    package static let openingStock = ["keyboard": 5, "mouse": 10, "monitor": 1, "cable": 40]

    /// A reservation as the durable inventory stores it.
    struct Record: Codable {
        var reservation: StockReservation
        /// The caller's idempotency key, if it gave one.
        var key: String?
        var released: Bool
    }

    /// Units on the shelf, keyed by SKU.
    private var stock: [String: Int]
    /// Reservations made so far, by id.
    private var reservations: [Int: StockReservation] = [:]
    /// The reservations released (their stock back on the shelf).
    private var released: Set<Int> = []
    /// Reservation ids by the idempotency key their callers gave, and the keys by id.
    private var byKey: [String: Int] = [:]
    private var keys: [Int: String] = [:]
    /// The keys given up with `CancelReservation`: no reservation is made under them.
    private var cancelledKeys: Set<String> = []
    /// The next reservation's id; ids are never reused, even those of reservations whose commit
    /// failed.
    private var nextID = 1
    /// Whether reservations are kept in the service's storage.
    private let durable: Bool
    /// The service's key-value storage, when durable (from start).
    private var store: StateNamespace?
    /// Where the service tells what it does.
    private let say: Narrator

    /// Creates the service.
    /// - Parameters:
    ///   - stock: Units on the shelf when the shop opens, keyed by SKU.
    ///   - durable: Whether reservations are kept in the service's storage (and the stock counted
    ///     from them at start); `false` keeps them in memory.
    ///   - narrator: Where the service tells what it does.
    package init(
        stock: [String: Int] = InventoryService.openingStock,
        durable: Bool = false,
        narrator: Narrator = .standardOutput
    ) {
        self.stock = stock
        self.durable = durable
        self.say = narrator
    }

    package nonisolated func registerHandlers(_ handlers: inout RequestHandlers<InventoryService>) {
        handlers.on(CheckStock.self) { service, request in
            StockLevel(sku: request.sku, available: service.stock[request.sku, default: 0])
        }
        handlers.on(ReserveStock.self) { service, request in
            try await service.reserve(request.lines, key: request.key)
        }
        handlers.on(ReleaseStock.self) { service, request in
            try await service.release(request.reservationID)
        }
        handlers.on(CancelReservation.self) { service, request in
            try await service.cancel(request.key)
        }
    }

    package func start(_ environment: ServiceEnvironment) async throws {
        guard self.durable else { return }
        let store = try await environment.storage().keyValues
        var held = 0
        for key in await store.keys(withPrefix: "reservation/") {
            guard let record = try await store.value(Record.self, forKey: key) else { continue }
            let reservation = record.reservation
            self.reservations[reservation.id] = reservation
            self.nextID = max(self.nextID, reservation.id + 1)
            if let key = record.key {
                self.byKey[key] = reservation.id
                self.keys[reservation.id] = key
            }
            if record.released {
                self.released.insert(reservation.id)
            } else {
                held += 1
                for line in reservation.lines {
                    self.stock[line.sku, default: 0] -= line.quantity
                }
            }
        }
        for key in await store.keys(withPrefix: "cancelled/") {
            self.cancelledKeys.insert(String(key.dropFirst("cancelled/".count)))
        }
        self.store = store
        if !self.reservations.isEmpty {
            say(Self.name, "found \(self.reservations.count) reservations in storage, \(held) of them held")
        }
    }

    /// Gives up the key: no reservation is made under it from now on, and the one made under it,
    /// if any, is released.
    private func cancel(_ key: String) async throws -> Bool {
        if self.cancelledKeys.insert(key).inserted, let store = self.store {
            do {
                try await store.put([1], forKey: "cancelled/\(key)")
            } catch {
                self.cancelledKeys.remove(key)
                throw error
            }
        }
        guard let id = self.byKey[key] else {
            say(Self.name, "no reservation under \(key); none will be made")
            return false
        }
        return try await self.release(id)
    }

    /// Puts a reservation's stock back, once.
    private func release(_ id: Int) async throws -> Bool {
        guard let reservation = self.reservations[id], self.released.insert(id).inserted else { return false }
        for line in reservation.lines {
            self.stock[line.sku, default: 0] += line.quantity
        }
        do {
            try await self.save(reservation, released: true)
        } catch {
            // Not released after all: the stock goes back into the reservation.
            self.released.remove(id)
            for line in reservation.lines {
                self.stock[line.sku, default: 0] -= line.quantity
            }
            throw error
        }
        say(Self.name, "released reservation #\(id): \(describe(reservation.lines)) back on the shelf")
        return true
    }

    /// Checks every line, then takes them all; there is no `await` in between, so on this actor
    /// two orders can never both take the last unit. A reservation asked for again under the same
    /// key is answered with the first one.
    private func reserve(_ lines: [OrderLine], key: String?) async throws -> StockReservation {
        if let key, let id = self.byKey[key], let existing = self.reservations[id] {
            say(Self.name, "reservation #\(id) was made already for \(key)")
            return existing
        }
        if let key, self.cancelledKeys.contains(key) {
            say(Self.name, "refused a reservation under \(key): the key was cancelled")
            throw InventoryError.cancelled(key: key)
        }
        for line in lines {
            let available = self.stock[line.sku, default: 0]
            guard available >= line.quantity else {
                say(Self.name, "cannot reserve \(line.quantity) × \(line.sku): only \(available) left")
                throw InventoryError.insufficientStock(sku: line.sku, requested: line.quantity, available: available)
            }
        }
        for line in lines {
            self.stock[line.sku, default: 0] -= line.quantity
        }
        let reservation = StockReservation(id: self.nextID, lines: lines)
        self.nextID += 1
        self.reservations[reservation.id] = reservation
        if let key {
            self.byKey[key] = reservation.id
            self.keys[reservation.id] = key
        }
        do {
            try await self.save(reservation, released: false)
        } catch {
            // Not made after all: the stock goes back on the shelf. (A commit whose answer was
            // lost may still have landed: the next start then counts the reservation as held.)
            self.reservations[reservation.id] = nil
            if let key {
                self.byKey[key] = nil
                self.keys[reservation.id] = nil
            }
            for line in lines {
                self.stock[line.sku, default: 0] += line.quantity
            }
            throw error
        }
        say(Self.name, "reserved \(describe(lines)) (reservation #\(reservation.id))")
        return reservation
    }

    /// Commits a reservation's record, when the inventory is durable.
    private func save(_ reservation: StockReservation, released: Bool) async throws {
        guard let store = self.store else { return }
        try await store.set(
            Record(reservation: reservation, key: self.keys[reservation.id], released: released),
            forKey: "reservation/\(reservation.id)"
        )
    }

    package func stop() async throws {
        say(Self.name, "stopped")
    }
}
