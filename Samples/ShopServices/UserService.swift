import Keel
import KeelCore
import KeelEventSourcing

/// Why the user service could not answer, or refused a command.
///
/// It reaches a caller as the `underlying` error of a Keel `RequestError` with code
/// `handlerFailed`. (A registration of an id that is taken is refused by the repository before the
/// command runs: an `AggregateError` with code `alreadyExists`.)
public enum UserError: Error, Codable, CustomStringConvertible {
    /// No customer has this id.
    case unknownUser(id: Int)
    /// The customer is registered already.
    case alreadyRegistered(id: String)
    /// No customer has this id (a command on a customer that does not exist).
    case notRegistered(id: String)
    /// A customer's id must be a positive whole number.
    case invalidID(String)
    /// A customer's name must not be blank.
    case invalidName
    /// Not an e-mail address: one `@` between a non-empty local part and domain, no spaces, at most
    /// 254 characters.
    case invalidEmail(String)
    /// The command expected the customer at one version and found another: someone changed the
    /// customer since the caller read it.
    case versionMismatch(id: String, expected: UInt64, actual: UInt64)

    /// The refusal in a sentence.
    public var description: String {
        switch self {
        case .unknownUser(let id): "no customer has id \(id)"
        case .alreadyRegistered(let id): "customer \(id) is already registered"
        case .notRegistered(let id): "customer \(id) is not registered"
        case .invalidID(let id): "\"\(id)\" is not a customer id: ids are positive whole numbers"
        case .invalidName: "a customer's name must not be blank"
        case .invalidEmail(let email): "\"\(email)\" is not an e-mail address"
        case .versionMismatch(let id, let expected, let actual):
            "customer \(id) is at version \(actual), not \(expected): it changed since it was read"
        }
    }

    /// Checks a registration's or a change's fields.
    static func validate(id: String? = nil, name: String? = nil, email: String) throws(UserError) {
        if let id, Int(id).map({ $0 < 1 }) ?? true { throw .invalidID(id) }
        if let name, name.allSatisfy(\.isWhitespace) { throw .invalidName }
        let parts = email.split(separator: "@", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty, email.count <= 254,
            !email.contains(where: \.isWhitespace)
        else { throw .invalidEmail(email) }
    }
}

// MARK: Events and the aggregate

/// A customer signed up.
package struct CustomerRegistered: DomainEvent {
    package static let eventType = "customer.registered"
    package var name: String
    package var email: String
}

/// A customer changed their email address.
package struct CustomerEmailChanged: DomainEvent {
    package static let eventType = "customer.email-changed"
    package var email: String
}

/// What happens to a customer.
package enum CustomerEvent: AggregateEvent {
    case registered(CustomerRegistered)
    case emailChanged(CustomerEmailChanged)

    package init?(_ event: any DomainEvent) {
        switch event {
        case let event as CustomerRegistered: self = .registered(event)
        case let event as CustomerEmailChanged: self = .emailChanged(event)
        default: return nil
        }
    }

    package var domainEvent: any DomainEvent {
        switch self {
        case .registered(let event): event
        case .emailChanged(let event): event
        }
    }
}

/// A customer, event-sourced: registers once; changes email only when registered.
package struct Customer: Aggregate {
    package static let category = "customer"
    package var name: String?
    package var email: String?

    package init() {}

    package mutating func apply(_ event: CustomerEvent) {
        switch event {
        case .registered(let registered):
            self.name = registered.name
            self.email = registered.email
        case .emailChanged(let changed):
            self.email = changed.email
        }
    }
}

/// Registers a customer (the command side): answers where its event landed, or fails with
/// ``UserError`` (a blank name, an invalid e-mail or id) or, when the id is taken, a Keel
/// `AggregateError` with code `alreadyExists`.
public struct RegisterCustomer: CommandRequest {
    /// The new customer's id: a positive whole number, as text.
    public var aggregateID: String
    /// The customer's full name.
    public var name: String
    /// The customer's e-mail address.
    public var email: String

    /// Creates the command.
    /// - Parameters:
    ///   - aggregateID: The new customer's id, a positive whole number as text.
    ///   - name: The full name.
    ///   - email: The e-mail address.
    public init(aggregateID: String, name: String, email: String) {
        self.aggregateID = aggregateID
        self.name = name
        self.email = email
    }
}

/// Changes a customer's e-mail address (the command side): answers where its event landed, or
/// fails with ``UserError`` (`notRegistered`, `invalidEmail`, `versionMismatch`) or, when another
/// writer got in between, a Keel `AggregateError` with code `conflict`.
public struct ChangeCustomerEmail: CommandRequest {
    /// The customer's id.
    public var aggregateID: String
    /// The new address.
    public var email: String
    /// The version the caller read the customer at (``User/version``): the change is made only if
    /// the customer is still at it, else it fails with ``UserError/versionMismatch(id:expected:actual:)``.
    /// `nil` changes whatever the version (last writer wins).
    public var expectedVersion: UInt64?

    /// Creates the command.
    /// - Parameters:
    ///   - aggregateID: The customer's id.
    ///   - email: The new address.
    ///   - expectedVersion: The version the caller read, or `nil`.
    public init(aggregateID: String, email: String, expectedVersion: UInt64? = nil) {
        self.aggregateID = aggregateID
        self.email = email
        self.expectedVersion = expectedVersion
    }
}

/// Lists the customers whose email is at `domain` (the query side).
public struct CustomersByDomain: QueryRequest {
    /// The customers at the domain, in the order of their ids as text.
    public typealias Response = [CustomerListing]
    /// The domain, the part of an address after the `@`.
    public var domain: String
    /// The global position the read model must include before it answers: the
    /// `CommandReceipt.position` of a write the caller wants to read; `nil` answers at once.
    public var minimumPosition: UInt64?

    /// Creates the query.
    /// - Parameters:
    ///   - domain: The domain.
    ///   - minimumPosition: The position to wait for, if any.
    public init(domain: String, minimumPosition: UInt64?) {
        self.domain = domain
        self.minimumPosition = minimumPosition
    }
}

/// One customer in the directory: a value of the read model, which stores it as JSON.
public struct CustomerListing: Codable, Sendable, Hashable {
    /// The customer's id.
    public var id: String
    /// The customer's full name.
    public var name: String
    /// The customer's e-mail address.
    public var email: String

    /// The part of the email after the `@`.
    public var domain: String { String(self.email.split(separator: "@").last ?? "") }
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
package actor UserService: ServiceActor {
    package static let name: ServiceName = "user"

    /// The customers every shop starts with.
    package static let founders: [User] = [
        User(id: 1, name: "Ada Lovelace", email: "ada@example.com"),
        User(id: 2, name: "Grace Hopper", email: "grace@example.com"),
        User(id: 3, name: "Alan Turing", email: "alan@example.com"),
    ]

    private let customers: AggregateRepository<Customer>
    private let directory: ProjectionRunner
    /// Where the service tells what it does.
    private let say: Narrator

    /// Builds the service on its own storage; the host calls it when the service starts.
    /// - Parameters:
    ///   - environment: The environment the host starts the service in.
    ///   - narrator: Where the service tells what it does.
    package init(environment: ServiceEnvironment, narrator: Narrator = .standardOutput) async throws {
        self.say = narrator
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

    package nonisolated func registerHandlers(_ handlers: inout RequestHandlers<UserService>) {
        handlers.on(GetUser.self) { service, request in
            try await service.user(request.id)
        }
        handlers.command(RegisterCustomer.self, repository: { $0.customers }, expecting: .new) { customer, request in
            guard customer.email == nil else { throw UserError.alreadyRegistered(id: request.aggregateID) }
            try UserError.validate(id: request.aggregateID, name: request.name, email: request.email)
            return [.registered(CustomerRegistered(name: request.name, email: request.email))]
        }
        handlers.on(ChangeCustomerEmail.self) { service, request in
            try await service.changeEmail(request)
        }
        handlers.query(CustomersByDomain.self, runner: { $0.directory }) { store, request in
            try await store.values(CustomerListing.self, withPrefix: "domain/\(request.domain)/").map(\.value)
        }
    }

    package func start(_ environment: ServiceEnvironment) async throws {
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
        return User(id: id, name: name, email: email, version: loaded.version)
    }

    /// Changes a customer's address: at the version the caller read, when it names one (then a
    /// concurrent change is a refusal, not a retry), else on the latest state, retrying conflicts.
    private func changeEmail(_ request: ChangeCustomerEmail) async throws -> CommandReceipt {
        try UserError.validate(email: request.email)
        let id = request.aggregateID
        let events = [CustomerEvent.emailChanged(CustomerEmailChanged(email: request.email))]
        let saved: SavedAggregate<Customer>
        if let expected = request.expectedVersion {
            let loaded = try await self.customers.load(id)
            guard let version = loaded.version, loaded.aggregate.email != nil else {
                throw UserError.notRegistered(id: id)
            }
            guard version == expected else {
                throw UserError.versionMismatch(id: id, expected: expected, actual: version)
            }
            saved = try await self.customers.save(events, for: id, loaded: loaded)
        } else {
            saved = try await self.customers.execute(id, retry: .attempts(3)) { customer in
                guard customer.email != nil else { throw UserError.notRegistered(id: id) }
                return events
            }
        }
        say(Self.name, "customer \(id) now has the address <\(request.email)>")
        return CommandReceipt(
            aggregateID: id,
            version: saved.version,
            position: saved.positions.isEmpty ? nil : saved.positions.upperBound - 1
        )
    }

    package func stop() async throws {
        await self.directory.stop()
        say(Self.name, "stopped")
    }
}
