import Foundation
import KeelCore
import KeelEventSourcing
import Testing

@Suite("Event codec and serializer", .timeLimit(.minutes(2)))
struct CodecTests {
    struct Unordered: Codable, Equatable {
        var zebra: Int
        var apple: String
        var middle: [String: Int]
    }

    @Test("the JSON codec sorts keys, so one value always gives the same bytes")
    func jsonIsDeterministic() throws {
        let codec = JSONEventCodec()
        let value = Unordered(zebra: 1, apple: "a", middle: ["z": 26, "b": 2, "m": 13, "a": 1])
        let bytes = try codec.encode(value)
        #expect(
            String(decoding: bytes, as: UTF8.self) == #"{"apple":"a","middle":{"a":1,"b":2,"m":13,"z":26},"zebra":1}"#
        )
        for _ in 0..<20 {
            #expect(try codec.encode(value) == bytes)
        }
        #expect(try codec.decode(Unordered.self, from: bytes) == value)
    }

    @Test("a configured JSON codec keeps its strategies and sorts keys too")
    func configuredJSON() throws {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .secondsSince1970
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .secondsSince1970
        let codec = JSONEventCodec(encoder: encoder, decoder: decoder)
        let event = AccountOpened(owner: "ada", openedAt: Date(timeIntervalSince1970: 86_400))
        let bytes = try codec.encode(event)
        #expect(String(decoding: bytes, as: UTF8.self) == #"{"openedAt":86400,"owner":"ada"}"#)
        #expect(try codec.decode(AccountOpened.self, from: bytes) == event)
    }

    @Test("encoding gives the type name, the current schema version, the metadata and the payload")
    func encodeToEventData() throws {
        let serializer = Fixtures.serializer()
        let metadata = Fixtures.metadata(3)
        let data = try serializer.encode(AccountClosed(reason: "moved"), metadata: metadata)
        #expect(data.type == "account.closed")
        #expect(data.schemaVersion == 2)
        #expect(data.metadata == metadata)
        #expect(String(decoding: data.payload, as: UTF8.self) == #"{"reason":"moved"}"#)

        let deposited = try serializer.encode(MoneyDeposited(amountCents: 5, memo: nil), metadata: metadata)
        #expect(deposited.schemaVersion == 1, "the default schema version is 1")
    }

    @Test("several event types round-trip through a store and the registry")
    func roundTripThroughStore() async throws {
        let serializer = Fixtures.serializer()
        let events: [any DomainEvent] = [
            AccountOpened(owner: "ada", openedAt: Date(timeIntervalSince1970: 1_700_000_000)),
            MoneyDeposited(amountCents: 1_250, memo: "salary"),
            MoneyDeposited(amountCents: 99, memo: nil),
            ItemAdded(productID: "P-9", quantity: 2, unitPriceCents: 450),
            AccountClosed(reason: "moved away"),
        ]
        let store = InMemoryEventStore()
        for (index, event) in events.enumerated() {
            try await store.append(try serializer.encode(event, metadata: Fixtures.metadata(index)), to: "account-1")
        }

        let recorded = try await store.readStream("account-1")
        #expect(recorded.map(\.type) == events.map { type(of: $0).eventType })
        #expect(recorded.map(\.metadata) == (0..<events.count).map(Fixtures.metadata))

        let decoded = try recorded.map { try #require(try serializer.decode($0)) }
        #expect(decoded[0] as? AccountOpened == events[0] as? AccountOpened)
        #expect(decoded[1] as? MoneyDeposited == events[1] as? MoneyDeposited)
        #expect(decoded[2] as? MoneyDeposited == events[2] as? MoneyDeposited)
        #expect(decoded[3] as? ItemAdded == events[3] as? ItemAdded)
        #expect(decoded[4] as? AccountClosed == events[4] as? AccountClosed)

        #expect(try serializer.decode(recorded[1], as: MoneyDeposited.self) == events[1] as? MoneyDeposited)
        #expect(try serializer.decode(recorded[4], as: AccountClosed.self) == AccountClosed(reason: "moved away"))
    }

    @Test("decoding as a type needs no registry when the event is at its current version")
    func decodeWithoutRegistry() throws {
        let serializer = EventSerializer()
        let data = try serializer.encode(MoneyDeposited(amountCents: 7, memo: "x"), metadata: Fixtures.metadata(0))
        let event = try serializer.decode(Fixtures.recorded(data), as: MoneyDeposited.self)
        #expect(event == MoneyDeposited(amountCents: 7, memo: "x"))
        let error = #expect(throws: EventCodecError.self) { try serializer.decode(Fixtures.recorded(data)) }
        #expect(error?.code == .unknownEventType)
    }

    @Test("decoding as a type of another name is a type mismatch")
    func decodeAsWrongType() throws {
        let serializer = Fixtures.serializer()
        let data = try serializer.encode(MoneyDeposited(amountCents: 1, memo: nil), metadata: Fixtures.metadata(0))
        let error = #expect(throws: EventCodecError.self) {
            try serializer.decode(Fixtures.recorded(data, position: 4), as: AccountOpened.self)
        }
        #expect(error?.code == .typeMismatch)
        #expect(error?.eventType == "account.deposited")
        #expect(error?.position == 4)
    }

    @Test("encoding a type whose name is registered to another type is a type mismatch")
    func encodeImpostor() {
        let serializer = Fixtures.serializer()
        let error = #expect(throws: EventCodecError.self) {
            try serializer.encode(ImpostorItemAdded(productID: "x"), metadata: Fixtures.metadata(0))
        }
        #expect(error?.code == .typeMismatch)
        #expect(error?.eventType == ItemAdded.eventType)
        #expect(error?.message.contains("ImpostorItemAdded") == true)
    }

    @Test("an encoder failure is an encodingFailed error with the encoder's error as cause")
    func encodingFailure() {
        let serializer = Fixtures.serializer()
        let error = #expect(throws: EventCodecError.self) {
            // Plain JSON has no representation for infinity.
            try serializer.encode(NonFinite(value: .infinity), metadata: Fixtures.metadata(0))
        }
        #expect(error?.code == .encodingFailed)
        #expect(error?.eventType == "test.non-finite")
        #expect(error?.schemaVersion == 1)
        #expect(error?.cause is EncodingError)
    }

    struct NonFinite: DomainEvent {
        static let eventType = "test.non-finite"
        var value: Double
    }

    @Test("an unknown type name fails under the fail policy", arguments: [0, 1])
    func unknownTypeFails(_ variant: Int) throws {
        // Variant 0: the default configuration; variant 1: the policy spelled out.
        let serializer =
            variant == 0
            ? EventSerializer(registry: EventTypeRegistry([MoneyDeposited.self]))
            : Fixtures.serializer(unknownEventTypes: .fail)
        let data = EventData(
            type: "account.frozen",
            schemaVersion: 3,
            metadata: Fixtures.metadata(1),
            payload: Array("{}".utf8)
        )
        let error = #expect(throws: EventCodecError.self) {
            try serializer.decode(Fixtures.recorded(data, stream: "account-9", version: 2, position: 11))
        }
        #expect(error?.code == .unknownEventType)
        #expect(error?.eventType == "account.frozen")
        #expect(error?.schemaVersion == 3)
        #expect(error?.stream == "account-9")
        #expect(error?.streamVersion == 2)
        #expect(error?.position == 11)
    }

    @Test("an unknown type name is skipped under the skip policy, and known ones still decode")
    func unknownTypeSkipped() async throws {
        let serializer = Fixtures.serializer(unknownEventTypes: .skip)
        let unknown = EventData(type: "account.frozen", metadata: Fixtures.metadata(1), payload: Array("{}".utf8))
        let store = InMemoryEventStore(events: [
            (
                "account-1",
                try serializer.encode(MoneyDeposited(amountCents: 3, memo: nil), metadata: Fixtures.metadata(0))
            ),
            ("account-1", unknown),
            ("account-1", try serializer.encode(AccountClosed(reason: "r"), metadata: Fixtures.metadata(2))),
        ])
        let decoded = try await store.readStream("account-1").compactMap { try serializer.decode($0) }
        #expect(decoded.count == 2)
        #expect(decoded.first as? MoneyDeposited == MoneyDeposited(amountCents: 3, memo: nil))
        #expect(decoded.last as? AccountClosed == AccountClosed(reason: "r"))
        #expect(EventSerializer.UnknownTypePolicy.skip.description == "skip")
        #expect(EventSerializer.Configuration().unknownEventTypes == .fail)
    }

    @Test("a corrupt payload names the type, schema version, stream and position, with the decoder's error")
    func corruptPayload() throws {
        let serializer = Fixtures.serializer()
        let corrupt = EventData(
            type: AccountClosed.eventType,
            schemaVersion: 2,
            metadata: Fixtures.metadata(0),
            payload: Array(#"{"reason": 42"#.utf8)
        )
        for decode in [
            { try serializer.decode(Fixtures.recorded(corrupt, stream: "account-3", version: 5, position: 77)) },
            {
                try serializer.decode(
                    Fixtures.recorded(corrupt, stream: "account-3", version: 5, position: 77),
                    as: AccountClosed.self
                )
            },
        ] as [() throws -> (any DomainEvent)?] {
            let error = #expect(throws: EventCodecError.self) { _ = try decode() }
            #expect(error?.code == .decodingFailed)
            #expect(error?.eventType == "account.closed")
            #expect(error?.schemaVersion == 2)
            #expect(error?.currentSchemaVersion == 2)
            #expect(error?.stream == "account-3")
            #expect(error?.streamVersion == 5)
            #expect(error?.position == 77)
            #expect(error?.cause is DecodingError)
            let description = try #require(error?.description)
            #expect(
                description.hasPrefix(
                    "event codec: decoding failed (type account.closed v2, stream account-3@5, position 77): "
                )
            )
            #expect(description.contains("(cause: "))
        }
    }

    @Test("a payload of the wrong shape is a decoding failure too")
    func wrongShape() {
        let serializer = Fixtures.serializer()
        let data = EventData(
            type: MoneyDeposited.eventType,
            metadata: Fixtures.metadata(0),
            payload: Array(#"{"amountCents":"twelve"}"#.utf8)
        )
        let error = #expect(throws: EventCodecError.self) {
            try serializer.decode(Fixtures.recorded(data), as: MoneyDeposited.self)
        }
        #expect(error?.code == .decodingFailed)
        guard case .typeMismatch? = error?.cause as? DecodingError else {
            Issue.record("expected DecodingError.typeMismatch, got \(String(describing: error?.cause))")
            return
        }
    }

    @Test("a custom codec is used for encoding, decoding and typed upcasting")
    func customCodec() async throws {
        let serializer = Fixtures.serializer(.typed, codec: TaggedJSONCodec())
        let event = MoneyDeposited(amountCents: 10, memo: "tagged")
        let data = try serializer.encode(event, metadata: Fixtures.metadata(0))
        #expect(data.payload.first == TaggedJSONCodec.tag)
        #expect(Array(data.payload.dropFirst()) == Array(#"{"amountCents":10,"memo":"tagged"}"#.utf8))
        #expect(try serializer.decode(Fixtures.recorded(data), as: MoneyDeposited.self) == event)

        // A v1 payload written with the tagged codec upcasts through typed upcasters that decode
        // and encode with it.
        let v1 = EventData(
            type: ItemAdded.eventType,
            schemaVersion: 1,
            metadata: Fixtures.metadata(1),
            payload: try TaggedJSONCodec().encode(ItemAddedV1(sku: "S-1"))
        )
        let upcast = try serializer.decode(Fixtures.recorded(v1), as: ItemAdded.self)
        #expect(upcast == ItemAdded(productID: "S-1", quantity: 1, unitPriceCents: 0))

        // Untagged (plain JSON) bytes are not this codec's format: the codec's error is the cause.
        let plain = EventData(type: MoneyDeposited.eventType, metadata: Fixtures.metadata(2), payload: Array("{}".utf8))
        let error = #expect(throws: EventCodecError.self) {
            try serializer.decode(Fixtures.recorded(plain), as: MoneyDeposited.self)
        }
        #expect(error?.code == .decodingFailed)
        #expect(error?.cause as? TaggedJSONCodec.MissingTag == TaggedJSONCodec.MissingTag(found: UInt8(ascii: "{")))
    }

    @Test("64 tasks decode and encode with one serializer at once")
    func concurrentDecoding() async throws {
        let serializer = Fixtures.serializer(.mixed)
        let recorded = (0..<90).map { index in
            Fixtures.recorded(
                Fixtures.itemAdded(version: index % 3 + 1, index: index),
                version: UInt64(index),
                position: UInt64(index)
            )
        }
        let expected = (0..<90).map { Fixtures.expectedItemAdded(version: $0 % 3 + 1, index: $0) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for task in 0..<64 {
                group.addTask {
                    for round in 0..<10 {
                        let offset = (task + round) % recorded.count
                        let events = try (recorded[offset...] + recorded[..<offset]).map {
                            try serializer.decode($0, as: ItemAdded.self)
                        }
                        #expect(events == Array(expected[offset...] + expected[..<offset]))
                        let untyped = try #require(try serializer.decode(recorded[offset]) as? ItemAdded)
                        #expect(untyped == expected[offset])
                        let data = try serializer.encode(untyped, metadata: Fixtures.metadata(task))
                        #expect(try serializer.decode(Fixtures.recorded(data), as: ItemAdded.self) == untyped)
                    }
                }
            }
            try await group.waitForAll()
        }
    }

    @Test("errors describe themselves with what is known")
    func errorDescriptions() {
        let bare = EventCodecError(code: .encodingFailed, message: "no")
        #expect(bare.description == "event codec: encoding failed: no")
        let snapshot = EventCodecError(code: .decodingFailed, schemaVersion: 3, message: "bad")
        #expect(snapshot.description == "event codec: decoding failed (schema version 3): bad")
        let codes: [EventCodecError.Code] = [
            .unknownEventType, .typeMismatch, .missingUpcaster, .schemaVersionTooNew, .upcastingFailed,
            .decodingFailed, .encodingFailed,
        ]
        #expect(Set(codes.map(\.description)).count == codes.count)
    }
}
