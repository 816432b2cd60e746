import Keel

/// Why the user service could not answer.
enum UserError: Error, CustomStringConvertible {
    case unknownUser(id: Int)

    var description: String {
        switch self {
        case .unknownUser(let id): "no customer has id \(id)"
        }
    }
}

/// Knows the shop's customers.
actor UserService: ServiceActor {
    static let name: ServiceName = "user"

    /// The service's own storage: nobody else can reach it except by request.
    private var users: [Int: User] = [
        1: User(id: 1, name: "Ada Lovelace", email: "ada@example.com"),
        2: User(id: 2, name: "Grace Hopper", email: "grace@example.com"),
        3: User(id: 3, name: "Alan Turing", email: "alan@example.com"),
    ]

    nonisolated func registerHandlers(_ handlers: inout RequestHandlers<UserService>) {
        handlers.on(GetUser.self) { service, request in
            guard let user = service.users[request.id] else {
                say(Self.name, "no customer with id \(request.id)")
                throw UserError.unknownUser(id: request.id)
            }
            say(Self.name, "found \(user.name) <\(user.email)>")
            return user
        }
    }

    func stop() async throws {
        say(Self.name, "stopped")
    }
}
