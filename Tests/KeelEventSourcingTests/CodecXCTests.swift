import KeelCore
import KeelEventSourcing
import KeelTestSupport
import XCTest

/// The codec layer from XCTest: events written by three releases of an application are read back
/// by today's, as a user's XCTest suite would check its own upcasters.
final class CodecXCTests: TimeLimitedTestCase {
    func testAStoreOfEveryVersionReadsBackAsTheCurrentOne() async throws {
        let serializer = Fixtures.serializer(.mixed)
        let store = InMemoryEventStore()
        for version in [3, 1, 2] {
            try await store.append(Fixtures.itemAdded(version: version, index: version), to: "cart-1")
        }
        let current = ItemAdded(productID: "P-4", quantity: 4, unitPriceCents: 400)
        try await store.append(try serializer.encode(current, metadata: Fixtures.metadata(4)), to: "cart-1")

        let recorded = try await store.readStream("cart-1")
        XCTAssertEqual(recorded.map(\.schemaVersion), [3, 1, 2, 3])
        let decoded = try recorded.map { try serializer.decode($0, as: ItemAdded.self) }
        XCTAssertEqual(
            decoded,
            [
                Fixtures.expectedItemAdded(version: 3, index: 3),
                Fixtures.expectedItemAdded(version: 1, index: 1),
                Fixtures.expectedItemAdded(version: 2, index: 2),
                current,
            ]
        )
    }

    func testACorruptStoredEventReportsWhereItIs() async throws {
        let serializer = Fixtures.serializer()
        let store = InMemoryEventStore()
        try await store.append(
            try serializer.encode(MoneyDeposited(amountCents: 1, memo: nil), metadata: Fixtures.metadata(0)),
            to: "account-1"
        )
        try await store.append(
            EventData(type: MoneyDeposited.eventType, metadata: Fixtures.metadata(1), payload: [0xFF, 0x00]),
            to: "account-1"
        )
        let recorded = try await store.readStream("account-1")
        XCTAssertNotNil(try serializer.decode(recorded[0]) as? MoneyDeposited)
        XCTAssertThrowsError(try serializer.decode(recorded[1])) { error in
            guard let error = error as? EventCodecError else {
                return XCTFail("expected EventCodecError, got \(error)")
            }
            XCTAssertEqual(error.code, .decodingFailed)
            XCTAssertEqual(error.eventType, MoneyDeposited.eventType)
            XCTAssertEqual(error.stream, "account-1")
            XCTAssertEqual(error.streamVersion, 1)
            XCTAssertEqual(error.position, 1)
            XCTAssertTrue(error.cause is DecodingError)
        }
    }
}
