import KeelEventSourcing

/// A service's own durable storage, from ``ServiceEnvironment/storage()``.
///
/// Every service of a host gets its own namespace in the host's event store: its streams, and a
/// key-value store, which no other service can reach (another service's environment hands out
/// that service's namespace, never this one's). The instances of one service share its
/// namespace and its key-value store. All namespaces share one log, so under group
/// commit the appends of every service share each `fsync`.
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
    /// atomic batches, durable with the host's store.
    public let keyValues: EventStoreKeyValueStore
}

/// Where a host keeps its services' data.
public struct StorageLocation: Sendable, Hashable, CustomStringConvertible {
    enum Base: Hashable {
        case directory(String)
        case inMemory
    }

    let base: Base

    /// A ``/KeelEventSourcing/FileEventStore`` in `path` (created if missing), opened the first
    /// time a service asks for its storage and closed when the host shuts down.
    /// - Parameter path: The directory.
    /// - Returns: The location.
    public static func directory(_ path: String) -> StorageLocation {
        StorageLocation(base: .directory(path))
    }

    /// The default: the embedded directory `.keel/data` under the working directory.
    public static let embedded = StorageLocation.directory(".keel/data")

    /// An ``/KeelEventSourcing/InMemoryEventStore``: nothing survives the host. For tests.
    public static let inMemory = StorageLocation(base: .inMemory)

    /// `directory <path>` or `in memory`.
    public var description: String {
        switch self.base {
        case .directory(let path): "directory \(path)"
        case .inMemory: "in memory"
        }
    }
}

/// The host's store, opened on first use, and each service's namespace in it.
actor HostStorage {
    let location: StorageLocation
    private var store: (any EventStore)?
    private var fileStore: FileEventStore?
    private var keyValues: [ServiceName: EventStoreKeyValueStore] = [:]
    private var subscriptions: [ServiceName: [ProjectionRunner]] = [:]
    private var isClosed = false

    init(location: StorageLocation) {
        self.location = location
    }

    /// The storage of `service`, opening the host's store if this is the first request.
    func storage(for service: ServiceName) async throws -> ServiceStorage {
        guard !self.isClosed else {
            throw EventStoreError(code: .closed, message: "the host has shut down its storage")
        }
        let store = try self.openStore()
        let events = NamespacedEventStore(namespace: Self.namespace(for: service), base: store)
        if let keyValues = self.keyValues[service] {
            return ServiceStorage(events: events, keyValues: keyValues)
        }
        let keyValues = try await EventStoreKeyValueStore.open(store: events, namespace: "state")
        // Another request for the same service may have opened it while this one waited.
        if let existing = self.keyValues[service] {
            return ServiceStorage(events: events, keyValues: existing)
        }
        self.keyValues[service] = keyValues
        return ServiceStorage(events: events, keyValues: keyValues)
    }

    /// The host's whole store, every namespace: only for the host's own durable subscriptions.
    func sharedStore() throws -> any EventStore {
        guard !self.isClosed else {
            throw EventStoreError(code: .closed, message: "the host has shut down its storage")
        }
        return try self.openStore()
    }

    /// Keeps a durable subscription's runner, to stop it with its service.
    func register(_ runner: ProjectionRunner, for service: ServiceName) {
        self.subscriptions[service, default: []].append(runner)
    }

    /// Stops the durable subscriptions of `service` and waits for them.
    func stopSubscriptions(of service: ServiceName) async {
        let runners = self.subscriptions.removeValue(forKey: service) ?? []
        for runner in runners { await runner.stop() }
    }

    private func openStore() throws(EventStoreError) -> any EventStore {
        if let store = self.store { return store }
        let store: any EventStore
        switch self.location.base {
        case .inMemory:
            store = InMemoryEventStore()
        case .directory(let path):
            let file = try FileEventStore(directory: path)
            self.fileStore = file
            store = file
        }
        self.store = store
        return store
    }

    /// Closes the host's store; later requests fail with ``/KeelEventSourcing/EventStoreError/Code/closed``.
    func close() async {
        self.isClosed = true
        let runners = self.subscriptions.values.flatMap { $0 }
        self.subscriptions = [:]
        for runner in runners { await runner.stop() }
        await self.fileStore?.close()
        self.fileStore = nil
        self.store = nil
        self.keyValues = [:]
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
