import KeelCore
import KeelEventSourcing
import KeelTesting
import Synchronization
import Testing

/// A user's card in the typed read model: written whole, read back whole.
struct UserCard: Codable, Equatable {
    var name: String
    var email: String
    var emailChanges: Int
}

/// Users' cards by aggregate id, typed: `user/<id>` holds a `UserCard`, `count` an `Int`. Reads
/// its own earlier writes (the card before an email change) through the transaction.
struct UserCards: Projection {
    let name = "user-cards"
    let serializer = AggregateFixtures.serializer()

    func apply(_ event: RecordedEvent, to transaction: inout ReadModelTransaction) async throws {
        guard let id = event.aggregateID else { return }
        switch event.type {
        case UserRegistered.eventType:
            let registered = try self.serializer.decode(event, as: UserRegistered.self)
            try transaction.set(
                UserCard(name: registered.name, email: registered.email, emailChanges: 0),
                forKey: "user/\(id)"
            )
            let count = try await transaction.value(Int.self, forKey: "count") ?? 0
            try transaction.set(count + 1, forKey: "count")
        case UserEmailChanged.eventType:
            let changed = try self.serializer.decode(event, as: UserEmailChanged.self)
            guard var card = try await transaction.value(UserCard.self, forKey: "user/\(id)") else { return }
            card.email = changed.email
            card.emailChanges += 1
            try transaction.set(card, forKey: "user/\(id)")
        default:
            return
        }
    }
}

/// Writes what an event's type says, to show the typed API's failures: `note` as plain bytes,
/// `answer` as a typed `Int`, then reads or writes a value that does not fit.
struct Misfits: Projection {
    let name = "misfits"

    func apply(_ event: RecordedEvent, to transaction: inout ReadModelTransaction) async throws {
        switch event.type {
        case "write":
            transaction.put(Array("plain text".utf8), forKey: "note")
            try transaction.set(42, forKey: "answer")
        case "read-note-as-card":
            _ = try await transaction.value(UserCard.self, forKey: "note")
        case "write-nan":
            try transaction.set(Double.nan, forKey: "nan")
        default:
            return
        }
    }
}

/// Records the values it encodes, to show that a projection store's codec is the one used.
final class CountingCodec: EventCodec {
    let encoded = Lock(0)
    let json = JSONEventCodec()

    func encode<Value: Encodable>(_ value: Value) throws -> [UInt8] {
        self.encoded.withLock { $0 += 1 }
        return try self.json.encode(value)
    }

    func decode<Value: Decodable>(_ type: Value.Type, from bytes: [UInt8]) throws -> Value {
        try self.json.decode(type, from: bytes)
    }
}

@Suite("Typed read models", .timeLimit(.minutes(2)))
struct TypedReadModelTests {
    static func event(_ type: String) -> EventData {
        EventData(type: type, metadata: EventMetadata(id: EventID(high: 1, low: 1), time: 0), payload: [])
    }

    static func runner(
        _ projection: some Projection,
        over store: any EventStore,
        codec: any EventCodec = JSONEventCodec(),
        stopOnPoison: Bool = false
    ) -> ProjectionRunner {
        var configuration = ProjectionRunner.Configuration()
        configuration.maxAttempts = 1
        configuration.backoff = .immediate
        if stopOnPoison { configuration.poisonEvents = .stop }
        return ProjectionRunner(
            projection: projection,
            eventStore: store,
            projectionStore: ProjectionStore(
                keyValueStore: InMemoryStateStore().namespace(projection.name),
                codec: codec
            ),
            configuration: configuration
        )
    }

    @Test("a projection writes and reads Codable values by key, and queries read them typed")
    func typedReadModel() async throws {
        let store = InMemoryEventStore()
        let users = AggregateFixtures.repository(store: store)
        try await users.execute("ada") { try $0.register(email: "ada@example.com", name: "Ada") }
        try await users.execute("bob") { try $0.register(email: "bob@example.com", name: "Bob") }
        try await users.execute("ada") { try $0.changeEmail(to: "ada@example.org") }
        let last = try await users.execute("ada") { try $0.changeEmail(to: "ada@keel.dev") }

        let runner = Self.runner(UserCards(), over: store)
        await runner.start()
        // One page: the changes read the card that the registration wrote, not yet committed.
        try await runner.waitUntilCaughtUp(to: last.positions.upperBound - 1)
        let model = runner.projectionStore
        #expect(
            try await model.value(UserCard.self, forKey: "user/ada")
                == UserCard(name: "Ada", email: "ada@keel.dev", emailChanges: 2)
        )
        #expect(try await model.value(UserCard.self, forKey: "user/nobody") == nil)
        #expect(try await model.value(Int.self, forKey: "count") == 2)
        let cards = try await model.values(UserCard.self, withPrefix: "user/")
        #expect(cards.map(\.key) == ["user/ada", "user/bob"])
        #expect(cards.map(\.value.email) == ["ada@keel.dev", "bob@example.com"])

        // Live: the next change reads the committed card.
        let live = try await users.execute("bob") { try $0.changeEmail(to: "bob@keel.dev") }
        try await runner.waitUntilCaughtUp(to: live.positions.upperBound - 1)
        #expect(
            try await model.value(UserCard.self, forKey: "user/bob")
                == UserCard(name: "Bob", email: "bob@keel.dev", emailChanges: 1)
        )
        await runner.stop()
    }

    @Test("bytes that do not decode as the asked type fail with decodingFailed, naming the key")
    func decodingFailure() async throws {
        let store = InMemoryEventStore()
        let written = try await store.append(Self.event("write"), to: "misfit-1")
        let runner = Self.runner(Misfits(), over: store)
        await runner.start()
        try await runner.waitUntilCaughtUp(to: written.positions.lowerBound)
        let model = runner.projectionStore

        // The byte API and the typed API see the same value: the typed one is JSON.
        #expect(try await model.value(Int.self, forKey: "answer") == 42)
        #expect(try await model.value(forKey: "answer") == Array("42".utf8))
        #expect(try await model.value(forKey: "note") == Array("plain text".utf8))

        // Bytes that are not JSON, and JSON of another type.
        let notJSON = await #expect(throws: KeyValueStoreError.self) {
            try await model.value(Int.self, forKey: "note")
        }
        #expect(notJSON?.code == .decodingFailed)
        #expect(notJSON?.key == "note")
        #expect(notJSON?.namespace == "misfits")
        #expect(notJSON?.cause is DecodingError)
        let wrongType = await #expect(throws: KeyValueStoreError.self) {
            try await model.values(String.self, withPrefix: "answer")
        }
        #expect(wrongType?.code == .decodingFailed)
        #expect(wrongType?.key == "answer")
        #expect(wrongType.map { "\($0)" }?.contains("(key answer)") == true)
        // The failed reads changed nothing.
        #expect(try await model.value(forKey: "note") == Array("plain text".utf8))
        await runner.stop()
    }

    @Test("a projection that reads bytes as the wrong type rejects the event with the decoding error")
    func decodingFailureInsideTheProjection() async throws {
        let store = InMemoryEventStore()
        try await store.append(Self.event("write"), to: "misfit-1")
        let poisoned = try await store.append(Self.event("read-note-as-card"), to: "misfit-1")
        let runner = Self.runner(Misfits(), over: store, stopOnPoison: true)
        await runner.start()
        let error = await #expect(throws: ProjectionError.self) {
            try await runner.waitUntilCaughtUp(to: poisoned.positions.lowerBound)
        }
        #expect(error?.code == .handlerFailed)
        #expect(error?.position == poisoned.positions.lowerBound)
        let cause = error?.cause as? KeyValueStoreError
        #expect(cause?.code == .decodingFailed)
        #expect(cause?.key == "note")
        // The event before it is committed; the poisoned one is not.
        #expect(try await runner.checkpoint() == poisoned.positions.lowerBound)
        await runner.stop()
    }

    @Test("a value that does not encode fails with encodingFailed and records nothing")
    func encodingFailure() async throws {
        let store = InMemoryEventStore()
        let poisoned = try await store.append(Self.event("write-nan"), to: "misfit-1")
        let runner = Self.runner(Misfits(), over: store, stopOnPoison: true)
        await runner.start()
        let error = await #expect(throws: ProjectionError.self) {
            try await runner.waitUntilCaughtUp(to: poisoned.positions.lowerBound)
        }
        let cause = error?.cause as? KeyValueStoreError
        #expect(cause?.code == .encodingFailed)
        #expect(cause?.key == "nan")
        #expect(cause?.cause is EncodingError)
        #expect(await runner.projectionStore.keys(withPrefix: "") == [])
        await runner.stop()
    }

    @Test("a projection store encodes and decodes typed values with its codec")
    func customCodec() async throws {
        let store = InMemoryEventStore()
        let written = try await store.append(Self.event("write"), to: "misfit-1")
        let codec = CountingCodec()
        let runner = Self.runner(Misfits(), over: store, codec: codec)
        await runner.start()
        try await runner.waitUntilCaughtUp(to: written.positions.lowerBound)
        #expect(codec.encoded.withLock { $0 } == 1)
        #expect(try await runner.projectionStore.value(Int.self, forKey: "answer") == 42)
        await runner.stop()
    }

    @Test("any key-value store sets and reads Codable values, and names the key when they do not decode")
    func keyValueStoreValues() async throws {
        let state = InMemoryStateStore().namespace("settings")
        try await state.set(UserCard(name: "Ada", email: "ada@example.com", emailChanges: 0), forKey: "card")
        #expect(
            try await state.value(UserCard.self, forKey: "card")
                == UserCard(name: "Ada", email: "ada@example.com", emailChanges: 0)
        )
        #expect(try await state.value(UserCard.self, forKey: "missing") == nil)

        let wrongType = await #expect(throws: KeyValueStoreError.self) {
            try await state.value([String].self, forKey: "card")
        }
        #expect(wrongType?.code == .decodingFailed)
        #expect(wrongType?.key == "card")
        #expect(wrongType?.namespace == "settings")

        let notEncodable = await #expect(throws: KeyValueStoreError.self) {
            try await state.set(Double.infinity, forKey: "infinity")
        }
        #expect(notEncodable?.code == .encodingFailed)
        #expect(try await state.value(forKey: "infinity") == nil)
    }
}
