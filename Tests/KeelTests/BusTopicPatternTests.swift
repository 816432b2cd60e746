import Testing

@testable import Keel

@Suite("Bus topic patterns", .timeLimit(.minutes(2)))
struct BusTopicPatternTests {
    /// One row of a matching table.
    struct Case: Sendable, CustomTestStringConvertible {
        var pattern: String
        var topic: String
        var matches: Bool

        init(_ pattern: String, _ topic: String, _ matches: Bool) {
            self.pattern = pattern
            self.topic = topic
            self.matches = matches
        }

        var testDescription: String {
            "\"\(self.pattern)\" \(self.matches ? "matches" : "does not match") \"\(self.topic)\""
        }
    }

    static let literals: [Case] = [
        Case("order.created", "order.created", true),
        Case("order.created", "order.creat", false),
        Case("order.created", "order", false),
        Case("order.created", "order.created.again", false),
        Case("order.created", "x.order.created", false),
        Case("order.created", "Order.created", false),
        Case("order", "order", true),
        Case("order", "orders", false),
    ]

    static let singleSegmentWildcard: [Case] = [
        Case("*", "order", true),
        Case("*", "order.created", false),
        Case("order.*", "order.created", true),
        Case("order.*", "order.shipped", true),
        Case("order.*", "order", false),
        Case("order.*", "order.item.added", false),
        Case("order.*", "orders.created", false),
        Case("*.created", "order.created", true),
        Case("*.created", "created", false),
        Case("*.created", "order.item.created", false),
        Case("*.*", "a.b", true),
        Case("*.*", "a", false),
        Case("*.*", "a.b.c", false),
        Case("a.*.c", "a.b.c", true),
        Case("a.*.c", "a.c", false),
        Case("a.*.c", "a.b.b.c", false),
    ]

    static let multiSegmentWildcard: [Case] = [
        // `#` at the end.
        Case("order.#", "order", true),
        Case("order.#", "order.created", true),
        Case("order.#", "order.item.added", true),
        Case("order.#", "orders.created", false),
        Case("order.#", "orders", false),
        Case("order.#", "x.order", false),
        // `#` at the start.
        Case("#.failed", "failed", true),
        Case("#.failed", "payment.failed", true),
        Case("#.failed", "a.b.failed", true),
        Case("#.failed", "failed.twice", false),
        Case("#.failed", "failedx", false),
        // `#` at both ends.
        Case("#.order.#", "order", true),
        Case("#.order.#", "a.order", true),
        Case("#.order.#", "order.b", true),
        Case("#.order.#", "a.b.order.c.d", true),
        Case("#.order.#", "orders", false),
        Case("#.order.#", "a.b", false),
        // `#` in the middle.
        Case("a.#.b", "a.b", true),
        Case("a.#.b", "a.x.b", true),
        Case("a.#.b", "a.x.y.b", true),
        Case("a.#.b", "a", false),
        Case("a.#.b", "b", false),
        Case("a.#.b", "a.b.c", false),
        // `#` alone.
        Case("#", "order", true),
        Case("#", "order.item.added", true),
        Case("#", "", true),
        Case("#", ".", true),
        Case("#", "a..b", true),
        // `#` beside `*`.
        Case("*.#", "a", true),
        Case("*.#", "a.b.c", true),
        Case("#.*", "a", true),
        Case("#.*", "a.b.c", true),
        Case("#.*.*", "a", false),
        Case("#.*.*", "a.b", true),
        // Matching has to backtrack over several candidate splits.
        Case("#.a.#.a", "a.a", true),
        Case("#.a.#.a", "a.b.a", true),
        Case("#.a.#.a", "a.a.a", true),
        Case("#.a.#.a", "x.a.y.z.a", true),
        Case("#.a.#.a", "a", false),
        Case("#.a.#.a", "b.a.c.a.d", false),
    ]

    static let consecutiveWildcards: [Case] = [
        Case("#.#", "", true),
        Case("#.#", "a", true),
        Case("#.#", "a.b.c", true),
        Case("a.#.#.b", "a.b", true),
        Case("a.#.#.b", "a.x.b", true),
        Case("a.#.#.b", "a.x.y.b", true),
        Case("a.#.#.b", "a", false),
        Case("#.#.#.x", "x", true),
        Case("#.#.#.x", "a.b.c.x", true),
        Case("#.#.#.x", "x.a", false),
        // `##` is not `#`: only a segment that is exactly `#` is a wildcard.
        Case("##", "##", true),
        Case("##", "a", false),
        Case("##", "", false),
        Case("a.##", "a", false),
        Case("a.##", "a.b", false),
        // Nor is `**` a `*`.
        Case("**", "**", true),
        Case("**", "a", false),
    ]

    static let emptyTopicsAndSegments: [Case] = [
        // The empty topic is one empty segment.
        Case("", "", true),
        Case("", "a", false),
        Case("", ".", false),
        Case("*", "", true),
        Case("#", "", true),
        Case("a", "", false),
        Case("a.#", "", false),
        Case("#.a", "", false),
        Case("*.*", "", false),
        // An empty segment between two dots.
        Case("a..b", "a..b", true),
        Case("a..b", "a.b", false),
        Case("a.b", "a..b", false),
        Case("a.*.b", "a..b", true),
        Case("a.#.b", "a..b", true),
        Case("a.*.*.b", "a..b", false),
        // A leading dot.
        Case(".a", ".a", true),
        Case(".a", "a", false),
        Case("a", ".a", false),
        Case("*.a", ".a", true),
        Case("#.a", ".a", true),
        // A trailing dot.
        Case("a.", "a.", true),
        Case("a.", "a", false),
        Case("a", "a.", false),
        Case("a.*", "a.", true),
        Case("a.#", "a.", true),
        // Dots only.
        Case(".", ".", true),
        Case("*.*", ".", true),
        Case("*", ".", false),
        Case(".", "", false),
    ]

    static let literalWildcardCharacters: [Case] = [
        Case("ord*", "ord*", true),
        Case("ord*", "order", false),
        Case("ord*", "ord", false),
        Case("ord*.created", "order.created", false),
        Case("*der.created", "order.created", false),
        Case("order.cre*", "order.created", false),
        Case("order.cre*", "order.cre*", true),
        Case("a*b", "a*b", true),
        Case("a*b", "axb", false),
        Case("or#", "or#", true),
        Case("or#", "order", false),
        Case("#a", "a", false),
        Case("#a", "#a", true),
        Case("a.b#", "a.b", false),
    ]

    @Test("literal segments match only themselves", arguments: literals)
    func literal(_ row: Case) {
        #expect(TopicPattern(row.pattern).matches(row.topic) == row.matches)
    }

    @Test("`*` matches exactly one segment", arguments: singleSegmentWildcard)
    func singleSegment(_ row: Case) {
        #expect(TopicPattern(row.pattern).matches(row.topic) == row.matches)
    }

    @Test("`#` matches zero or more segments wherever it stands", arguments: multiSegmentWildcard)
    func multiSegment(_ row: Case) {
        #expect(TopicPattern(row.pattern).matches(row.topic) == row.matches)
    }

    @Test("consecutive `#` segments match as one; `##` and `**` are literals", arguments: consecutiveWildcards)
    func consecutive(_ row: Case) {
        #expect(TopicPattern(row.pattern).matches(row.topic) == row.matches)
    }

    @Test("empty topics and empty segments are segments like any other", arguments: emptyTopicsAndSegments)
    func emptySegments(_ row: Case) {
        #expect(TopicPattern(row.pattern).matches(row.topic) == row.matches)
    }

    @Test("`*` and `#` inside a longer segment are literal characters", arguments: literalWildcardCharacters)
    func wildcardCharactersInsideSegments(_ row: Case) {
        #expect(TopicPattern(row.pattern).matches(row.topic) == row.matches)
    }

    @Test("a pattern keeps its text and collapses runs of `#`")
    func parsing() {
        let pattern = TopicPattern("order.#.#.created")
        #expect(pattern.pattern == "order.#.#.created")
        #expect(pattern.description == "order.#.#.created")
        #expect(pattern.segments == TopicPattern("order.#.created").segments)
        #expect(pattern.segments == [.literal("order"), .any, .literal("created")])
        #expect(TopicPattern("*.##").segments == [.one, .literal("##")])
        #expect(TopicPattern("").segments == [.literal("")])
        #expect(TopicPattern("a.b") == TopicPattern("a.b"))
        #expect(TopicPattern("a.b") != TopicPattern("a.*"))
    }
}
