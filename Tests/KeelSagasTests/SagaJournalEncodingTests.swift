import Foundation
import KeelCore
import Testing

@testable import KeelSagas

@Suite("The journal's hand-written JSON", .timeLimit(.minutes(2)))
struct SagaJournalEncodingTests {
    static func full() -> SagaJournalEntry {
        var entry = SagaJournalEntry(kind: .stepFailed, run: 3, time: -1_700_000_000_000_000_123)
        entry.saga = "order.place"
        entry.id = "o-\"1\"\\\n\t\r\u{01}\u{1F}é🚀"
        entry.payload = .json("{\"a\":[1,2,\"x\"]}")
        entry.dueTime = Int64.max
        entry.item = SagaItemRef(scope: "/1.0/2", index: 7)
        entry.name = "card/authorize"
        entry.itemKind = .retriable
        entry.idempotent = false
        entry.attempt = 12
        entry.failure = SagaFailure(step: nil, errorType: "Boom", message: "line 1\nline \"2\"")
        entry.inDoubt = true
        entry.outcome = .needsIntervention
        entry.note = ""
        entry.sagaVersion = 3
        return entry
    }

    @Test("reads back as JSONDecoder reads JSONEncoder's document, every field and escape included")
    func roundTrip() throws {
        for entry in [Self.full(), SagaJournalEntry(kind: .started, run: 1, time: 0)] {
            let mine = try JSONDecoder().decode(SagaJournalEntry.self, from: Data(entry.jsonBytes()))
            let reference = try JSONDecoder().decode(SagaJournalEntry.self, from: JSONEncoder().encode(entry))
            #expect(mine == entry)
            #expect(mine == reference)
            // Valid JSON to a strict reader, with the same members as JSONEncoder's.
            let parsed = try #require(try JSONSerialization.jsonObject(with: Data(entry.jsonBytes())) as? NSDictionary)
            let expected = try #require(
                try JSONSerialization.jsonObject(with: JSONEncoder().encode(entry)) as? NSDictionary
            )
            #expect(parsed == expected)
        }
    }

    @Test("an entry is a value: changing a copy's rarely used fields leaves the original as it was")
    func copiesOnWrite() {
        let original = Self.full()
        var copy = original
        copy.note = "changed"
        copy.outcome = .completed
        copy.saga = nil
        #expect(original.note == "")
        #expect(original.outcome == .needsIntervention)
        #expect(original.saga == "order.place")
        #expect(copy.note == "changed")
        #expect(copy.outcome == .completed)
        #expect(copy.saga == nil)
        #expect(copy.id == original.id)
        #expect(copy != original)
        var other = original
        other.failure = nil
        #expect(original.failure?.errorType == "Boom")
        #expect(other.failure == nil)
        #expect(SagaJournalEntry(kind: .started, run: 1, time: 0).saga == nil)
    }
}
