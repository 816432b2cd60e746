/// Turns typed ``DomainEvent``s into ``EventData`` to append, and ``RecordedEvent``s read from a
/// store back into typed events, upcasting payloads written at older schema versions on the way.
///
/// ```swift
/// var registry = EventTypeRegistry()
/// registry.register(UserRegistered.self, upcasters: [userRegisteredV1ToV2])
/// let serializer = EventSerializer(registry: registry)   // JSON by default
///
/// // Write: type name, current schema version, payload.
/// let data = try serializer.encode(UserRegistered(email: "ada@example.com", name: "Ada"), metadata: metadata)
/// try await store.append(data, to: "user-42", expecting: .noStream)
///
/// // Read as one type, or as whatever the registry says the type name is.
/// for recorded in try await store.readStream("user-42") {
///     let event = try serializer.decode(recorded)   // any DomainEvent
/// }
/// ```
///
/// Decoding an event written at schema version `n` of a type now at version `m`:
/// - `n == m`: the codec decodes the payload.
/// - `n < m`: the registry's upcasters of the type name run in order, `n → n + 1 → … → m`, then
///   the codec decodes the result. If any step is missing, nothing runs and decoding fails with
///   ``EventCodecError/Code/missingUpcaster``, naming the missing steps.
/// - `n > m`: the event was written by a newer release of the application; decoding fails with
///   ``EventCodecError/Code/schemaVersionTooNew`` rather than guess.
///
/// A type name the registry does not know fails with ``EventCodecError/Code/unknownEventType``
/// or is skipped, as ``Configuration/unknownEventTypes`` says.
///
/// The serializer is an immutable value and takes no lock: encoding and decoding run
/// synchronously on the calling task, never suspend, and may be called from any number of tasks
/// at once. Keep it out of a store's critical section: encode before appending, decode after
/// reading.
public struct EventSerializer: Sendable {
    /// The event types and their upcasters.
    public let registry: EventTypeRegistry
    /// The payload format.
    public let codec: any EventCodec
    /// How to treat what the registry does not know.
    public let configuration: Configuration

    /// Makes a serializer.
    /// - Parameters:
    ///   - registry: The event types and their upcasters; empty by default, which is enough to
    ///     encode and to decode events at their current version with ``decode(_:as:)``.
    ///   - codec: The payload format; ``JSONEventCodec`` by default.
    ///   - configuration: How to treat unknown event types.
    public init(
        registry: EventTypeRegistry = EventTypeRegistry(),
        codec: any EventCodec = JSONEventCodec(),
        configuration: Configuration = Configuration()
    ) {
        self.registry = registry
        self.codec = codec
        self.configuration = configuration
    }

    // MARK: Encoding

    /// Encodes `event` into what a store appends: its ``DomainEvent/eventType``, its current
    /// ``DomainEvent/schemaVersion``, `metadata`, and the codec's payload.
    /// - Parameters:
    ///   - event: The event.
    ///   - metadata: Its id, time and trace, such as ``EventMetadata/current(id:time:)``.
    /// - Returns: The event to append.
    /// - Throws: ``EventCodecError`` with ``EventCodecError/Code/encodingFailed`` when the codec
    ///   fails, or ``EventCodecError/Code/typeMismatch`` when the registry holds another Swift type
    ///   under the event's type name (two types claim one name).
    public func encode<Event: DomainEvent>(
        _ event: Event,
        metadata: EventMetadata
    ) throws(EventCodecError) -> EventData {
        let name = Event.eventType
        if let registered = self.registry.registeredType(named: name), registered != Event.self {
            throw EventCodecError(
                code: .typeMismatch,
                eventType: name,
                schemaVersion: Event.schemaVersion,
                message: "\(Event.self) has type name \(name), which is registered to \(registered)"
            )
        }
        let payload: [UInt8]
        do {
            payload = try self.codec.encode(event)
        } catch {
            throw EventCodecError(
                code: .encodingFailed,
                eventType: name,
                schemaVersion: Event.schemaVersion,
                message: "the codec could not encode \(Event.self)",
                cause: error
            )
        }
        return EventData(type: name, schemaVersion: Event.schemaVersion, metadata: metadata, payload: payload)
    }

    // MARK: Decoding

    /// Decodes `recorded` as `type`, upcasting its payload to `type`'s current schema version
    /// first when it is older.
    ///
    /// `type` need not be registered: an event at its current version decodes without the
    /// registry, and older versions need only the registry's upcasters of its type name. So a
    /// reader may decode into a type of its own that shares the event's name and schema version,
    /// such as a projection's view with only the fields it uses.
    /// - Parameters:
    ///   - recorded: An event read from a store.
    ///   - type: The type to decode; its ``DomainEvent/eventType`` must be the event's type name.
    /// - Returns: The event.
    /// - Throws: ``EventCodecError``, carrying the event's type name, schema version, stream,
    ///   stream version and position, with code ``EventCodecError/Code/typeMismatch`` (another
    ///   type name), ``EventCodecError/Code/schemaVersionTooNew``,
    ///   ``EventCodecError/Code/missingUpcaster``, ``EventCodecError/Code/upcastingFailed`` or
    ///   ``EventCodecError/Code/decodingFailed`` (a corrupt payload; the codec's error is the
    ///   cause).
    public func decode<Event: DomainEvent>(
        _ recorded: RecordedEvent,
        as type: Event.Type
    ) throws(EventCodecError) -> Event {
        guard recorded.type == Event.eventType else {
            throw Self.error(
                .typeMismatch,
                recorded,
                currentVersion: nil,
                message: "cannot decode an event of type \(recorded.type) as \(Event.self) (\(Event.eventType))"
            )
        }
        let payload = try self.upcast(recorded, to: Event.schemaVersion)
        do {
            return try self.codec.decode(type, from: payload)
        } catch {
            let upcast = recorded.schemaVersion == Event.schemaVersion ? "" : " (after upcasting)"
            throw Self.error(
                .decodingFailed,
                recorded,
                currentVersion: Event.schemaVersion,
                message: "the payload\(upcast) is not a valid \(Event.self) at version \(Event.schemaVersion)",
                cause: error
            )
        }
    }

    /// Decodes `recorded` as the Swift type the registry holds under its type name, upcasting its
    /// payload first when it is older than that type's current schema version.
    ///
    /// Cast the result, or switch over it:
    ///
    /// ```swift
    /// switch try serializer.decode(recorded) {
    /// case let registered as UserRegistered: …
    /// case let renamed as UserRenamed: …
    /// default: break   // skipped (nil), or a type this reader ignores
    /// }
    /// ```
    /// - Parameter recorded: An event read from a store.
    /// - Returns: The event; `nil` when its type name is not registered and
    ///   ``Configuration/unknownEventTypes`` is ``UnknownTypePolicy/skip``.
    /// - Throws: ``EventCodecError`` as ``decode(_:as:)``, or with
    ///   ``EventCodecError/Code/unknownEventType`` when the type name is not registered and the
    ///   policy is ``UnknownTypePolicy/fail``.
    public func decode(_ recorded: RecordedEvent) throws(EventCodecError) -> (any DomainEvent)? {
        guard let type = self.registry.registeredType(named: recorded.type) else {
            if self.configuration.unknownEventTypes == .skip { return nil }
            throw Self.error(
                .unknownEventType,
                recorded,
                currentVersion: nil,
                message: "no Swift type is registered under \(recorded.type)"
            )
        }
        return try self.decode(recorded, as: type)
    }

    // MARK: Internals

    /// The payload of `recorded`, brought to schema version `target` by the registry's upcasters.
    private func upcast(_ recorded: RecordedEvent, to target: Int) throws(EventCodecError) -> [UInt8] {
        let version = recorded.schemaVersion
        if version == target { return recorded.payload }
        guard version < target else {
            throw Self.error(
                .schemaVersionTooNew,
                recorded,
                currentVersion: target,
                message: """
                    the payload is at version \(version), newer than the current version \(target): it was \
                    written by a newer release
                    """
            )
        }
        var steps: [EventUpcaster] = []
        steps.reserveCapacity(target - version)
        var missing: [Int] = []
        for source in version..<target {
            if let upcaster = self.registry.upcaster(for: recorded.type, from: source) {
                steps.append(upcaster)
            } else {
                missing.append(source)
            }
        }
        guard missing.isEmpty else {
            let gaps = missing.map { "\($0) → \($0 + 1)" }.joined(separator: ", ")
            throw Self.error(
                .missingUpcaster,
                recorded,
                currentVersion: target,
                missingUpcasters: missing,
                message: "cannot upcast version \(version) to \(target): no upcaster for \(gaps)"
            )
        }
        var payload = recorded.payload
        for step in steps {
            do {
                payload = try step.upcast(payload, using: self.codec)
            } catch {
                throw Self.error(
                    .upcastingFailed,
                    recorded,
                    currentVersion: target,
                    message: "the upcaster from version \(step.sourceVersion) to \(step.targetVersion) failed",
                    cause: error
                )
            }
        }
        return payload
    }

    private static func error(
        _ code: EventCodecError.Code,
        _ recorded: RecordedEvent,
        currentVersion: Int?,
        missingUpcasters: [Int] = [],
        message: String,
        cause: (any Error)? = nil
    ) -> EventCodecError {
        EventCodecError(
            code: code,
            eventType: recorded.type,
            schemaVersion: recorded.schemaVersion,
            currentSchemaVersion: currentVersion,
            missingUpcasters: missingUpcasters,
            stream: recorded.stream,
            streamVersion: recorded.version,
            position: recorded.position,
            message: message,
            cause: cause
        )
    }
}
