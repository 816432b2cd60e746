import KeelCore
import KeelEventSourcing

/// A service's own durable storage, from ``ServiceEnvironment/storage()``.
///
/// Every service of a host gets its own namespace in the host's event store (its streams) and in
/// the host's state store (its key-value entries), which no other service can reach (another
/// service's environment hands out that service's namespaces, never this one's). The instances
/// of one service share them. All services' streams share one log, so under group commit the
/// appends of every service share each `fsync`; key-value state lives beside that log, not in
/// it, so writing it neither grows the log nor wakes projections.
///
/// ```swift
/// func start(_ environment: ServiceEnvironment) async throws {
///     let storage = try await environment.storage()
///     try await storage.keyValues.put(Array("on".utf8), forKey: "feature.checkout")
///     try await storage.events.append(opened, to: "cart-7", expecting: .noStream)
/// }
/// ```
public struct ServiceStorage: Sendable {
    /// The service's streams: a view of the host's event store that holds only this service's
    /// streams (see ``/KeelEventSourcing/NamespacedEventStore``). Give it to an
    /// ``/KeelEventSourcing/AggregateRepository`` for event-sourced state.
    public let events: NamespacedEventStore
    /// The service's key-value store, for state that is not event-sourced: get, put, delete and
    /// atomic batches, in the host's state store (a ``/KeelEventSourcing/FileStateStore`` in the
    /// `state` directory of the host's storage directory, or an
    /// ``/KeelEventSourcing/InMemoryStateStore``).
    public let keyValues: StateNamespace

    let host: HostStorage
    let service: ServiceName

    /// Another key-value namespace of this service, such as a projection's read model and
    /// checkpoint: as private to the service as ``keyValues``, and apart from it and from every
    /// other name.
    ///
    /// ```swift
    /// let readModel = try await storage.keyValues(named: "customer-directory")
    /// let runner = ProjectionRunner(
    ///     projection: CustomerDirectory(customers: customers),
    ///     eventStore: storage.events,
    ///     projectionStore: ProjectionStore(keyValueStore: readModel)
    /// )
    /// ```
    ///
    /// A namespace an earlier version kept in the event log under the same name moves into the
    /// state store the first time it is asked for.
    /// - Parameter name: The namespace's name, unique within the service; not empty, not `state`
    ///   (that is ``keyValues``), and not starting with `durable-` (durable subscriptions'
    ///   checkpoints).
    /// - Returns: The namespace.
    /// - Throws: ``/KeelEventSourcing/KeyValueStoreError`` with
    ///   ``/KeelEventSourcing/KeyValueStoreError/Code/invalidNamespace`` for an empty or reserved
    ///   name; what opening the host's stores throws; or a
    ///   ``/KeelEventSourcing/KeyValueStoreError`` from moving an earlier version's namespace.
    public func keyValues(named name: String) async throws -> StateNamespace {
        guard !name.isEmpty, name != "state", !name.hasPrefix("durable-") else {
            throw KeyValueStoreError(
                code: .invalidNamespace,
                namespace: name,
                message: "a service's key-value namespace must not be empty, `state` or start with `durable-`"
            )
        }
        return try await self.host.stateNamespace(name, of: self.service, events: self.events)
    }
}

/// Where a host keeps its services' data.
public struct StorageLocation: Sendable, Hashable, CustomStringConvertible {
    enum Base: Sendable, Hashable {
        case directory(String)
        case inMemory
        case stores(Stores)
    }

    /// Stores the application made and owns, told apart by the identity of the location that
    /// names them.
    final class Stores: Sendable, Hashable {
        let events: any EventStore
        let state: any StateStore
        let name: String

        init(events: any EventStore, state: any StateStore, name: String) {
            self.events = events
            self.state = state
            self.name = name
        }

        static func == (lhs: Stores, rhs: Stores) -> Bool { lhs === rhs }

        func hash(into hasher: inout Hasher) {
            hasher.combine(ObjectIdentifier(self))
        }
    }

    let base: Base

    /// A ``/KeelEventSourcing/FileEventStore`` in `path` (created if missing) and a
    /// ``/KeelEventSourcing/FileStateStore`` in `path/state`, opened the first time a service asks
    /// for its storage and closed when the host shuts down.
    ///
    /// Key-value state that an earlier version kept as `keel.kv-*` streams in the event log moves
    /// into the state store the first time its service opens it (see
    /// ``/KeelEventSourcing/EventStoreKeyValueStore/migrate(namespace:from:to:)``).
    /// - Parameter path: The directory.
    /// - Returns: The location.
    public static func directory(_ path: String) -> StorageLocation {
        StorageLocation(base: .directory(path))
    }

    /// The default: the embedded directory `.keel/data` under the working directory.
    public static let embedded = StorageLocation.directory(".keel/data")

    /// An ``/KeelEventSourcing/InMemoryEventStore`` and an
    /// ``/KeelEventSourcing/InMemoryStateStore``: nothing survives the host. For tests.
    public static let inMemory = StorageLocation(base: .inMemory)

    /// Stores the application opened itself: an event store and a state store of any kind, such
    /// as a PostgreSQL event store that several processes share (Keel's integrations package).
    ///
    /// Every service gets its namespaces in them as in the host's own stores; service code does not
    /// change. The host neither opens nor closes them: the application closes them after the host
    /// has shut down (which stops the durable subscriptions reading them). Two hosts given the same
    /// stores share their services' streams, so that one host's durable subscriptions receive the
    /// other's durable publications; a service's key-value namespaces are its own, so run each
    /// service in one of the hosts only.
    ///
    /// Two locations made by separate calls are different locations, even for the same stores.
    /// - Parameters:
    ///   - events: The event store.
    ///   - state: The state store, for the services' key-value state and the durable
    ///     subscriptions' checkpoints.
    ///   - name: What ``description`` says of the stores, such as `postgres 127.0.0.1:5432/keel`.
    /// - Returns: The location.
    public static func stores(events: any EventStore, state: any StateStore, name: String) -> StorageLocation {
        StorageLocation(base: .stores(Stores(events: events, state: state, name: name)))
    }

    /// `directory <path>`, `in memory`, or the name given to ``stores(events:state:name:)``.
    public var description: String {
        switch self.base {
        case .directory(let path): "directory \(path)"
        case .inMemory: "in memory"
        case .stores(let stores): stores.name
        }
    }
}

/// The host's stores, opened on first use, and each service's namespaces in them.
actor HostStorage {
    let location: StorageLocation
    private var stores: (events: any EventStore, state: any StateStore)?
    private var fileStores: (events: FileEventStore, state: FileStateStore)?
    private var memoryState: InMemoryStateStore?
    /// The migration of each state namespace from the event log, run once per host.
    private var migrations: [String: Task<Void, any Error>] = [:]
    private var subscriptions: [ServiceName: [DurableSubscription]] = [:]
    private var isClosed = false
    /// The task executor preference of the tasks the storage starts (migrations, durable
    /// subscriptions' runners).
    nonisolated let executor: (any TaskExecutor)?

    /// Where the stores log the cuts their recovery makes when they open.
    private let telemetry: any Telemetry

    init(location: StorageLocation, executor: (any TaskExecutor)? = nil, telemetry: any Telemetry = NoOpTelemetry()) {
        self.location = location
        self.executor = executor
        self.telemetry = telemetry
    }

    /// The storage of `service`, opening the host's stores if this is the first request.
    func storage(for service: ServiceName) async throws -> ServiceStorage {
        let events = NamespacedEventStore(
            namespace: Self.namespace(for: service),
            base: try await self.openStores().events
        )
        let keyValues = try await self.stateNamespace("state", of: service, events: events)
        return ServiceStorage(events: events, keyValues: keyValues, host: self, service: service)
    }

    /// The state namespace `name` of `service`, moved first from the service's event streams if
    /// an earlier version kept it there.
    func stateNamespace(
        _ name: String,
        of service: ServiceName,
        events: NamespacedEventStore
    ) async throws -> StateNamespace {
        let state = try await self.openStores().state
        let namespace = state.namespace(Self.namespace(for: service) + "/" + name)
        let migration =
            self.migrations[namespace.namespace]
            ?? TaskSpawner.spawn(executor: self.executor) {
                try await EventStoreKeyValueStore.migrate(namespace: name, from: events, to: namespace)
            }
        self.migrations[namespace.namespace] = migration
        do {
            try await migration.value
        } catch {
            // Let the next request try again.
            if self.migrations[namespace.namespace] == migration { self.migrations[namespace.namespace] = nil }
            throw error
        }
        return namespace
    }

    /// The host's whole event store, every namespace: only for the host's own durable
    /// subscriptions.
    func sharedStore() async throws -> any EventStore {
        try await self.openStores().events
    }

    /// Starts a durable subscription's runner and keeps it, to stop it with its service.
    ///
    /// A runner is never left running after ``close()``: it is kept before it starts, so a
    /// `close` that runs while it starts either stops it or is seen here afterwards.
    /// - Throws: ``/KeelEventSourcing/EventStoreError/Code/closed`` when the storage is closed;
    ///   ``HostError`` with ``HostError/Code-swift.struct/duplicateSubscription`` when `service`
    ///   already runs a durable subscription of that name (the two would share its checkpoint).
    func start(_ subscription: DurableSubscription, for service: ServiceName) async throws {
        guard !self.isClosed else {
            throw EventStoreError(code: .closed, message: "the host has shut down its storage")
        }
        if self.subscriptions[service]?.contains(where: { $0.name == subscription.name }) == true {
            throw HostError(
                code: .duplicateSubscription,
                services: [service],
                message: "\(service) already has a durable subscription named \(subscription.name)"
            )
        }
        let runner = subscription.runner
        self.subscriptions[service, default: []].append(subscription)
        await runner.start()
        if self.isClosed {
            await runner.stop()
            throw EventStoreError(code: .closed, message: "the host has shut down its storage")
        }
    }

    /// Stops the durable subscriptions of `service` and waits for them.
    func stopSubscriptions(of service: ServiceName) async {
        let subscriptions = self.subscriptions.removeValue(forKey: service) ?? []
        for subscription in subscriptions { await subscription.runner.stop() }
    }

    /// The running durable subscription of `service` named `name`, the latest if there are
    /// several.
    func subscription(named name: String, of service: ServiceName) -> DurableSubscription? {
        self.subscriptions[service]?.last { $0.name == name }
    }

    private func openStores() async throws -> (events: any EventStore, state: any StateStore) {
        guard !self.isClosed else {
            throw EventStoreError(code: .closed, message: "the host has shut down its storage")
        }
        if let stores = self.stores { return stores }
        let stores: (events: any EventStore, state: any StateStore)
        switch self.location.base {
        case .inMemory:
            let state = InMemoryStateStore()
            self.memoryState = state
            stores = (InMemoryEventStore(), state)
        case .stores(let given):
            // The application's: not closed here.
            stores = (given.events, given.state)
        case .directory(let path):
            let events = try FileEventStore(directory: path, telemetry: self.telemetry)
            let state: FileStateStore
            do {
                state = try FileStateStore(directory: path + "/state", telemetry: self.telemetry)
            } catch {
                await events.close()
                throw error
            }
            self.fileStores = (events, state)
            stores = (events, state)
        }
        self.stores = stores
        return stores
    }

    /// Closes the host's stores; later requests fail with ``/KeelEventSourcing/EventStoreError/Code/closed``.
    func close() async {
        self.isClosed = true
        let subscriptions = self.subscriptions.values.flatMap { $0 }
        self.subscriptions = [:]
        for subscription in subscriptions { await subscription.runner.stop() }
        for migration in self.migrations.values { _ = try? await migration.value }
        if let stores = self.fileStores {
            await stores.state.close()
            await stores.events.close()
        }
        self.memoryState?.close()
        self.fileStores = nil
        self.memoryState = nil
        self.stores = nil
        self.migrations = [:]
    }

    /// A service name as a namespace: `/` and `%` are percent-encoded, so distinct names give
    /// distinct namespaces and none contains `/`.
    static func namespace(for service: ServiceName) -> String {
        var namespace = ""
        for character in service.rawValue {
            switch character {
            case "%": namespace += "%25"
            case "/": namespace += "%2F"
            default: namespace.append(character)
            }
        }
        return namespace.isEmpty ? "%" : namespace
    }
}
