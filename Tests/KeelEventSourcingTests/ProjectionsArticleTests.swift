import KeelCore
import KeelEventSourcing
import Testing

/// The example of the article "Projections and read models"
/// (DocC/KeelEventSourcing.docc/ProjectionsAndReadModels.md), as the article shows it.
enum ProjectionsArticle {
    struct UserRegistered: DomainEvent {
        static let eventType = "user.registered"
        var email: String
        var name: String
    }

    struct UserEmailChanged: DomainEvent {
        static let eventType = "user.email-changed"
        var previous: String?
        var email: String
    }

    /// What the directory keeps of a user: a value of the read model.
    struct DirectoryEntry: Codable, Equatable {
        var name: String
        var email: String
    }

    struct UsersByEmailDomain: Projection {
        let name = "users-by-email-domain"
        let serializer: EventSerializer

        func apply(_ event: RecordedEvent, to transaction: inout ReadModelTransaction) async throws {
            // The user's id, as the repository recorded it on the event.
            guard let userID = event.aggregateID else { return }
            switch event.type {
            case UserRegistered.eventType:
                let registered = try serializer.decode(event, as: UserRegistered.self)
                let entry = DirectoryEntry(name: registered.name, email: registered.email)
                try transaction.set(entry, forKey: "user/\(userID)")
                transaction.put([], forKey: "domain/\(domain(of: registered.email))/\(userID)")
            case UserEmailChanged.eventType:
                let changed = try serializer.decode(event, as: UserEmailChanged.self)
                guard var entry = try await transaction.value(DirectoryEntry.self, forKey: "user/\(userID)") else {
                    return
                }
                transaction.delete("domain/\(domain(of: entry.email))/\(userID)")
                entry.email = changed.email
                try transaction.set(entry, forKey: "user/\(userID)")
                transaction.put([], forKey: "domain/\(domain(of: changed.email))/\(userID)")
            default:
                break  // events this read model does not care about
            }
        }
    }

    /// The article leaves it out: the part of an email after the `@`.
    static func domain(of email: String) -> String {
        String(email.split(separator: "@").last ?? "")
    }

    /// A user with the article's events (the aggregate of "Aggregates and snapshots").
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

    struct User: Aggregate {
        static let category = "user"
        var email: String?

        mutating func apply(_ event: UserEvent) {
            switch event {
            case .registered(let registered): self.email = registered.email
            case .emailChanged(let changed): self.email = changed.email
            }
        }

        func register(email: String, name: String) throws -> [UserEvent] {
            [.registered(UserRegistered(email: email, name: name))]
        }

        func changeEmail(to email: String) throws -> [UserEvent] {
            [.emailChanged(UserEmailChanged(previous: self.email, email: email))]
        }
    }
}

@Suite("The projections article's example", .timeLimit(.minutes(2)))
struct ProjectionsArticleTests {
    @Test("the directory keeps typed entries by the recorded user id, and reads its own writes")
    func directory() async throws {
        let directory = TemporaryDirectory("projections-article")
        defer { directory.remove() }
        let types: [any DomainEvent.Type] = [
            ProjectionsArticle.UserRegistered.self, ProjectionsArticle.UserEmailChanged.self,
        ]
        let serializer = EventSerializer(registry: EventTypeRegistry(types))
        let events = try FileEventStore(directory: directory.path + "/events")
        let state = try FileStateStore(directory: directory.path + "/state")
        let users = AggregateRepository<ProjectionsArticle.User>(store: events, serializer: serializer)
        let runner = ProjectionRunner(
            projection: ProjectionsArticle.UsersByEmailDomain(serializer: serializer),
            eventStore: events,
            projectionStore: ProjectionStore(keyValueStore: state.namespace("users-by-email-domain"))
        )
        await runner.start()

        let saved = try await users.execute("42", expecting: .new) { user in
            try user.register(email: "ada@example.com", name: "Ada")
        }
        try await runner.waitUntilCaughtUp(to: saved.positions.upperBound - 1)
        let atExample = await runner.projectionStore.keys(withPrefix: "domain/example.com/")  // includes user 42
        #expect(atExample == ["domain/example.com/42"])
        let entry = try await runner.projectionStore.value(ProjectionsArticle.DirectoryEntry.self, forKey: "user/42")
        #expect(entry == ProjectionsArticle.DirectoryEntry(name: "Ada", email: "ada@example.com"))

        let changed = try await users.execute("42") { user in try user.changeEmail(to: "ada@keel.dev") }
        try await runner.waitUntilCaughtUp(to: changed.positions.upperBound - 1)
        #expect(await runner.projectionStore.keys(withPrefix: "domain/") == ["domain/keel.dev/42"])
        #expect(
            try await runner.projectionStore.value(ProjectionsArticle.DirectoryEntry.self, forKey: "user/42")?.email
                == "ada@keel.dev"
        )
        await runner.stop()
        await state.close()
        await events.close()
    }
}
