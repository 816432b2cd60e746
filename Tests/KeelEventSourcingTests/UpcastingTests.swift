import Foundation
import KeelCore
import KeelEventSourcing
import Testing

@Suite("Upcasting", .timeLimit(.minutes(2)))
struct UpcastingTests {
    @Test("a v1, a v2 and a v3 payload all decode as v3", arguments: ChainKind.allCases)
    func chain(_ kind: ChainKind) throws {
        let serializer = Fixtures.serializer(kind)
        for version in 1...3 {
            let recorded = Fixtures.recorded(Fixtures.itemAdded(version: version, index: 5))
            let expected = Fixtures.expectedItemAdded(version: version, index: 5)
            #expect(try serializer.decode(recorded, as: ItemAdded.self) == expected, "version \(version)")
            #expect(try serializer.decode(recorded) as? ItemAdded == expected, "version \(version), untyped")
        }
    }

    @Test("a store holding v1, v2 and v3 events of one type reads back entirely as v3", arguments: ChainKind.allCases)
    func mixedStore(_ kind: ChainKind) async throws {
        let serializer = Fixtures.serializer(kind)
        let versions = [1, 2, 3, 1, 1, 2, 3, 3, 2, 1]
        let store = InMemoryEventStore()
        for (index, version) in versions.enumerated() {
            try await store.append(
                Fixtures.itemAdded(version: version, index: index),
                to: StreamID("cart-\(index % 2)")
            )
        }
        // Today's release appends v3 events next to the old ones.
        let current = ItemAdded(productID: "P-new", quantity: 4, unitPriceCents: 1_999)
        try await store.append(try serializer.encode(current, metadata: Fixtures.metadata(99)), to: "cart-0")

        let all = try await store.readAll(from: 0, limit: 100)
        #expect(all.map(\.schemaVersion) == versions + [3])
        let decoded = try all.map { try serializer.decode($0, as: ItemAdded.self) }
        let expected = versions.enumerated().map { Fixtures.expectedItemAdded(version: $1, index: $0) } + [current]
        #expect(decoded == expected)

        let cart0 = try await store.readStream("cart-0").compactMap { try serializer.decode($0) as? ItemAdded }
        // cart-0 holds the even indices, and the new event (index 10).
        #expect(cart0 == expected.enumerated().filter { $0.offset % 2 == 0 }.map(\.element))
    }

    @Test("each type has its own chain: a v1 of a two-version type upcasts once")
    func otherTypesChain() throws {
        let serializer = Fixtures.serializer()
        for (json, reason) in [(#"{"note":"moved"}"#, "moved"), ("{}", "unknown")] {
            let v1 = EventData(
                type: AccountClosed.eventType,
                schemaVersion: 1,
                metadata: Fixtures.metadata(0),
                payload: Array(json.utf8)
            )
            #expect(try serializer.decode(Fixtures.recorded(v1)) as? AccountClosed == AccountClosed(reason: reason))
        }
    }

    @Test("upcasters run in version order, one step at a time, and each is usable alone")
    func stepByStep() throws {
        let codec = JSONEventCodec()
        let v1 = Array(#"{"sku":"A"}"#.utf8)
        for kind in ChainKind.allCases {
            let steps = kind.upcasters
            #expect(steps.map(\.sourceVersion) == [1, 2])
            #expect(steps.map(\.targetVersion) == [2, 3])
            let v2 = try steps[0].upcast(v1, using: codec)
            #expect(try codec.decode(ItemAddedV2.self, from: v2) == ItemAddedV2(sku: "A", quantity: 1), "\(kind)")
            let v3 = try steps[1].upcast(v2, using: codec)
            #expect(
                try codec.decode(ItemAdded.self, from: v3) == ItemAdded(productID: "A", quantity: 1, unitPriceCents: 0)
            )
        }
    }

    @Test("a missing step fails before any upcaster runs, naming the type and the gap")
    func missingStep() throws {
        let ran = Counter()
        let v2ToV3 = EventUpcaster.raw(ItemAdded.eventType, from: 2) { bytes in
            ran.increment()
            return try Upcasters.rawV2ToV3.upcast(bytes, using: JSONEventCodec())
        }
        let serializer = EventSerializer(registry: EventTypeRegistry([ItemAdded.self], upcasters: [v2ToV3]))
        #expect(serializer.registry.missingUpcasters(for: ItemAdded.eventType) == [1])

        let v1 = Fixtures.recorded(Fixtures.itemAdded(version: 1, index: 1), stream: "cart-7", version: 3, position: 12)
        let error = #expect(throws: EventCodecError.self) { try serializer.decode(v1, as: ItemAdded.self) }
        #expect(error?.code == .missingUpcaster)
        #expect(error?.eventType == ItemAdded.eventType)
        #expect(error?.schemaVersion == 1)
        #expect(error?.currentSchemaVersion == 3)
        #expect(error?.missingUpcasters == [1])
        #expect(error?.stream == "cart-7")
        #expect(error?.position == 12)
        #expect(error?.message == "cannot upcast version 1 to 3: no upcaster for 1 → 2")
        #expect(ran.value == 0, "no step runs when the chain is incomplete")

        let untyped = #expect(throws: EventCodecError.self) { try serializer.decode(v1) }
        #expect(untyped?.code == .missingUpcaster)

        // A v2 payload does not need the missing step.
        let v2 = Fixtures.recorded(Fixtures.itemAdded(version: 2, index: 2))
        #expect(try serializer.decode(v2, as: ItemAdded.self) == Fixtures.expectedItemAdded(version: 2, index: 2))
        #expect(ran.value == 1)
    }

    @Test("with no upcaster at all, every missing step is listed")
    func everyStepMissing() {
        let serializer = EventSerializer(registry: EventTypeRegistry([ItemAdded.self]))
        #expect(serializer.registry.missingUpcasters(for: ItemAdded.eventType) == [1, 2])
        let error = #expect(throws: EventCodecError.self) {
            try serializer.decode(Fixtures.recorded(Fixtures.itemAdded(version: 1, index: 0)), as: ItemAdded.self)
        }
        #expect(error?.missingUpcasters == [1, 2])
        #expect(error?.message == "cannot upcast version 1 to 3: no upcaster for 1 → 2, 2 → 3")
    }

    @Test("a payload newer than the current version is refused, not guessed at")
    func newerThanKnown() throws {
        let serializer = Fixtures.serializer()
        let v4 = EventData(
            type: ItemAdded.eventType,
            schemaVersion: 4,
            metadata: Fixtures.metadata(0),
            payload: Array(#"{"productID":"X","quantity":1,"unitPriceCents":0,"currency":"EUR"}"#.utf8)
        )
        for decode in [
            { try serializer.decode(Fixtures.recorded(v4, position: 8), as: ItemAdded.self) },
            { try serializer.decode(Fixtures.recorded(v4, position: 8)) },
        ] as [() throws -> (any DomainEvent)?] {
            let error = #expect(throws: EventCodecError.self) { _ = try decode() }
            #expect(error?.code == .schemaVersionTooNew)
            #expect(error?.eventType == ItemAdded.eventType)
            #expect(error?.schemaVersion == 4)
            #expect(error?.currentSchemaVersion == 3)
            #expect(error?.position == 8)
        }
    }

    @Test("an upcaster that throws fails the decode, naming the step, with its error as cause")
    func failingUpcaster() {
        struct Rejected: Error {}
        let rejecting = EventUpcaster.typed(ItemAdded.eventType, from: 2, decoding: ItemAddedV2.self) { old in
            guard old.quantity > 0 else { throw Rejected() }
            return ItemAdded(productID: old.sku, quantity: old.quantity, unitPriceCents: 0)
        }
        let serializer = EventSerializer(
            registry: EventTypeRegistry([ItemAdded.self], upcasters: [Upcasters.typedV1ToV2, rejecting])
        )
        let v2 = EventData(
            type: ItemAdded.eventType,
            schemaVersion: 2,
            metadata: Fixtures.metadata(0),
            payload: Array(#"{"quantity":0,"sku":"Z"}"#.utf8)
        )
        let error = #expect(throws: EventCodecError.self) {
            try serializer.decode(Fixtures.recorded(v2, stream: "cart-2", version: 1, position: 3), as: ItemAdded.self)
        }
        #expect(error?.code == .upcastingFailed)
        #expect(error?.schemaVersion == 2)
        #expect(error?.stream == "cart-2")
        #expect(error?.message == "the upcaster from version 2 to 3 failed")
        #expect(error?.cause is Rejected)
    }

    @Test("a corrupt old payload fails in the typed upcaster that decodes it")
    func corruptOldPayload() {
        let serializer = Fixtures.serializer(.typed)
        let v1 = EventData(
            type: ItemAdded.eventType,
            schemaVersion: 1,
            metadata: Fixtures.metadata(0),
            payload: Array(#"{"sku":"#.utf8)
        )
        let error = #expect(throws: EventCodecError.self) {
            try serializer.decode(Fixtures.recorded(v1, position: 21), as: ItemAdded.self)
        }
        #expect(error?.code == .upcastingFailed)
        #expect(error?.message == "the upcaster from version 1 to 2 failed")
        #expect(error?.position == 21)
        #expect(error?.cause is DecodingError)
    }

    @Test("an upcast payload that does not match the current type is a decoding failure after upcasting")
    func wrongUpcastResult() {
        let forgetful = EventUpcaster.raw(ItemAdded.eventType, from: 2) { _ in Array("{}".utf8) }
        let serializer = EventSerializer(
            registry: EventTypeRegistry([ItemAdded.self], upcasters: [Upcasters.typedV1ToV2, forgetful])
        )
        let error = #expect(throws: EventCodecError.self) {
            try serializer.decode(Fixtures.recorded(Fixtures.itemAdded(version: 1, index: 1)), as: ItemAdded.self)
        }
        #expect(error?.code == .decodingFailed)
        #expect(error?.schemaVersion == 1)
        #expect(error?.message.contains("after upcasting") == true)
        #expect(error?.cause is DecodingError)
    }
}
