import Keel
import KeelCore
import KeelEventSourcing

/// Why the user service could not answer.
enum UserError: Error, CustomStringConvertible {
    case unknownUser(id: Int)
    case alreadyRegistered(id: String)
    case notRegistered(id: String)

    var description: String {
        switch self {
        case .unknownUser(let id): "no customer has id \(id)"
        case .alreadyRegistered(let id): "customer \(id) is already registered"
        case .notRegistered(let id): "customer \(id) is not registered"
        }
    }
}

// MARK: Events and the aggregate

/// A customer signed up.
struct CustomerRegistered: DomainEvent {
    static let eventType = "customer.registered"
    var name: String
    var email: String
}

/// A customer changed their email address.
struct CustomerEmailChanged: DomainEvent {
    static let eventType = "customer.email-changed"
    var email: String
}

/// What happens to a customer.
enum CustomerEvent: AggregateEvent {
    case registered(CustomerRegistered)
    case emailChanged(CustomerEmailChanged)

    init?(_ event: any DomainEvent) {
        switch event {
        case let event as CustomerRegistered: self = .registered(event)
        case let event as CustomerEmailChanged: self = .emailChanged(event)
        default: return nil
        }
    }

    var domainEvent: any DomainEvent {
        switch self {
        case .registered(let event): event
        case .emailChanged(let event): event
        }
    }
}

/// A customer, event-sourced: registers once; changes email only when registered.
struct Customer: Aggregate {
    static let category = "customer"
    var name: String?
    var email: String?

    mutating func apply(_ event: CustomerEvent) {
        switch event {
        case .registered(let registered):
            self.name = registered.name
            self.email = registered.email
        case .emailChanged(let changed):
            self.email = changed.email
        }
    }
}

/// Registers a customer (the command side).
struct RegisterCustomer: CommandRequest {
    var aggregateID: String
    var name: String
    var email: String
}

/// Lists the customers whose email is at `domain` (the query side).
struct CustomersByDomain: QueryRequest {
    typealias Response = [CustomerListing]
    var domain: String
    var minimumPosition: UInt64?
}

/// One customer in the directory: a value of the read model, which stores it as JSON.
struct CustomerListing: Codable, Sendable, Hashable {
    var id: String
    var name: String
    var email: String

    /// The part of the email after the `@`.
    var domain: String { String(self.email.split(separator: "@").last ?? "") }
}

/// The read model "customers by email domain", built from the customers' events: each customer's
/// listing under `customer/<id>`, and again under `domain/<domain>/<id>`, so that the customers of
/// a domain are one prefix scan.
struct CustomerDirectory: Projection {
    let name = "customer-directory"
    /// The customers' repository: its serializer decodes their events, and it names the customer
    /// an event belongs to (the id the repository recorded on the event, or, for the events an
    /// earlier version of the shop appended, the one in the event's stream name).
    let customers: AggregateRepository<Customer>

    func apply(_ event: RecordedEvent, to transaction: inout ReadModelTransaction) async throws {
        guard let id = self.customers.aggregateID(of: event) else { return }
        let previous = try await transaction.value(CustomerListing.self, forKey: "customer/\(id)")
        var listing: CustomerListing
        switch event.type {
        case CustomerRegistered.eventType:
            let registered = try self.customers.serializer.decode(event, as: CustomerRegistered.self)
            listing = CustomerListing(id: id, name: registered.name, email: registered.email)
        case CustomerEmailChanged.eventType:
            guard let previous else { return }
            listing = previous
            listing.email = try self.customers.serializer.decode(event, as: CustomerEmailChanged.self).email
        default:
            return
        }
        if let previous {
            transaction.delete("domain/\(previous.domain)/\(id)")
        }
        try transaction.set(listing, forKey: "customer/\(id)")
        try transaction.set(listing, forKey: "domain/\(listing.domain)/\(id)")
    }
}

// MARK: The service

/// Knows the shop's customers. Their state is event-sourced in the service's own storage (the
/// host's embedded store): it survives restarts, and nobody else can reach it except by request.
///
/// The host builds it when it starts (`host.register { environment in try await UserService(…) }`),
/// so its repository and its read model's runner are `let`s, there from the first request on:
/// the command and query handlers below cannot run without them.
actor UserService: ServiceActor {
    static let name: ServiceName = "user"

    /// The customers every shop starts with.
    static let founders: [User] = [
        User(id: 1, name: "Ada Lovelace", email: "ada@example.com"),
        User(id: 2, name: "Grace Hopper", email: "grace@example.com"),
        User(id: 3, name: "Alan Turing", email: "alan@example.com"),
    ]

    private let customers: AggregateRepository<Customer>
    private let directory: ProjectionRunner

    /// Builds the service on its own storage; the host calls it when the service starts.
    init(environment: ServiceEnvironment) async throws {
        let storage = try await environment.storage()
        let serializer = EventSerializer(
            registry: EventTypeRegistry([CustomerRegistered.self, CustomerEmailChanged.self])
        )
        // The host's clock and wall clock, but event ids from a source of their own, so that the
        // host's trace ids stay the same from run to run whatever the store holds.
        // (`environment.makeRepository` would draw them from the host's source.)
        let customers = AggregateRepository<Customer>(
            store: storage.events,
            serializer: serializer,
            clock: environment.clock,
            random: RandomSource(seed: 7),
            wallClock: environment.wallClock
        )
        self.customers = customers
        // The directory's own namespace. (Earlier versions of the shop kept the email alone, as
        // bytes, in "customers-by-domain"; a read model of another shape gets a new namespace,
        // which the runner builds from every stored event.)
        let readModel = try await storage.keyValues(named: "customer-directory")
        self.directory = ProjectionRunner(
            projection: CustomerDirectory(customers: customers),
            eventStore: storage.events,
            projectionStore: ProjectionStore(keyValueStore: readModel),
            clock: environment.clock,
            random: environment.random
        )
    }

    nonisolated func registerHandlers(_ handlers: inout RequestHandlers<UserService>) {
        handlers.on(GetUser.self) { service, request in
            try await service.user(request.id)
        }
        handlers.command(RegisterCustomer.self, repository: { $0.customers }, expecting: .new) { customer, request in
            guard customer.email == nil else { throw UserError.alreadyRegistered(id: request.aggregateID) }
            return [.registered(CustomerRegistered(name: request.name, email: request.email))]
        }
        handlers.query(CustomersByDomain.self, runner: { $0.directory }) { store, request in
            try await store.values(CustomerListing.self, withPrefix: "domain/\(request.domain)/").map(\.value)
        }
    }

    func start(_ environment: ServiceEnvironment) async throws {
        await self.directory.start()
        var restored = 0
        for founder in Self.founders {
            let id = String(founder.id)
            if try await self.customers.load(id).exists {
                restored += 1
                continue
            }
            try await self.customers.execute(id, expecting: .new) { _ in
                [.registered(CustomerRegistered(name: founder.name, email: founder.email))]
            }
        }
        if restored > 0 {
            say(Self.name, "found \(restored) customers in its store from an earlier run")
        } else {
            say(Self.name, "registered \(Self.founders.count) customers in its new store")
        }
    }

    private func user(_ id: Int) async throws -> User {
        guard let loaded = try? await self.customers.load(String(id)),
            let name = loaded.aggregate.name,
            let email = loaded.aggregate.email
        else {
            say(Self.name, "no customer with id \(id)")
            throw UserError.unknownUser(id: id)
        }
        say(Self.name, "found \(name) <\(email)>")
        return User(id: id, name: name, email: email)
    }

    func stop() async throws {
        await self.directory.stop()
        say(Self.name, "stopped")
    }
}
