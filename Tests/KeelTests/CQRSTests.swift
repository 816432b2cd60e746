import KeelCore
import KeelEventSourcing
import KeelTesting
import Testing

@testable import Keel

/// The seed's user service, event-sourced, with CQRS handlers: commands to the `User`
/// aggregate, and "users by email domain" from a projection, read-your-writes.
@Suite("CQRS handlers", .timeLimit(.minutes(2)))
struct CQRSTests {
    // MARK: Events and the aggregate

    struct UserRegistered: DomainEvent, Equatable {
        static let eventType = "user.registered"
        var email: String
        var name: String
    }

    struct UserEmailChanged: DomainEvent, Equatable {
        static let eventType = "user.email-changed"
        var email: String
    }

    enum UserEvent: AggregateEvent {
        case registered(UserRegistered)
        case emailChanged(UserEmailChanged)

        init?(_ event: any DomainEvent) {
            switch event {
            case let event as UserRegistered: self = .registered(event)
            case let event as UserEmailChanged: self = .emailChanged(event)
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

    enum UserError: Error, Equatable {
        case alreadyRegistered
        case notRegistered
    }

    /// The seed's rules: registers once; changes email only when registered.
    struct User: Aggregate {
        static let category = "user"
        var email: String?
        var name: String?

        mutating func apply(_ event: UserEvent) {
            switch event {
            case .registered(let registered):
                self.email = registered.email
                self.name = registered.name
            case .emailChanged(let changed):
                self.email = changed.email
            }
        }

        func register(email: String, name: String) throws -> [UserEvent] {
            guard self.email == nil else { throw UserError.alreadyRegistered }
            return [.registered(UserRegistered(email: email, name: name))]
        }

        func changeEmail(to email: String) throws -> [UserEvent] {
            guard self.email != nil else { throw UserError.notRegistered }
            return [.emailChanged(UserEmailChanged(email: email))]
        }
    }

    // MARK: The read model

    struct UsersByEmailDomain: Projection {
        let name = "users-by-email-domain"
        let serializer: EventSerializer

        static func domain(of email: String) -> String {
            String(email.split(separator: "@").last ?? "")
        }

        func apply(_ event: RecordedEvent, to transaction: inout ReadModelTransaction) async throws {
            // The repository records the user's id on each event: no stream name to parse.
            guard let userID = event.aggregateID else { return }
            let email: String
            switch event.type {
            case UserRegistered.eventType: email = try self.serializer.decode(event, as: UserRegistered.self).email
            case UserEmailChanged.eventType: email = try self.serializer.decode(event, as: UserEmailChanged.self).email
            default: return
            }
            if let old = try await transaction.value(String.self, forKey: "user/\(userID)") {
                transaction.delete("domain/\(Self.domain(of: old))/\(userID)")
            }
            try transaction.set(email, forKey: "user/\(userID)")
            transaction.put([], forKey: "domain/\(Self.domain(of: email))/\(userID)")
        }
    }

    // MARK: Requests and the service

    struct RegisterUser: CommandRequest {
        var aggregateID: String
        var email: String
        var name: String
    }

    struct ChangeEmail: CommandRequest {
        var aggregateID: String
        var email: String
    }

    struct UsersByDomain: QueryRequest {
        typealias Response = [String]
        var domain: String
        var minimumPosition: UInt64?
    }

    actor UserService: ServiceActor {
        static let name: ServiceName = "user"
        static let publishes: [any DomainEvent.Type] = [UserRegistered.self]
        private var users: AggregateRepository<User>?
        private var directory: ProjectionRunner?

        nonisolated func registerHandlers(_ handlers: inout RequestHandlers<UserService>) {
            handlers.command(RegisterUser.self, repository: { $0.users }, expecting: .new) { user, request in
                try user.register(email: request.email, name: request.name)
            }
            handlers.command(ChangeEmail.self, repository: { $0.users }, expecting: .existing) { user, request in
                try user.changeEmail(to: request.email)
            }
            handlers.query(UsersByDomain.self, runner: { $0.directory }) { store, request in
                let prefix = "domain/\(request.domain)/"
                return await store.keys(withPrefix: prefix).map { String($0.dropFirst(prefix.count)) }
            }
        }

        func start(_ environment: ServiceEnvironment) async throws {
            let storage = try await environment.storage()
            let serializer = EventSerializer(registry: EventTypeRegistry([UserRegistered.self, UserEmailChanged.self]))
            self.users = AggregateRepository(store: storage.events, serializer: serializer, random: environment.random)
            let readModel = try await storage.keyValues(named: "users-by-email-domain")
            let runner = ProjectionRunner(
                projection: UsersByEmailDomain(serializer: serializer),
                eventStore: storage.events,
                projectionStore: ProjectionStore(keyValueStore: readModel)
            )
            await runner.start()
            self.directory = runner
        }

        func stop() async throws {
            await self.directory?.stop()
        }
    }

    @Test("commands enforce the user's rules; queries read their own writes by position")
    func usersByEmailDomain() async throws {
        try await TestHost.with(services: [UserService()]) { test in
            let ada = try await test.client.send(
                RegisterUser(aggregateID: "ada", email: "ada@example.com", name: "Ada")
            )
            _ = try await test.client.send(RegisterUser(aggregateID: "alan", email: "alan@example.com", name: "Alan"))
            let grace = try await test.client.send(
                RegisterUser(aggregateID: "grace", email: "grace@navy.mil", name: "Grace")
            )
            #expect(ada.version == 0 && ada.position != nil)

            var users = try await test.client.send(
                UsersByDomain(domain: "example.com", minimumPosition: grace.position)
            )
            #expect(users == ["ada", "alan"])

            let moved = try await test.client.send(ChangeEmail(aggregateID: "alan", email: "alan@navy.mil"))
            #expect(moved.version == 1)
            users = try await test.client.send(UsersByDomain(domain: "example.com", minimumPosition: moved.position))
            #expect(users == ["ada"])
            users = try await test.client.send(UsersByDomain(domain: "navy.mil", minimumPosition: moved.position))
            #expect(users == ["alan", "grace"])

            // The rules, as the caller sees them: the aggregate's error as the handler's failure.
            let twice = await #expect(throws: RequestError.self) {
                try await test.client.send(RegisterUser(aggregateID: "ada", email: "x@example.com", name: "Ada"))
            }
            #expect(twice?.code == .handlerFailed)
            let unknown = await #expect(throws: RequestError.self) {
                try await test.client.send(ChangeEmail(aggregateID: "nobody", email: "n@example.com"))
            }
            #expect((unknown?.underlying as? AggregateError)?.code == .notFound)
            users = try await test.client.send(UsersByDomain(domain: "example.com", minimumPosition: nil))
            #expect(users == ["ada"])
        }
    }
}
