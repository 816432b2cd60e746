/// The event types an application reads and writes, by their stable type names, with the
/// upcasters that migrate their older schema versions.
///
/// An ``EventSerializer`` looks up the Swift type of a stored event by its type name to decode it
/// as `any DomainEvent`, and the upcasters of a type name to bring an old payload to the type's
/// current ``DomainEvent/schemaVersion``.
///
/// ```swift
/// var registry = EventTypeRegistry()
/// registry.register(UserRegistered.self, upcasters: [userRegisteredV1ToV2, userRegisteredV2ToV3])
/// registry.register(UserRenamed.self)
/// let serializer = EventSerializer(registry: registry)
/// ```
///
/// The registry is a value: build it once at start-up, then share it (through a serializer) with
/// every task. Reads are safe from any number of tasks at once; registering changes only your
/// copy.
///
/// ### Programmer errors
///
/// Registration checks its arguments with `precondition`, because every mistake it can find is a
/// bug in the program, the same on every run, that must not reach a store: registering two
/// different Swift types under one type name, a type with an empty name or a schema version below
/// 1, two upcasters from the same version of one type, or an upcaster from a version that is not
/// older than the type's current version. Registering the same Swift type again is allowed (the
/// upcasters given with it must still be new).
/// Whether every chain is complete is not checked at registration, since an application may never
/// have written some old versions; ask ``missingUpcasters(for:)`` in a test, or let reading fail
/// with ``EventCodecError/Code/missingUpcaster``.
public struct EventTypeRegistry: Sendable {
    private struct Entry: Sendable {
        var type: (any DomainEvent.Type)?
        var upcasters: [Int: EventUpcaster] = [:]
    }

    private var entries: [String: Entry] = [:]

    /// Makes an empty registry.
    public init() {}

    /// Makes a registry of `types` and `upcasters`; see ``register(_:upcasters:)`` and
    /// ``register(_:)``.
    /// - Parameters:
    ///   - types: The event types.
    ///   - upcasters: The upcasters of any of them.
    /// - Precondition: As ``register(_:upcasters:)`` for each.
    public init(_ types: [any DomainEvent.Type], upcasters: [EventUpcaster] = []) {
        for type in types {
            self.register(type)
        }
        for upcaster in upcasters {
            self.register(upcaster)
        }
    }

    /// Registers `type` under its ``DomainEvent/eventType``, with upcasters from its older schema
    /// versions.
    /// - Parameters:
    ///   - type: The event type, at its current schema version.
    ///   - upcasters: Upcasters of `type`'s type name; they may also be registered separately
    ///     with ``register(_:)``.
    /// - Precondition: `type`'s name is not empty and its schema version is at least 1; no other
    ///   Swift type is registered under its name; every upcaster of the name (given here or
    ///   before) reads a version below `type`'s schema version; `upcasters` are all of `type`'s
    ///   name.
    public mutating func register<Event: DomainEvent>(_ type: Event.Type, upcasters: [EventUpcaster] = []) {
        let name = Event.eventType
        let version = Event.schemaVersion
        precondition(!name.isEmpty, "\(Event.self) has an empty event type")
        precondition(version >= 1, "\(Event.self) (\(name)) has schema version \(version), below 1")
        var entry = self.entries[name] ?? Entry()
        if let registered = entry.type {
            precondition(
                registered == type,
                "event type \(name) is already registered to \(registered); cannot register \(Event.self) too"
            )
        }
        for upcaster in entry.upcasters.values {
            Self.checkUpcaster(upcaster, currentVersion: version, of: type)
        }
        entry.type = type
        self.entries[name] = entry
        for upcaster in upcasters {
            precondition(
                upcaster.eventType == name,
                "an upcaster of \(upcaster.eventType) was registered with \(Event.self), whose type is \(name)"
            )
            self.register(upcaster)
        }
    }

    /// Registers an upcaster.
    /// - Parameter upcaster: The upcaster.
    /// - Precondition: No upcaster of the same type name reads the same version; when a type is
    ///   registered under the name, the upcaster reads a version below its schema version.
    public mutating func register(_ upcaster: EventUpcaster) {
        var entry = self.entries[upcaster.eventType] ?? Entry()
        precondition(
            entry.upcasters[upcaster.sourceVersion] == nil,
            """
            event type \(upcaster.eventType) already has an upcaster from version \(upcaster.sourceVersion) \
            to \(upcaster.targetVersion)
            """
        )
        if let type = entry.type {
            Self.checkUpcaster(upcaster, currentVersion: type.schemaVersion, of: type)
        }
        entry.upcasters[upcaster.sourceVersion] = upcaster
        self.entries[upcaster.eventType] = entry
    }

    private static func checkUpcaster(
        _ upcaster: EventUpcaster,
        currentVersion: Int,
        of type: any DomainEvent.Type
    ) {
        precondition(
            upcaster.sourceVersion < currentVersion,
            """
            an upcaster of \(upcaster.eventType) reads version \(upcaster.sourceVersion), but \(type), its \
            current type, is at version \(currentVersion)
            """
        )
    }

    /// The Swift type registered under `eventType`, at its current schema version.
    /// - Parameter eventType: A type name, such as `user.registered`.
    /// - Returns: The type, or `nil` when none is registered under the name.
    public func registeredType(named eventType: String) -> (any DomainEvent.Type)? {
        self.entries[eventType]?.type
    }

    /// The type names of the registered Swift types, sorted.
    public var eventTypes: [String] {
        self.entries.compactMap { $0.value.type == nil ? nil : $0.key }.sorted()
    }

    /// The upcaster of `eventType` that reads `version`.
    /// - Parameters:
    ///   - eventType: A type name.
    ///   - version: The version the upcaster reads.
    /// - Returns: The upcaster, or `nil` when none is registered.
    public func upcaster(for eventType: String, from version: Int) -> EventUpcaster? {
        self.entries[eventType]?.upcasters[version]
    }

    /// The versions of `eventType`, from 1 up to below its current schema version, that no
    /// upcaster reads: empty when every old version can be read.
    ///
    /// A test that asserts this is empty for every type in ``eventTypes`` catches a forgotten
    /// upcaster before a reader meets an old event.
    /// - Parameter eventType: A registered type name.
    /// - Returns: The versions with no upcaster from them, ascending; empty also for an
    ///   unregistered name.
    public func missingUpcasters(for eventType: String) -> [Int] {
        guard let type = self.registeredType(named: eventType) else { return [] }
        return self.missingUpcasters(for: eventType, from: 1, to: type.schemaVersion)
    }

    /// The versions in `version..<target` that no upcaster of `eventType` reads.
    func missingUpcasters(for eventType: String, from version: Int, to target: Int) -> [Int] {
        guard version < target else { return [] }
        let upcasters = self.entries[eventType]?.upcasters ?? [:]
        return (version..<target).filter { upcasters[$0] == nil }
    }
}
