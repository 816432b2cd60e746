import KeelEventSourcing

/// A request that changes one event-sourced aggregate: the command side of CQRS.
///
/// Its handler (see ``RequestHandlers/command(_:repository:expecting:retry:_:)-(_,(Service)->AggregateRepository<A>,_,_,_)``) loads the
/// aggregate, decides the events, appends them with the loaded version, and answers a
/// ``CommandReceipt`` saying where they landed.
public protocol CommandRequest: ServiceRequest where Response == CommandReceipt {
    /// The id of the aggregate the command addresses (the stream is `<category>-<id>`).
    var aggregateID: String { get }
}

/// A request answered from a read model: the query side of CQRS.
///
/// A caller that has just run a command passes the receipt's
/// ``CommandReceipt/position`` as ``minimumPosition``, and the query is answered only once the
/// read model includes that event: read-your-writes, without polling.
public protocol QueryRequest: ServiceRequest {
    /// The global position the read model must include before the query is answered; `nil`
    /// answers from whatever the read model holds now.
    var minimumPosition: UInt64? { get }
}

/// Where a command's events landed.
public struct CommandReceipt: Sendable, Codable, Hashable {
    /// The aggregate's id.
    public var aggregateID: String
    /// The aggregate's stream version after the command; `nil` when the stream still has no
    /// events (a command that decided nothing on a new aggregate).
    public var version: UInt64?
    /// The global position of the last event the command appended; `nil` when it appended none.
    /// Pass it to a ``QueryRequest`` to read your own write.
    public var position: UInt64?

    /// Creates a receipt.
    /// - Parameters:
    ///   - aggregateID: The aggregate's id.
    ///   - version: The stream version after the command.
    ///   - position: The last appended event's global position.
    public init(aggregateID: String, version: UInt64?, position: UInt64?) {
        self.aggregateID = aggregateID
        self.version = version
        self.position = position
    }
}

/// Why a CQRS handler could not run: its repository or projection runner is not set up yet.
///
/// Only the forms that take an optional repository or runner (for a service that fills them in
/// ``ServiceActor/start(_:)``) can fail so; a service built by its factory
/// (``ServiceHost/register(_:loadBalancing:_:)``) with non-optional ones cannot.
public struct CQRSHandlerError: Error, Sendable, CustomStringConvertible {
    /// The service whose handler failed.
    public var service: ServiceName
    /// The request type.
    public var request: String
    /// What was missing.
    public var message: String

    /// Creates an error.
    /// - Parameters:
    ///   - service: The service.
    ///   - request: The request type's name.
    ///   - message: What was missing.
    public init(service: ServiceName, request: String, message: String) {
        self.service = service
        self.request = request
        self.message = message
    }

    /// `service: request: message`.
    public var description: String {
        "\(self.service): \(self.request): \(self.message)"
    }
}

extension RequestHandlers {
    /// Handles `type` as a command on an aggregate: loads it from `repository`, runs `decide`,
    /// appends the events it returns with the loaded version (retrying on a conflict as `retry`
    /// says), and answers where they landed.
    ///
    /// The repository is one the service has from the moment it exists: a `let` of a service
    /// built by its factory (``ServiceHost/register(_:loadBalancing:_:)``), so the handler cannot
    /// run without it.
    ///
    /// ```swift
    /// handlers.command(RegisterUser.self, repository: { $0.users }, expecting: .new) { user, request in
    ///     try user.register(email: request.email, name: request.name)
    /// }
    /// ```
    /// - Parameters:
    ///   - type: The command request type.
    ///   - repository: The service's repository.
    ///   - existence: Whether the aggregate must be new, must exist, or either.
    ///   - retry: Reload and decide again on a conflict; default three attempts.
    ///   - decide: The command: the events it emits, or a thrown domain error, which reaches the
    ///     caller as the handler's failure.
    public mutating func command<R: CommandRequest, A: Aggregate>(
        _ type: R.Type,
        repository: @escaping @Sendable (isolated Service) -> AggregateRepository<A>,
        expecting existence: AggregateExistence = .any,
        retry: ConflictRetry = .attempts(3),
        _ decide: @escaping @Sendable (A, R) throws -> [A.Event]
    ) {
        self.on(type) { service, request in
            try await Self.execute(request, on: repository(service), expecting: existence, retry: retry, decide)
        }
    }

    /// Handles `type` as a command on an aggregate whose repository the service sets up in
    /// ``ServiceActor/start(_:)``: the same as the form with a non-optional repository, except that
    /// a request that arrives while `repository` returns `nil` fails with ``CQRSHandlerError``.
    ///
    /// ```swift
    /// handlers.command(RegisterUser.self, repository: { $0.users }, expecting: .new) { user, request in
    ///     try user.register(email: request.email, name: request.name)
    /// }
    /// ```
    /// - Parameters:
    ///   - type: The command request type.
    ///   - repository: The service's repository, usually made in `start` from its
    ///     ``ServiceEnvironment/storage()``; `nil` before then (the request fails with
    ///     ``CQRSHandlerError``).
    ///   - existence: Whether the aggregate must be new, must exist, or either.
    ///   - retry: Reload and decide again on a conflict; default three attempts.
    ///   - decide: The command: the events it emits, or a thrown domain error, which reaches the
    ///     caller as the handler's failure.
    @_disfavoredOverload  // a non-optional repository takes the form that cannot fail for want of it
    public mutating func command<R: CommandRequest, A: Aggregate>(
        _ type: R.Type,
        repository: @escaping @Sendable (isolated Service) -> AggregateRepository<A>?,
        expecting existence: AggregateExistence = .any,
        retry: ConflictRetry = .attempts(3),
        _ decide: @escaping @Sendable (A, R) throws -> [A.Event]
    ) {
        self.on(type) { service, request in
            guard let repository = repository(service) else {
                throw CQRSHandlerError(service: Service.name, request: R.name, message: "no repository yet")
            }
            return try await Self.execute(request, on: repository, expecting: existence, retry: retry, decide)
        }
    }

    private static func execute<R: CommandRequest, A: Aggregate>(
        _ request: R,
        on repository: AggregateRepository<A>,
        expecting existence: AggregateExistence,
        retry: ConflictRetry,
        _ decide: @escaping @Sendable (A, R) throws -> [A.Event]
    ) async throws -> CommandReceipt {
        let saved = try await repository.execute(request.aggregateID, expecting: existence, retry: retry) {
            aggregate in
            try decide(aggregate, request)
        }
        return CommandReceipt(
            aggregateID: request.aggregateID,
            version: saved.version,
            position: saved.positions.isEmpty ? nil : saved.positions.upperBound - 1
        )
    }

    /// Handles `type` as a query on a projection's read model: waits until the read model
    /// includes the request's ``QueryRequest/minimumPosition`` (if any), then answers from it.
    ///
    /// The runner is one the service has from the moment it exists: a `let` of a service built
    /// by its factory (``ServiceHost/register(_:loadBalancing:_:)``). The wait ends with the
    /// request: a caller's deadline or cancellation stops it.
    /// - Parameters:
    ///   - type: The query request type.
    ///   - runner: The service's projection runner.
    ///   - answer: Reads the answer from the read model.
    public mutating func query<R: QueryRequest>(
        _ type: R.Type,
        runner: @escaping @Sendable (isolated Service) -> ProjectionRunner,
        _ answer: @escaping @Sendable (ProjectionStore, R) async throws -> R.Response
    ) {
        self.on(type) { service, request in
            let runner = runner(service)
            if let position = request.minimumPosition {
                try await runner.waitUntilCaughtUp(to: position)
            }
            return try await answer(runner.projectionStore, request)
        }
    }

    /// Handles `type` as a query on a projection's read model whose runner the service sets up in
    /// ``ServiceActor/start(_:)``: the same as the form with a non-optional runner, except that a
    /// request that arrives while `runner` returns `nil` fails with ``CQRSHandlerError``.
    ///
    /// The wait ends with the request: a caller's deadline or cancellation stops it.
    /// - Parameters:
    ///   - type: The query request type.
    ///   - runner: The service's projection runner, made and started in `start`; `nil` before
    ///     then (the request fails with ``CQRSHandlerError``).
    ///   - answer: Reads the answer from the read model.
    @_disfavoredOverload  // a non-optional runner takes the form that cannot fail for want of it
    public mutating func query<R: QueryRequest>(
        _ type: R.Type,
        runner: @escaping @Sendable (isolated Service) -> ProjectionRunner?,
        _ answer: @escaping @Sendable (ProjectionStore, R) async throws -> R.Response
    ) {
        self.on(type) { service, request in
            guard let runner = runner(service) else {
                throw CQRSHandlerError(service: Service.name, request: R.name, message: "no projection runner yet")
            }
            if let position = request.minimumPosition {
                try await runner.waitUntilCaughtUp(to: position)
            }
            return try await answer(runner.projectionStore, request)
        }
    }
}
