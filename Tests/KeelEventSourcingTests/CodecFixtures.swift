import Foundation
import KeelCore
import KeelEventSourcing
import Synchronization
import Testing

// Event types shared by the codec, upcasting and snapshot tests.

struct AccountOpened: DomainEvent, Equatable {
    static let eventType = "account.opened"
    var owner: String
    var openedAt: Date
}

struct MoneyDeposited: DomainEvent, Equatable {
    static let eventType = "account.deposited"
    var amountCents: Int
    var memo: String?
}

/// v1 was `{"note"}`, an optional note; v2 requires a `reason`.
struct AccountClosed: DomainEvent, Equatable {
    static let eventType = "account.closed"
    static let schemaVersion = 2
    var reason: String
}

struct AccountClosedV1: Decodable {
    var note: String?
}

/// An event type with three schema versions:
/// - v1 `{"sku"}`: one item, quantity implicitly 1;
/// - v2 `{"quantity","sku"}`;
/// - v3 (current) `{"productID","quantity","unitPriceCents"}`: `sku` renamed, a price added.
struct ItemAdded: DomainEvent, Equatable {
    static let eventType = "cart.item-added"
    static let schemaVersion = 3
    var productID: String
    var quantity: Int
    var unitPriceCents: Int
}

struct ItemAddedV1: Codable, Equatable {
    var sku: String
}

struct ItemAddedV2: Codable, Equatable {
    var sku: String
    var quantity: Int
}

/// A second Swift type claiming `ItemAdded`'s type name: registering or encoding both is a bug.
struct ImpostorItemAdded: DomainEvent {
    static let eventType = "cart.item-added"
    var productID: String
}

/// A type whose schema version is not older than an upcaster registered for it.
struct ShortLived: DomainEvent {
    static let eventType = "test.short-lived"
    static let schemaVersion = 2
}

/// Which kind of upcaster each step of `ItemAdded`'s chain uses.
enum ChainKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case typed
    case raw
    case mixed

    var testDescription: String { self.rawValue }

    var upcasters: [EventUpcaster] {
        switch self {
        case .typed: [Upcasters.typedV1ToV2, Upcasters.typedV2ToV3]
        case .raw: [Upcasters.rawV1ToV2, Upcasters.rawV2ToV3]
        case .mixed: [Upcasters.typedV1ToV2, Upcasters.rawV2ToV3]
        }
    }
}

enum Upcasters {
    static let accountClosedV1ToV2 = EventUpcaster.typed(
        AccountClosed.eventType,
        from: 1,
        decoding: AccountClosedV1.self
    ) { old in
        AccountClosed(reason: old.note ?? "unknown")
    }

    static let typedV1ToV2 = EventUpcaster.typed(ItemAdded.eventType, from: 1, decoding: ItemAddedV1.self) { old in
        ItemAddedV2(sku: old.sku, quantity: 1)
    }

    static let typedV2ToV3 = EventUpcaster.typed(ItemAdded.eventType, from: 2, decoding: ItemAddedV2.self) { old in
        ItemAdded(productID: old.sku, quantity: old.quantity, unitPriceCents: 0)
    }

    /// v1 → v2 without a Swift type for v1: adds `"quantity": 1` to the JSON object.
    static let rawV1ToV2 = EventUpcaster.raw(ItemAdded.eventType, from: 1) { bytes in
        var object = try JSONObject(bytes)
        object["quantity"] = 1
        return try object.bytes()
    }

    /// v2 → v3 on the JSON object: renames `sku` to `productID` and adds `unitPriceCents`.
    static let rawV2ToV3 = EventUpcaster.raw(ItemAdded.eventType, from: 2) { bytes in
        var object = try JSONObject(bytes)
        object["productID"] = object.removeValue(forKey: "sku")
        object["unitPriceCents"] = 0
        return try object.bytes()
    }
}

/// A JSON object as a raw upcaster sees it, through Foundation's `JSONSerialization`.
struct JSONObject {
    struct NotAnObject: Error {}

    private var storage: [String: Any]

    init(_ bytes: [UInt8]) throws {
        guard let object = try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] else {
            throw NotAnObject()
        }
        self.storage = object
    }

    subscript(key: String) -> Any? {
        get { self.storage[key] }
        set { self.storage[key] = newValue }
    }

    mutating func removeValue(forKey key: String) -> Any? {
        self.storage.removeValue(forKey: key)
    }

    func bytes() throws -> [UInt8] {
        Array(try JSONSerialization.data(withJSONObject: self.storage, options: [.sortedKeys]))
    }
}

/// A codec that is not plain JSON: JSON behind a one-byte format tag. Proves that the serializer,
/// typed upcasters and snapshots go through whatever codec is plugged in.
struct TaggedJSONCodec: EventCodec {
    struct MissingTag: Error, Equatable {
        var found: UInt8?
    }

    static let tag: UInt8 = 0xA7

    let json = JSONEventCodec()

    func encode<Value: Encodable>(_ value: Value) throws -> [UInt8] {
        [Self.tag] + (try self.json.encode(value))
    }

    func decode<Value: Decodable>(_ type: Value.Type, from bytes: [UInt8]) throws -> Value {
        guard bytes.first == Self.tag else { throw MissingTag(found: bytes.first) }
        return try self.json.decode(type, from: Array(bytes.dropFirst()))
    }
}

/// Counts how often upcasters run, from any task.
final class Counter: Sendable {
    private let count = Lock(0)

    func increment() {
        self.count.withLock { $0 += 1 }
    }

    var value: Int {
        self.count.withLock { $0 }
    }
}

enum Fixtures {
    static func metadata(_ index: Int) -> EventMetadata {
        EventMetadata(id: EventID(high: 7, low: UInt64(index)), time: Int64(index) * 1_000)
    }

    /// A stored `ItemAdded` at `version`, from the JSON an older release wrote.
    static func itemAdded(version: Int, index: Int) -> EventData {
        let json: String
        switch version {
        case 1: json = #"{"sku":"P-\#(index)"}"#
        case 2: json = #"{"quantity":\#(index),"sku":"P-\#(index)"}"#
        default: json = #"{"productID":"P-\#(index)","quantity":\#(index),"unitPriceCents":\#(index * 100)}"#
        }
        return EventData(
            type: ItemAdded.eventType,
            schemaVersion: version,
            metadata: metadata(index),
            payload: Array(json.utf8)
        )
    }

    /// What `itemAdded(version:index:)` reads as at version 3.
    static func expectedItemAdded(version: Int, index: Int) -> ItemAdded {
        switch version {
        case 1: ItemAdded(productID: "P-\(index)", quantity: 1, unitPriceCents: 0)
        case 2: ItemAdded(productID: "P-\(index)", quantity: index, unitPriceCents: 0)
        default: ItemAdded(productID: "P-\(index)", quantity: index, unitPriceCents: index * 100)
        }
    }

    static func recorded(
        _ data: EventData,
        stream: StreamID = "cart-1",
        version: UInt64 = 0,
        position: UInt64 = 0
    ) -> RecordedEvent {
        RecordedEvent(stream: stream, version: version, position: position, data: data)
    }

    static func serializer(
        _ chain: ChainKind = .typed,
        codec: any EventCodec = JSONEventCodec(),
        unknownEventTypes: EventSerializer.UnknownTypePolicy = .fail
    ) -> EventSerializer {
        EventSerializer(
            registry: EventTypeRegistry(
                [AccountOpened.self, MoneyDeposited.self, AccountClosed.self, ItemAdded.self],
                upcasters: chain.upcasters + [Upcasters.accountClosedV1ToV2]
            ),
            codec: codec,
            configuration: .init(unknownEventTypes: unknownEventTypes)
        )
    }
}
